"""SMTPUTF8 bounces (RFC 6533): message/global-* parts read as UTF-8, utf-8 addresses decoded.

tests/data/postfix-smtputf8-*.eml are real: Postfix 3.7 (Debian), run privately with
smtputf8_enable, relaying to an aiosmtpd server that answered 550 5.1.1 for the non-ASCII
recipients.  The Exim-shaped ones are written as Exim's deliver.c writes them
(``Final-Recipient: rfc822;`` with the raw address, in a message/global-delivery-status part).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sendguard import Guard, Store, normalize_address, parse_bounce

DATA = Path(__file__).parent / "data"

ADDRESSES = [
    "üser@exämple.de",  # both non-ASCII
    "üser@example.de",  # the local part only
    "user@exämple.de",  # the domain only
    "δοκιμή@παράδειγμα.δοκιμή",  # Greek, the TLD too
    "用户@例子.中国",  # CJK
    "josé.garcía@correo.es",
]


def escaped(address: str) -> str:
    """*address* in RFC 6533's utf-8-addr-xtext: every non-ASCII character as \\x{HHHH}."""
    return "".join(c if ord(c) < 128 else f"\\x{{{ord(c):X}}}" for c in address)


def postfix_dsn(address: str, *, escape: bool = False) -> bytes:
    """A Postfix-shaped SMTPUTF8 DSN (as tests/data/postfix-smtputf8-01.eml) for *address*."""
    field = escaped(address) if escape else address
    return f"""From: Mail Delivery System <MAILER-DAEMON@sender.example>
Subject: Undelivered Mail Returned to Sender
To: news@sender.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B.1/mx.sender.example"
Content-Transfer-Encoding: 8bit
Message-Id: <20261201213309.3F1FA2200E2@mx.sender.example>

--B.1/mx.sender.example
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

<{address}>: host mx.example[192.0.2.1] said: 550 5.1.1
    <{address}>: Recipient address rejected: User unknown (in reply to
    RCPT TO command)

--B.1/mx.sender.example
Content-Description: Delivery report
Content-Type: message/global-delivery-status
Content-Transfer-Encoding: 8bit

Reporting-MTA: dns; mx.sender.example
X-Postfix-Sender: rfc822; news@sender.example

Final-Recipient: utf-8; {field}
Original-Recipient: utf-8;{field}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example
Diagnostic-Code: smtp; 550 5.1.1 <{address}>: Recipient address
    rejected: User unknown

--B.1/mx.sender.example
Content-Description: Undelivered Message Headers
Content-Type: message/global-headers
Content-Transfer-Encoding: 8bit

Return-Path: <news@sender.example>
From: Zoë <news@sender.example>
To: {address}
Subject: hi
Message-ID: <utf8-1@sender.example>

--B.1/mx.sender.example--
""".encode()


def exim_dsn(address: str) -> bytes:
    """An Exim-shaped SMTPUTF8 DSN: rfc822 type, the raw UTF-8 address."""
    return f"""From: Mail Delivery System <Mailer-Daemon@mx.sender.example>
To: news@sender.example
Subject: Mail delivery failed: returning message to sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=1700000000-eximdsn-1
Auto-Submitted: auto-replied
Message-Id: <E1abcde-000123-AB@mx.sender.example>

--1700000000-eximdsn-1
Content-type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {address}
    host mx.example [192.0.2.1]
    SMTP error from remote mail server after RCPT TO:<{address}>:
    550 5.1.1 <{address}>: Recipient address rejected: User unknown

--1700000000-eximdsn-1
Content-type: message/global-delivery-status

Reporting-MTA: dns; mx.sender.example

Action: failed
Final-Recipient: rfc822;{address}
Status: 5.0.0
Remote-MTA: dns; mx.example
Diagnostic-Code: smtp; 550 5.1.1 <{address}>: Recipient address rejected: User unknown

--1700000000-eximdsn-1
Content-type: message/global-headers

Return-path: <news@sender.example>
From: news@sender.example
To: {address}
Subject: hi
Message-ID: <utf8-2@sender.example>

--1700000000-eximdsn-1--
""".encode()


SHAPES = {
    "postfix": postfix_dsn,
    "postfix-escaped": lambda a: postfix_dsn(a, escape=True),
    "exim": exim_dsn,
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("address", ADDRESSES)
def test_the_address_is_read_as_written(shape: str, address: str) -> None:
    raw = SHAPES[shape](address)
    (report,) = parse_bounce(raw)
    assert report.recipient == address
    assert "\ufffd" not in report.recipient + report.diagnostic
    assert (report.reason, report.hard) == ("userunknown", True)
    assert report.original_message_id.startswith("<utf8-")
    assert report.original_sender == "news@sender.example"


def test_real_postfix_dsns() -> None:
    (one,) = parse_bounce((DATA / "postfix-smtputf8-01.eml").read_bytes())
    assert (one.recipient, one.status, one.hard) == ("üser@exämple.de", "5.1.1", True)
    assert one.original_message_id == "<utf8-1@sender.example>"
    two = parse_bounce((DATA / "postfix-smtputf8-02.eml").read_bytes())
    assert [(r.recipient, r.hard) for r in two] == [
        ("böb@exämple.de", True),
        ("üser@例え.jp", True),
    ]


@pytest.mark.parametrize("shape", SHAPES)
async def test_ingesting_suppresses_the_address_under_its_own_key(
    store: Store, make_guard: Callable[..., Guard], shape: str
) -> None:
    guard = make_guard(store=store)
    (report,) = await guard.ingest_bounce(SHAPES[shape]("üser@exämple.de"))
    assert report.suppressed
    assert await guard.is_suppressed("üser@exämple.de")
    assert await guard.is_suppressed("üser@xn--exmple-cua.de")  # the same address
    keys = [entry.address async for entry in store.scan()]
    assert keys == [normalize_address("üser@exämple.de").key]


async def test_ingesting_the_real_postfix_dsn(make_guard: Callable[..., Guard]) -> None:
    guard = make_guard()
    reports = await guard.ingest_bounce((DATA / "postfix-smtputf8-02.eml").read_bytes())
    assert all(r.suppressed for r in reports)
    assert await guard.is_suppressed("böb@exämple.de")
    assert await guard.is_suppressed("üser@例え.jp")
    assert not await guard.is_suppressed("alice@example.com")
