"""sendguard-django with the addresses Django passes every day: display names, quoted, encoded.

Both modes: the guard delivering over SMTP itself (to a real aiosmtpd server), and the guard
wrapping another backend (locmem, anymail's test backend).  Also the line-break characters
Django's own header check lets through (it looks for CR and LF only).
"""

from __future__ import annotations

import asyncio
import email.errors
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.test import override_settings
from sendguard_django import get_guard, reset_guard

from sendguard import LINE_BREAKS, DeliveryStatus, HeaderInjectionError, InvalidAddressError
from sendguard.testing import ScriptedSMTPServer
from tests.conftest import scratch_redis_store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAST_RETRY = {"attempts": 2, "initial_wait": 0.01, "max_wait": 0.02, "jitter": 0}
OURS = "sendguard_django.EmailBackend"
SENDERS = [
    ("Shop <app@shop.example>", "Shop"),
    ('"Shop, Inc." <app@shop.example>', "Shop, Inc."),
    ("=?utf-8?q?Caf=C3=A9?= <app@shop.example>", "Café"),
    ("Café <app@shop.example>", "Café"),  # Django encodes it
    ("Dr. Who <app@shop.example>", "Dr. Who"),
    ("app@shop.example", ""),
]


@pytest.fixture
def server() -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer().in_thread() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_guard(tmp_path: Path, redis_url: str, prefix: str) -> Iterator[None]:
    reset_guard()
    with override_settings(BASE_DIR=tmp_path):
        yield
    reset_guard()

    async def clean() -> None:
        async with scratch_redis_store(redis_url, prefix):
            pass

    asyncio.run(clean())


def _smtp(
    server: ScriptedSMTPServer, redis_url: str, prefix: str, **settings: object
) -> override_settings:
    conf = {
        "REDIS_URL": redis_url,
        "PREFIX": prefix,
        "RETRY": FAST_RETRY,
        "WARMUP": {"table": {1: 1000}, "started_on": "2026-01-01"},
    }
    return override_settings(EMAIL_BACKEND=OURS, EMAIL_PORT=server.port, SENDGUARD=conf, **settings)


def _wrapping(backend: str, redis_url: str, prefix: str) -> override_settings:
    conf = {"BACKEND": backend, "REDIS_URL": redis_url, "PREFIX": prefix}
    return override_settings(EMAIL_BACKEND=OURS, SENDGUARD=conf, ANYMAIL={})


@pytest.mark.parametrize(("sender", "name"), SENDERS)
def test_smtp_mode_sends_from_and_to_named_mailboxes(
    sender: str, name: str, server: ScriptedSMTPServer, redis_url: str, prefix: str
) -> None:
    with _smtp(server, redis_url, prefix):
        message = mail.EmailMessage(
            "Hi",
            "Body",
            sender,
            ["Bob <bob@example.com>", '"Smith, Ann" <ann@example.com>'],
            cc=["=?utf-8?q?J=C3=BCrgen?= <juergen@example.com>"],
            bcc=["Zoë <zoe@example.com>"],
            reply_to=["Support Team <help@shop.example>"],
        )
        assert message.send() == 1
    (received,) = server.received
    assert received.mail_from == "app@shop.example"
    assert received.rcpt_tos == [
        "bob@example.com",
        "ann@example.com",
        "juergen@example.com",
        "zoe@example.com",
    ]
    headers = received.message
    (mailbox,) = headers["From"].addresses
    assert (mailbox.display_name, mailbox.addr_spec) == (name, "app@shop.example")
    assert str(headers["To"]) == 'Bob <bob@example.com>, "Smith, Ann" <ann@example.com>'
    assert str(headers["Cc"]) == "Jürgen <juergen@example.com>"
    assert str(headers["Reply-To"]) == "Support Team <help@shop.example>"
    assert "Bcc" not in headers
    assert received.data.isascii()
    result = message.sendguard_result
    assert result.sender == "app@shop.example"
    assert result.accepted == [
        "bob@example.com",
        "ann@example.com",
        "juergen@example.com",
        "zoe@example.com",
    ]


@pytest.mark.parametrize("fail_silently", [False, True])
def test_default_from_email_with_a_display_name(
    fail_silently: bool, server: ScriptedSMTPServer, redis_url: str, prefix: str
) -> None:
    with _smtp(server, redis_url, prefix, DEFAULT_FROM_EMAIL="Shop <noreply@shop.example>"):
        sent = mail.send_mail(
            "Hi", "Body", None, ["Bob <bob@example.com>"], fail_silently=fail_silently
        )
    assert sent == 1
    (received,) = server.received
    assert (received.mail_from, received.rcpt_tos) == ("noreply@shop.example", ["bob@example.com"])
    assert str(received.message["From"]) == "Shop <noreply@shop.example>"


