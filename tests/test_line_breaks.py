"""Header injection through every character that can end a line, wherever it can reach the wire.

Python's generator folds header values with ``str.splitlines()``, so a vertical tab, a form
feed, FS/GS/RS, NEL, U+2028 or U+2029 in a value became a real CRLF on the wire, and the value
started a header (doubled, a body) of its own.  The set is derived from ``splitlines`` here, so
it cannot drift from what the generator does.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import sys
from collections.abc import Callable
from email.message import EmailMessage, Message

import pytest

from sendguard import (
    LINE_BREAKS,
    DeliveryStatus,
    Guard,
    HeaderInjectionError,
    InvalidAddressError,
    WarmupSchedule,
    normalize_address,
    parse_mailbox,
)
from sendguard._message import check_headers, serialize
from sendguard.testing import ScriptedSMTPServer
from tests.conftest import message


def _breaks_a_line(c: str) -> bool:
    return len(f"a{c}b".splitlines()) > 1


SPLITLINES = [chr(i) for i in range(sys.maxunicode + 1) if _breaks_a_line(chr(i))]
# Every line break, and NUL: what no header may carry.
REFUSED = [*SPLITLINES, "\x00"]
BEYOND_CR_LF = [c for c in REFUSED if c not in "\r\n"]
NOV_1 = dt.date(2026, 11, 1)


def _compat(**headers: str) -> Message:
    msg = Message()  # compat32: setting a header checks nothing
    msg["From"] = "news@sender.example"
    msg["To"] = "alice@example.com"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_payload("body\n")
    return msg


def _raw(c: str) -> bytes:
    return c.encode("utf-8")


def test_the_refused_set_is_what_splitlines_splits_on() -> None:
    assert sorted(LINE_BREAKS) == SPLITLINES
    for c in REFUSED:  # derived from splitlines over every code point, not from the constant
        with pytest.raises(HeaderInjectionError):
            check_headers(_compat(Subject=f"Hello{c}Bcc: victim@evil.example"))


def test_the_generator_really_breaks_the_line_at_each_of_them() -> None:
    # Why the check exists: without it the serializer put an extra header on the wire.
    for c in SPLITLINES:
        wire = serialize(_compat(Subject=f"Hello{c}X-Injected: yes"), message_id=None, utf8=True)
        assert b"\r\nX-Injected: yes\r\n" in wire, repr(c)


def test_ordinary_whitespace_and_folding_pass() -> None:
    check_headers(_compat(Subject="a\tb c", X_Folded="first\r\n second\n\tthird"))


@pytest.mark.parametrize("c", REFUSED, ids=repr)
def test_in_any_header_name_or_value_of_a_compat32_message(c: str) -> None:
    for name in ("Subject", "To", "Reply-To", "X-Custom", "Message-ID", "References"):
        with pytest.raises(HeaderInjectionError) as info:
            check_headers(_compat(**{name.replace("-", "_"): f"<a@x.example>{c}Bcc: v@e.example"}))
        assert info.value.header == name
    msg = _compat()
    msg._headers.append((f"X{c}Evil", "value"))  # type: ignore[attr-defined]
    with pytest.raises(HeaderInjectionError):
        check_headers(msg)


@pytest.mark.parametrize("c", REFUSED, ids=repr)
def test_in_an_email_message_header_placed_behind_the_policy(c: str) -> None:
    # The default policy refuses such a value when it is set; a header appended or parsed
    # (below) never meets that check.
    msg = message()
    msg._headers.append(("X-Evil", f"a{c}b"))  # type: ignore[attr-defined]
    with pytest.raises(HeaderInjectionError):
        check_headers(msg)


@pytest.mark.parametrize("policy", [email.policy.compat32, email.policy.default], ids=str)
@pytest.mark.parametrize("c", REFUSED, ids=repr)
def test_in_a_parsed_message_from_str_and_from_bytes(c: str, policy: email.policy.Policy) -> None:
    if c in "\r\n":
        pytest.skip("a real CR or LF ends the header in the parser itself")
    text = f"From: a@sender.example\nTo: b@example.com\nSubject: Hi{c}Bcc: v@evil.example\n\nbody\n"
    with pytest.raises(HeaderInjectionError):
        check_headers(email.message_from_string(text, policy=policy))
    # From bytes, a non-ASCII one arrives as UTF-8 (surrogate escapes in the message); on the
    # wire under SMTPUTF8 it is that UTF-8 again, which a UTF-8 reader splits.
    raw = text.encode("utf-8")
    with pytest.raises(HeaderInjectionError):
        check_headers(email.message_from_bytes(raw, policy=policy))


def _encoded_words(c: str) -> list[str]:
    words = []
    for charset in ("utf-8", "utf-16", "utf-32", "latin-1", "cp1252", "koi8-r", "shift_jis"):
        try:
            data = f"Hello{c}Bcc: v@evil.example".encode(charset)
        except UnicodeEncodeError:
            continue
        words.append(f"=?{charset}?b?{base64.b64encode(data).decode()}?=")
        q = "".join(chr(b) if 0x30 <= b <= 0x7A and b not in b"=?_" else f"={b:02X}" for b in data)
        words.append(f"=?{charset}?q?{q}?=")
        words.append(f"=?{charset.upper()}*en?Q?{q}?=")  # RFC 2231 language tag, upper case
    return words


@pytest.mark.parametrize("c", REFUSED, ids=repr)
def test_inside_encoded_words_in_b_and_q_and_any_charset(c: str) -> None:
    words = _encoded_words(c)
    assert len(words) >= 6  # utf-8, utf-16 and utf-32 at least, in B, Q and tagged Q
    for word in words:
        for value in (word, f"prefix {word} suffix", f'"Name {word}" <a@x.example>'):
            with pytest.raises(HeaderInjectionError, match="encoded word"):
                check_headers(_compat(Subject=value))
            parsed = email.message_from_string(
                f"From: a@x.example\nTo: b@x.example\nSubject: {value}\n\nbody\n",
                policy=email.policy.default,
            )
            with pytest.raises(HeaderInjectionError):
                check_headers(parsed)


def test_named_examples_nel_in_latin1_and_u2028_in_utf8() -> None:
    u2028 = base64.b64encode(b"a\xe2\x80\xa8b").decode()
    for value in (
        "=?iso-8859-1?q?a=85b?=",
        f"=?utf-8?b?{u2028}?=",
        "=?utf-8?q?a=E2=80?= =?utf-8?q?=A8b?=",
    ):
        with pytest.raises(HeaderInjectionError):
            check_headers(_compat(Subject=value))


@pytest.mark.parametrize("c", REFUSED, ids=repr)
def test_in_any_mime_part_and_in_attachment_filenames(c: str) -> None:
    msg = message()
    msg.add_attachment(b"data", maintype="application", subtype="octet-stream", filename="a.bin")
    part = next(p for p in msg.walk() if p.get_filename())
    part._headers.append(("X-Evil", f"a{c}b"))  # type: ignore[attr-defined]
    with pytest.raises(HeaderInjectionError):
        check_headers(msg)

    for filename in (f"a{c}b.txt", f"=?utf-8?b?{base64.b64encode(f'a{c}b'.encode()).decode()}?="):
        legacy = Message()
        legacy["From"] = "a@x.example"
        legacy.set_payload("x")
        legacy.add_header("Content-Disposition", "attachment", filename=filename)  # RFC 2231
        with pytest.raises(HeaderInjectionError):
            check_headers(legacy)
        legacy = Message()
        legacy["Content-Type"] = "application/pdf"
        legacy.set_param("name", filename)
        with pytest.raises(HeaderInjectionError):
            check_headers(legacy)


@pytest.mark.parametrize("c", REFUSED, ids=repr)
def test_envelope_addresses_refuse_them_everywhere(c: str) -> None:
    for raw in (
        f"bob{c}@example.com",
        f"bob@exa{c}mple.com",
        f"bob@example.com{c}",
        f"{c}bob@example.com",
        f"bob@example.com{c}RCPT TO:<victim@evil.example>",
    ):
        with pytest.raises(InvalidAddressError):
            normalize_address(raw)
        with pytest.raises(InvalidAddressError):
            parse_mailbox(raw)
    for raw in (f"Bob{c} <bob@example.com>", f'"Bob{c}" <bob@example.com>'):
        with pytest.raises(InvalidAddressError):
            parse_mailbox(raw)
    encoded = base64.b64encode(f"Bob{c}".encode()).decode()
    with pytest.raises(InvalidAddressError):
        parse_mailbox(f"=?utf-8?b?{encoded}?= <bob@example.com>")


async def test_end_to_end_nothing_reaches_the_server_and_no_quota_is_spent(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(warmup=WarmupSchedule.from_table({1: 2}, started_on=NOV_1))
    for c in BEYOND_CR_LF:
        for msg in (
            _compat(Subject=f"Hi{c}Bcc: victim@evil.example"),
            _compat(Subject=f"Hi{c}{c}injected body"),
            _compat(Message_ID=f"<id@sender.example>{c}X-Injected: yes"),
            email.message_from_string(
                f"From: news@sender.example\nTo: alice@example.com\nX-A: b{c}X-Injected: y\n\nb\n"
            ),
        ):
            with pytest.raises(HeaderInjectionError):
                await guard.send(msg)
        with pytest.raises(InvalidAddressError):
            await guard.send(message(), sender=f"news@sender.example{c}")
        result = await guard.send(message(), recipients=[f"alice@example.com{c}RCPT TO:<v@e.x>"])
        assert [r.status for r in result.recipients.values()] == [DeliveryStatus.INVALID]
    assert smtp_server.connections == 0
    assert smtp_server.received == []
    status = await guard.status("sender.example")
    assert status.sent_today == 0, "nothing was reserved"
    # The whole cap of 2 is still there, and a clean message goes out intact.
    ok = await guard.send(message(["alice@example.com", "bob@example.com"]))
    assert ok.accepted == ["alice@example.com", "bob@example.com"]
    (received,) = smtp_server.received
    names = [line.split(b":")[0] for line in received.data.split(b"\r\n\r\n")[0].split(b"\r\n")]
    assert b"X-Injected" not in names
    assert b"Bcc" not in names


async def test_a_folded_parsed_header_still_goes_out(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    parsed = email.message_from_bytes(
        b"From: news@sender.example\r\nTo: alice@example.com\r\n"
        b"Subject: a long subject\r\n folded once\r\n\r\nbody\r\n"
    )
    result = await make_guard().send(parsed)
    assert result.accepted == ["alice@example.com"]
    assert smtp_server.received[0].message["Subject"] == "a long subject folded once"


def test_email_message_with_a_policy_check_still_refuses_at_set_time() -> None:
    # The stdlib's own check (EmailMessage, default policy) agrees on the set.
    for c in SPLITLINES:
        msg = EmailMessage()
        with pytest.raises(ValueError, match="linefeed"):
            msg["Subject"] = f"a{c}b"
