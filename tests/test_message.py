"""Addresses and headers: what may go on the wire, and what never does."""

from __future__ import annotations

from collections.abc import Callable
from email.message import Message

import pytest

from sendguard import (
    DeliveryStatus,
    Guard,
    HeaderInjectionError,
    InvalidAddressError,
    MessageError,
    NoRecipientsError,
    normalize_address,
)
from sendguard.testing import ScriptedSMTPServer
from tests.conftest import message


@pytest.mark.parametrize(
    ("raw", "wire", "key"),
    [
        ("  Bob@Example.COM ", "Bob@example.com", "bob@example.com"),
        ("user@BÜCHER.de", "user@xn--bcher-kva.de", "user@xn--bcher-kva.de"),
        ("user@xn--bcher-kva.de", "user@xn--bcher-kva.de", "user@xn--bcher-kva.de"),
        ("Ünï@example.com", "Ünï@example.com", "ünï@example.com"),
    ],
)
def test_one_normalization_for_wire_and_key(raw: str, wire: str, key: str) -> None:
    address = normalize_address(raw)
    assert (address.wire, address.key) == (wire, key)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plain",
        "a@b",
        "a b@example.com",
        "x@example.com\r\nRCPT TO:<y@example.com>",
        "Name <a@example.com>",
        "a@@example.com",
        "a@-example.com",
    ],
)
def test_invalid_addresses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidAddressError) as info:
        normalize_address(raw)
    assert info.value.address == raw


async def test_recipients_are_to_cc_bcc_deduplicated_in_any_case(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    msg = message(
        ["alice@example.com", "ALICE@Example.com"],
        cc="carol@example.com",
        bcc=["Dave@example.com", "carol@EXAMPLE.com"],
    )
    result = await make_guard().send(msg)
    assert list(result.recipients) == ["alice@example.com", "carol@example.com", "dave@example.com"]
    assert smtp_server.rcpt_log == ["alice@example.com", "carol@example.com", "Dave@example.com"]
    assert result.accepted == list(result.recipients)


async def test_bcc_is_delivered_but_never_transmitted(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    msg = message("alice@example.com", bcc="secret@example.com")
    await make_guard().send(msg)
    (received,) = smtp_server.received
    assert "secret@example.com" in received.rcpt_tos
    assert b"secret" not in received.data
    assert "Bcc" not in received.message
    assert msg["Bcc"] == "secret@example.com", "the caller's message is left as it was"


async def test_recipients_override_replaces_headers(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    result = await make_guard().send(message("alice@example.com"), recipients=["bob@example.com"])
    assert list(result.recipients) == ["bob@example.com"]
    assert smtp_server.rcpt_log == ["bob@example.com"]


async def test_invalid_recipient_never_reaches_the_wire(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    result = await make_guard().send(
        message("alice@example.com"), recipients=["alice@example.com", "bob@example..com", "nobody"]
    )
    assert result.recipients["bob@example..com"].status is DeliveryStatus.INVALID
    assert result.recipients["nobody"].status is DeliveryStatus.INVALID
    assert smtp_server.rcpt_log == ["alice@example.com"]


async def test_only_invalid_recipients_opens_no_connection(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    result = await make_guard().send(message("not-an-address"))
    assert result.recipients["not-an-address"].status is DeliveryStatus.INVALID
    assert smtp_server.connections == 0


def _compat_message(**headers: str) -> Message:
    msg = Message()  # the legacy API: setting a header does not check its value
    msg["From"] = "news@sender.example"
    msg["To"] = "alice@example.com"
    for name, value in headers.items():
        msg[name] = value
    msg.set_payload("body\n")
    return msg


@pytest.mark.parametrize(
    "subject",
    [
        "Hello\r\nBcc: victim@example.com",
        "Hello\nBcc: victim@example.com",
        "Hello\rBcc: victim@example.com",
        "Hello\x00",
        "=?utf-8?q?Hello=0D=0ABcc:_victim@example.com?=",
        "=?utf-8?b?SGVsbG8KQmNjOiB2aWN0aW1AZXhhbXBsZS5jb20=?=",
        "=?utf-8?q?nul=00?=",
    ],
)
async def test_header_injection_is_refused_before_anything_is_sent(
    subject: str, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    with pytest.raises(HeaderInjectionError) as info:
        await make_guard().send(_compat_message(Subject=subject))
    assert info.value.header == "Subject"
    assert smtp_server.connections == 0


async def test_injection_in_a_mime_part_header_is_refused(make_guard: Callable[..., Guard]) -> None:
    msg = message()
    msg.add_attachment(b"data", maintype="application", subtype="octet-stream", filename="a.bin")
    part = next(p for p in msg.walk() if p.get_filename())
    part.replace_header("Content-Disposition", "attachment")
    part._headers.append(("X-Evil", "a\r\nb"))  # type: ignore[attr-defined]
    with pytest.raises(HeaderInjectionError):
        await make_guard().send(msg)


async def test_folded_headers_and_encoded_words_pass(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    msg = _compat_message(Subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n continued")
    result = await make_guard().send(msg)
    assert result.accepted == ["alice@example.com"]
    assert "Grüße" in str(smtp_server.received[0].message["Subject"])


async def test_non_ascii_subject_is_encoded_for_a_plain_ascii_transaction(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    await make_guard().send(message(subject="Grüße"))
    data = smtp_server.received[0].data
    assert data.isascii()
    assert smtp_server.received[0].message["Subject"] == "Grüße"


async def test_invalid_sender_or_no_recipients_raise(make_guard: Callable[..., Guard]) -> None:
    guard = make_guard()
    with pytest.raises(InvalidAddressError):
        await guard.send(message(sender="not an address"))
    msg = message()
    del msg["To"]
    with pytest.raises(NoRecipientsError):
        await guard.send(msg)
    del msg["From"]
    msg["To"] = "alice@example.com"
    with pytest.raises(MessageError, match="no From"):
        await guard.send(msg)


async def test_message_id_is_added_when_missing_and_kept_when_present(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard()
    first = await guard.send(message())
    assert first.message_id is not None
    assert first.message_id.endswith("@sender.example>")
    assert smtp_server.received[0].message["Message-ID"] == first.message_id
    msg = message()
    msg["Message-ID"] = "<given@sender.example>"
    second = await guard.send(msg)
    assert second.message_id == "<given@sender.example>"
    assert smtp_server.received[1].data.count(b"Message-ID") == 1


async def test_smtputf8_recipient_is_sent_with_smtputf8(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    result = await make_guard().send(message("Ünï@example.com", subject="Grüße"))
    assert result.accepted == ["ünï@example.com"]
    assert smtp_server.received[0].rcpt_tos == ["Ünï@example.com"]
    assert "Grüße".encode() in smtp_server.received[0].data


async def test_smtputf8_recipient_on_a_server_without_it_is_rejected_not_suppressed(
    make_guard: Callable[..., Guard], clock: object
) -> None:
    from sendguard import SMTPAdapter  # noqa: PLC0415

    async with ScriptedSMTPServer(smtputf8=False) as plain:
        guard = make_guard(adapter=SMTPAdapter("127.0.0.1", plain.port))
        result = await guard.send(message("Ünï@example.com"))
        rr = result.recipients["ünï@example.com"]
        assert rr.status is DeliveryStatus.REJECTED
        assert not rr.suppressed
        assert plain.rcpt_log == []
        await guard.aclose()