def test_an_invalid_address_among_valid_ones_is_reported_not_counted(
    server: ScriptedSMTPServer, redis_url: str, prefix: str
) -> None:
    to = ["Bob <bob@example.com>", "Broken <not an address>", "carol@example.com"]
    with _smtp(server, redis_url, prefix):
        message = mail.EmailMessage("Hi", "Body", "Shop <app@shop.example>", to)
        assert message.send() == 1
    assert server.received[0].rcpt_tos == ["bob@example.com", "carol@example.com"]
    statuses = {a: r.status for a, r in message.sendguard_result.recipients.items()}
    assert statuses == {
        "bob@example.com": DeliveryStatus.ACCEPTED,
        "Broken <not an address>": DeliveryStatus.INVALID,
        "carol@example.com": DeliveryStatus.ACCEPTED,
    }
    assert message.sendguard_result.accepted == ["bob@example.com", "carol@example.com"]


@pytest.mark.parametrize("c", [c for c in LINE_BREAKS if c not in "\r\n"] + ["\x00"], ids=repr)
def test_line_breaks_django_lets_through_are_refused_by_the_guard_before_the_quota(
    c: str, server: ScriptedSMTPServer, redis_url: str, prefix: str
) -> None:
    attempts: list[dict[str, Any]] = [
        {"headers": {"X-Campaign": f"spring{c}Bcc: victim@evil.example"}},
        {"headers": {"Message-ID": f"<id@shop.example>{c}X-Injected: yes"}},
        {"subject": f"Hi{c}Bcc: victim@evil.example"},
        {"subject": f"Hi{c}{c}an injected body"},
        {"reply_to": [f"Support{c}Bcc: victim@evil.example <help@shop.example>"]},
        {"cc": [f"Carol{c}X-Injected: yes <carol@example.com>"]},
        {"from_email": f"Shop{c}X-Injected: yes <app@shop.example>"},
    ]
    refused_by_the_guard = sent = 0
    with _smtp(server, redis_url, prefix):
        for options in attempts:
            fields = {"subject": "Hi", "body": "Body", "to": ["bob@example.com"], **options}
            message = mail.EmailMessage(**fields)
            try:
                message.message()
            except (ValueError, email.errors.HeaderParseError):
                continue  # stock Django refuses this one itself
            try:
                sent += message.send()
            except HeaderInjectionError:
                refused_by_the_guard += 1
            except InvalidAddressError:  # a From Django left a line break in: not an address
                pass
        # Only what went out took quota; a refused message reserved nothing.
        assert get_guard().status("shop.example").sent_today == sent
    if c.isascii():  # Django writes it raw: the guard is the one refusing
        assert refused_by_the_guard >= 3, "headers=, subject and reply_to reach the guard"
    # Whatever went out (Django folds a non-ASCII one into an encoded word's folding) carries
    # no header line of its own making.
    for received in server.received:
        head = received.data.split(b"\r\n\r\n")[0]
        names = [line.split(b":")[0] for line in head.split(b"\r\n") if line[:1] not in b" \t"]
        assert b"Bcc" not in names
        assert b"X-Injected" not in names
        assert received.rcpt_tos == ["bob@example.com"]


@pytest.mark.parametrize(
    "backend",
    ["django.core.mail.backends.locmem.EmailBackend", "anymail.backends.test.EmailBackend"],
)
def test_wrapping_another_backend_keeps_the_names_and_reports_each_recipient(
    backend: str, redis_url: str, prefix: str
) -> None:
    with _wrapping(backend, redis_url, prefix):
        mail.outbox = []
        get_guard().suppress("gone@example.com")
        message = mail.EmailMessage(
            "Hi",
            "Body",
            '"Shop, Inc." <app@shop.example>',
            ["Bob <bob@example.com>", "Gone <GONE@example.com>", "Broken <nope>"],
            cc=["=?utf-8?q?J=C3=BCrgen?= <juergen@example.com>"],
            bcc=["Zoë <zoe@example.com>"],
            reply_to=["Support <help@shop.example>"],
        )
        assert message.send() == 1
        (delivered,) = mail.outbox
    assert delivered.to == ["Bob <bob@example.com>"]
    assert delivered.cc == ["=?utf-8?q?J=C3=BCrgen?= <juergen@example.com>"]
    assert delivered.bcc == ["Zoë <zoe@example.com>"]
    statuses = {a: r.status for a, r in message.sendguard_result.recipients.items()}
    assert statuses == {
        "bob@example.com": DeliveryStatus.ACCEPTED,
        "gone@example.com": DeliveryStatus.SUPPRESSED,
        "Broken <nope>": DeliveryStatus.INVALID,
        "juergen@example.com": DeliveryStatus.ACCEPTED,
        "zoe@example.com": DeliveryStatus.ACCEPTED,
    }
    assert message.sendguard_result.sender == "app@shop.example"
