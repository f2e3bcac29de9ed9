"""Non-ASCII in a message: encoded as the standards say, or refused before the quota.

A compat32 ``msg["Subject"] = "Grüße"`` raised UnicodeEncodeError after the warmup quota was
reserved (two such messages used up a cap of 2).
"""

from __future__ import annotations

import datetime as dt
import email
import email.charset
import email.policy
from collections.abc import Callable, Iterator
from email.message import Message

import pytest

from sendguard import Guard, MessageEncodingError, MessageError, WarmupSchedule
from sendguard._message import serialize
from sendguard.testing import ScriptedSMTPServer
from tests.conftest import message

NOV_1 = dt.date(2026, 11, 1)


def _compat(body: str = "body\n", **headers: str) -> Message:
    msg = Message()
    msg["From"] = "news@sender.example"
    msg["To"] = "alice@example.com"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_payload(body)
    return msg


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Subject", "Grüße"),
        ("Subject", "Привет, мир"),
        ("Subject", "日本語の件名" * 20),  # long: folded into several encoded words
        ("X-Campaign", "été"),
        ("Comments", "emoji 📬"),
    ],
)
async def test_compat32_non_ascii_header_goes_out_as_encoded_words(
    name: str, value: str, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    result = await make_guard().send(_compat(**{name.replace("-", "_"): value}))
    assert result.accepted == ["alice@example.com"]
    (received,) = smtp_server.received
    assert received.data.isascii()
    assert b"=?utf-8?" in received.data
    assert received.message[name] == value


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        ("From", "Café <news@sender.example>", ("Café", "news@sender.example")),
        ("To", "Zoë Ünï <alice@example.com>", ("Zoë Ünï", "alice@example.com")),
        ("Reply-To", '"Müller, Jörg" <help@x.example>', ("Müller, Jörg", "help@x.example")),
    ],
)
async def test_compat32_non_ascii_display_names_are_encoded_and_the_address_kept(
    header: str,
    value: str,
    expected: tuple[str, str],
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
) -> None:
    msg = _compat()
    del msg[header]
    msg[header] = value
    result = await make_guard().send(msg)
    assert result.accepted == ["alice@example.com"]
    (received,) = smtp_server.received
    assert received.data.isascii()
    (mailbox,) = received.message[header].addresses
    assert (mailbox.display_name, mailbox.addr_spec) == expected
    assert received.mail_from == "news@sender.example"


async def test_under_smtputf8_a_compat32_header_goes_as_utf8(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    msg = _compat(Subject="Grüße")
    msg.replace_header("To", "Ünï@example.com")
    result = await make_guard().send(msg)
    assert result.accepted == ["ünï@example.com"]
    assert "Subject: Grüße".encode() in smtp_server.received[0].data


@pytest.mark.parametrize("body", ["Grüße\n", "Привет\n", "📬 " * 500])
async def test_compat32_non_ascii_body_without_charset_is_encoded_as_utf8(
    body: str, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    result = await make_guard().send(_compat(body))
    assert result.accepted == ["alice@example.com"]
    received = smtp_server.received[0]
    assert received.data.isascii()
    assert received.message.get_content_charset() == "utf-8"
    assert received.message.get_content() == body


@pytest.mark.parametrize("policy", [email.policy.compat32, email.policy.default], ids=str)
async def test_parsed_8bit_message_goes_7bit_without_smtputf8(
    policy: email.policy.Policy, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    raw = (
        b"From: news@sender.example\r\nTo: alice@example.com\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"Gr\xc3\xbc\xc3\x9fe\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"\xff\xfe\x80 raw\r\n--b--\r\n"
    )
    parsed = email.message_from_bytes(raw, policy=policy)
    result = await make_guard().send(parsed)
    assert result.accepted == ["alice@example.com"]
    received = smtp_server.received[0]
    assert received.data.isascii(), "no 8-bit data for a server that may lack 8BITMIME"
    text, blob = received.message.iter_parts()
    assert text.get_content() == "Grüße"  # the CRLF before a boundary is the boundary's
    assert blob.get_content() == b"\xff\xfe\x80 raw"
    # Under SMTPUTF8 (which implies 8BITMIME) 8-bit goes as it is.
    assert b"\xff\xfe\x80 raw" in serialize(parsed, message_id=None, utf8=True)


@pytest.mark.parametrize(
    "build",
    [
        lambda: _compat(Message_ID="<grüße@sender.example>"),
        lambda: _compat(Date="Montag, 1. Jänner"),
        lambda: _compat("Grüße", Content_Type="text/plain; charset=us-ascii"),
        lambda: _compat("Grüße", Content_Type="text/plain; charset=no-such-charset"),
        lambda: email.message_from_bytes(
            b"From: news@sender.example\r\nTo: alice@example.com\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"\xff\xfe not base64 at all\r\n"
        ),
    ],
    ids=["non-ascii-message-id", "non-ascii-date", "ascii-charset", "unknown-charset", "8bit-b64"],
)
async def test_what_cannot_be_encoded_is_refused_typed_before_the_quota(
    build: Callable[[], Message], make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(warmup=WarmupSchedule.from_table({1: 2}, started_on=NOV_1))
    for _ in range(3):  # more than the cap: a refused message must not spend it
        with pytest.raises(MessageEncodingError) as info:
            await guard.send(build())
        assert isinstance(info.value, MessageError)
        assert not isinstance(info.value, UnicodeError)
    assert (await guard.status("sender.example")).sent_today == 0
    assert smtp_server.connections == 0
    ok = await guard.send(message(["alice@example.com", "bob@example.com"]))
    assert ok.accepted == ["alice@example.com", "bob@example.com"]


async def test_two_compat32_non_ascii_messages_no_longer_use_up_the_cap(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(warmup=WarmupSchedule.from_table({1: 2}, started_on=NOV_1))
    for _ in range(2):
        assert (await guard.send(_compat(Subject="Grüße"))).accepted == ["alice@example.com"]
    assert len(smtp_server.received) == 2
    assert (await guard.status("sender.example")).sent_today == 2


def test_the_callers_message_is_left_as_it_was() -> None:
    msg = _compat("Grüße\n", Subject="Grüße", Bcc="secret@example.com")
    before = msg.as_string(policy=email.policy.compat32.clone(linesep="\n"))
    serialize(msg, message_id=None)
    serialize(msg, message_id=None, utf8=True)
    assert msg.as_string(policy=email.policy.compat32.clone(linesep="\n")) == before
    assert msg["Bcc"] == "secret@example.com"


@pytest.fixture
def utf8_bodies_8bit() -> Iterator[None]:
    """The global charset registry as Flask-Mail leaves it (UTF-8 bodies not encoded)."""
    before = email.charset.CHARSETS["utf-8"]
    email.charset.add_charset("utf-8", email.charset.SHORTEST, None, "utf-8")
    yield
    email.charset.CHARSETS["utf-8"] = before


@pytest.mark.usefixtures("utf8_bodies_8bit")
def test_seven_bit_whatever_the_global_charset_registry_says() -> None:
    parsed = email.message_from_bytes(
        b"From: a@x.example\r\nTo: b@x.example\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    )
    for msg in (_compat("Grüße\n"), parsed):
        data = serialize(msg, message_id=None)
        assert data.isascii()
        assert (
            email.message_from_bytes(data, policy=email.policy.default)
            .get_content()
            .startswith("Grüße")
        )
