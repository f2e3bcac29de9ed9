"""A refusal of the envelope sender never suppresses the recipient.

When the guard's own bounce address has no mailbox (or its domain no MX), every host that
verifies senders refuses every recipient, often with 550 and sometimes with 5.1.1: reading
that as "user unknown" would suppress the whole list for good.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sendguard import Action, Guard, Store, classify, parse_bounce
from sendguard._bounces.classify import SENDER_REASONS
from sendguard.testing import ScriptedSMTPServer, make_dsn
from tests.conftest import message

SENDER = "bounces@shop.example"

# Sender refusals as Exim, Postfix, sendmail, Exchange and others write them, one reply each
# (the multi-line ones as they come off the wire).
REFUSALS = [
    f"550-Verification failed for <{SENDER}>\n550-Unrouteable address\n550 Sender verify failed",
    f"550-Verification failed for <{SENDER}>\r\n550-The mail server could not deliver mail to "
    f"{SENDER}.  The account or domain may not exist, they may be blacklisted, or missing the "
    "proper dns entries.\r\n550 Sender verify failed",
    f"550-Verification failed for <{SENDER}>\n550-Called:   192.0.2.7\n550-Sent:     RCPT TO:<"
    f"{SENDER}>\n550-Response: 550 5.1.1 <{SENDER}>: User unknown\n550 Sender verify failed",
    "451 Could not complete sender verify callout",
    f"550 5.1.1 <{SENDER}>: Sender address rejected: User unknown in local recipient table",
    f"550 5.1.0 <{SENDER}>: Sender address rejected: Domain not found",
    f"450 4.1.8 <{SENDER}>: Sender address rejected: Domain not found",
    "504 5.5.2 <bounces>: Sender address rejected: need fully-qualified address",
    f"553 5.1.8 <{SENDER}>... Domain of sender address {SENDER} does not exist",
    "550 5.1.1 unrouteable sender address",
    "550 Unroutable sender address",
    "550 5.7.1 Sender domain not found",
    "550 5.1.1 Sender's domain does not exist",
    "550 5.1.7 Invalid sender address",
    "553 5.1.1 Envelope sender domain unknown",
    "550 5.1.1 Envelope-from address rejected",
    "550 5.1.1 MAIL FROM rejected: address unverified",
    "550 5.1.1 Callout verification failed for sender <bounces@shop.example>",
    "550 5.7.1 Sender verification failed: mailbox does not exist",
    "550 Return-path address unknown",
    "550 5.1.1 <bounces@shop.example>: Rejected sender, user unknown",
]


@pytest.mark.parametrize("text", REFUSALS)
def test_a_refusal_about_the_sender_is_sender_side(text: str) -> None:
    found = classify(text)
    assert found.reason in SENDER_REASONS, found.rule
    assert found.action in (Action.PAUSE_SENDER, Action.RETRY)


@pytest.mark.parametrize(
    "text",
    [
        "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
        "550 5.1.1 <sender@example.com>: Recipient address rejected: User unknown",
        "550 5.1.1 <sender.verify@example.com>... User unknown",
        "550-5.1.1 The email account that you tried to reach does not exist.\n550 5.1.1 x",
    ],
)
def test_a_refusal_of_the_recipient_still_suppresses(text: str) -> None:
    assert classify(text).reason == "userunknown"


def exim_notice(reply: str) -> bytes:
    """A plain-text Exim failure notice for bob and carol, with *reply* for both."""
    indented = reply.replace("\r\n", "\n").replace("\n", "\n    ")
    body = "".join(
        f"  {rcpt}\n    SMTP error from remote mail server after RCPT TO:<{rcpt}>:\n"
        f"    host mx.example.com [192.0.2.1]: {indented}\n"
        for rcpt in ("bob@example.com", "carol@example.com")
    )
    return (
        "From: Mail Delivery System <Mailer-Daemon@mx.shop.example>\n"
        f"To: {SENDER}\nSubject: Mail delivery failed: returning message to sender\n\n"
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n\n"
        f"{body}\n"
        "------ This is a copy of the message, including all the headers. ------\n\n"
        f"Return-path: <{SENDER}>\nFrom: news@shop.example\nTo: bob@example.com\n"
        "Message-ID: <1@shop.example>\n\nHi\n"
    ).encode()


def dsn(reply: str, status: str = "5.1.1") -> bytes:
    """A DSN whose Diagnostic-Code carries *reply*, folded as RFC 3464 folds it."""
    folded = reply.replace("\r\n", "\n").replace("\n", "\n    ")
    return (
        "From: MAILER-DAEMON@mx.shop.example\nTo: bounces@shop.example\n"
        "Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.shop.example\n\n"
        "Final-Recipient: rfc822; bob@example.com\nAction: failed\n"
        f"Status: {status}\nDiagnostic-Code: smtp; {folded}\n\n"
        "--b\nContent-Type: text/rfc822-headers\n\n"
        f"Return-Path: <{SENDER}>\nFrom: news@shop.example\nMessage-ID: <2@shop.example>\n\n"
        "--b--\n"
    ).encode()


@pytest.mark.parametrize("text", REFUSALS)
def test_a_sender_refusal_in_a_notice_or_a_dsn_is_never_hard(text: str) -> None:
    for raw in (exim_notice(text), dsn(text)):
        reports = parse_bounce(raw)
        assert reports
        assert {r.recipient for r in reports} <= {"bob@example.com", "carol@example.com"}
        assert all(r.reason in SENDER_REASONS and not r.hard for r in reports), reports


def test_multi_line_reply_is_judged_as_one_reply() -> None:
    # The last line alone would say "verify failed"; the first alone names an address. Only
    # together do they say it is the sender that failed.
    (report,) = parse_bounce(dsn(REFUSALS[2]))
    assert (report.reason, report.hard) == ("rejected", False)
    assert "Sender verify failed" in report.diagnostic


@pytest.mark.usefixtures("smtp_server")
async def test_ingesting_sender_refusals_suppresses_nobody(
    store: Store, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(store=store)
    await guard.send(message("bob@example.com"))
    for text in REFUSALS[:8]:
        await guard.ingest_bounce(exim_notice(text))
        await guard.ingest_bounce(dsn(text))
    original = message("bob@example.com").as_bytes()
    await guard.ingest_bounce(make_dsn(original, {"bob@example.com": REFUSALS[5]}))
    for address in ("bob@example.com", "carol@example.com", SENDER):
        assert not await guard.is_suppressed(address)
