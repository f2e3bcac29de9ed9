"""Any Django backend is a sendguard adapter: the whole pipeline applies (pytest-django).

anymail's test backend, Django's locmem backend, and Django's own SMTP backend (a subclass,
so it is not the guard's SMTP) against a real aiosmtpd server: warmup caps, status() counts,
suppression by anymail's "rejected", no suppression by its "invalid", a refused sender paused,
451s retried; what is held back kept in the outbox, what reached no one raised.
"""

from __future__ import annotations

import datetime as dt
import smtplib
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from anymail.exceptions import AnymailAPIError
from anymail.message import AnymailRecipientStatus
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.test import override_settings
from sendguard_django import BackendAdapter, get_guard, reset_guard

from sendguard import (
    ConfigurationError,
    DeliveryStatus,
    Envelope,
    Held,
    Kept,
    MemoryStore,
    NotSentError,
    SyncGuard,
)
from sendguard.testing import ScriptedSMTPServer
from tests.conftest import free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OURS = "sendguard_django.EmailBackend"
ANYMAIL = "anymail.backends.test.EmailBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
RELAY = f"{__name__}.RelayBackend"
FAST_RETRY = {"attempts": 2, "initial_wait": 0.01, "max_wait": 0.02, "jitter": 0}


class RelayBackend(DjangoSMTPBackend):  # type: ignore[misc]  # django is untyped here
    """Django's SMTP backend under another name: the guard treats it as any other backend."""


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def next_midnight() -> dt.datetime:
    """When today's warmup cap is renewed: a throttled recipient is kept until then."""
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(0), tzinfo=dt.UTC)


WARMUP = {"table": {"1": 100}, "started_on": today()}


@pytest.fixture(autouse=True)
def fresh_guard(tmp_path: Path) -> Iterator[None]:
    reset_guard()
    with override_settings(BASE_DIR=tmp_path):
        mail.outbox = []
        yield
    reset_guard()


def settings_for(backend: str, **extra: Any) -> Any:
    conf = {"BACKEND": backend, "STORE": "memory://", "RETRY": FAST_RETRY, **extra}
    return override_settings(EMAIL_BACKEND=OURS, SENDGUARD=conf)


def statuses(message: mail.EmailMessage) -> dict[str, DeliveryStatus]:
    return {a: r.status for a, r in message.sendguard_result.recipients.items()}


def kept_entries() -> list[Kept]:
    """What the project's guard keeps in its store's outbox, by id."""
    guard = get_guard()
    return guard._call(guard.guard.store.kept())


@pytest.mark.parametrize("backend", [ANYMAIL, LOCMEM])
def test_a_warmup_ramp_caps_what_another_backend_sends(backend: str) -> None:
    warmup = {"table": {"1": 20}, "started_on": today()}
    with settings_for(backend, WARMUP=warmup):
        messages = [
            mail.EmailMessage("Hi", "Body", None, [f"user{i}@example.com"]) for i in range(26)
        ]
        # 20 sent, and 6 kept for a worker: all 26 count as sent (as a queueing backend's).
        assert mail.get_connection().send_messages(messages) == 26
        assert len(mail.outbox) == 20
        assert sorted(m.to[0] for m in mail.outbox) == sorted(
            f"user{i}@example.com" for i in range(20)
        )
        outcome = [next(iter(m.sendguard_result.recipients.values())) for m in messages]
        assert [(r.status, r.kept) for r in outcome] == [(DeliveryStatus.ACCEPTED, False)] * 20 + [
            (DeliveryStatus.THROTTLED, True)
        ] * 6
        assert {r.retry_at for r in outcome[20:]} == {next_midnight()}
        assert [m.sendguard_result.outbox_id for m in messages[:20]] == [None] * 20
        entries = kept_entries()
        assert sorted((e.recipient, e.letter) for e in entries) == sorted(
            (m.to[0], m.sendguard_result.outbox_id) for m in messages[20:]
        )
        assert {(e.state, e.next_at, e.sender_domain) for e in entries} == {
            (Held.WAITING, next_midnight(), "shop.example")
        }
        status = get_guard().status("shop.example")
        assert (status.sent_today, status.cap_today) == (20, 20)


def test_suppressed_recipients_never_reach_the_backend_and_others_keep_their_lists() -> None:
    with settings_for(LOCMEM):
        get_guard().suppress("gone@example.com")
        message = mail.EmailMessage(
            "Hi",
            "Body",
            None,
            ["Ok <ok@example.com>", "gone@example.com"],
            cc=["GONE@example.com", "cc@example.com"],
            bcc=["hidden@example.com"],
        )
        assert message.send() == 1
        (delivered,) = mail.outbox
        assert (delivered.to, delivered.cc, delivered.bcc) == (
            ["Ok <ok@example.com>"],
            ["cc@example.com"],
            ["hidden@example.com"],
        )
        assert delivered is not message
        assert message.to == ["Ok <ok@example.com>", "gone@example.com"]  # the app's, untouched
        # The Message-ID the guard reports is the one the backend sent.
        assert delivered.message()["Message-ID"] == message.sendguard_result.message_id
        assert statuses(message) == {
            "ok@example.com": DeliveryStatus.ACCEPTED,
            "gone@example.com": DeliveryStatus.SUPPRESSED,
            "cc@example.com": DeliveryStatus.ACCEPTED,
            "hidden@example.com": DeliveryStatus.ACCEPTED,
        }


def test_anymail_rejected_suppresses_and_invalid_does_not() -> None:
    with settings_for(ANYMAIL, WARMUP=WARMUP):
        message = mail.EmailMessage(
            "Hi", "Body", None, ["ok@example.com", "listed@example.com", "typo@example.com"]
        )
        message.anymail_test_response = {
            "recipient_status": {
                "ok@example.com": AnymailRecipientStatus("id1", "queued"),
                "listed@example.com": AnymailRecipientStatus("id1", "rejected"),
                "typo@example.com": AnymailRecipientStatus("id1", "invalid"),
            }
        }
        assert message.send() == 1
        recipients = message.sendguard_result.recipients
        assert recipients["ok@example.com"].status is DeliveryStatus.ACCEPTED
        assert recipients["listed@example.com"].status is DeliveryStatus.REJECTED
        assert recipients["listed@example.com"].suppressed
        assert recipients["typo@example.com"].status is DeliveryStatus.REJECTED
        assert not recipients["typo@example.com"].suppressed
        guard = get_guard()
        entry = guard.suppression("listed@example.com")
        assert entry is not None
        assert entry.reason == "suppressed"
        assert guard.suppression("typo@example.com") is None
        assert guard.status("shop.example").sent_today == 1

        again = mail.EmailMessage("Again", "Body", None, ["listed@example.com"])
        with pytest.raises(NotSentError) as refused:
            again.send()
        assert refused.value.result is again.sendguard_result
        assert not refused.value.kept
        assert statuses(again) == {"listed@example.com": DeliveryStatus.SUPPRESSED}
        assert len(mail.outbox) == 1  # the suppressed address never reached anymail again
        assert kept_entries() == []


def test_every_recipient_refused_by_anymail_is_still_read_per_recipient() -> None:
    with settings_for(ANYMAIL):
        message = mail.EmailMessage("Hi", "Body", None, ["typo@example.com"])
        message.anymail_test_response = {
            "recipient_status": {"typo@example.com": AnymailRecipientStatus("id1", "invalid")}
        }
        # anymail raised AnymailRecipientsRefused: the guard reads it per recipient, and its
        # backend raises NotSentError with that result, as anymail would raise.
        with pytest.raises(NotSentError) as refused:
            message.send()
        assert refused.value.result is message.sendguard_result
        assert not refused.value.kept
        assert statuses(message) == {"typo@example.com": DeliveryStatus.REJECTED}
        assert get_guard().suppression("typo@example.com") is None
        assert kept_entries() == []


@pytest.mark.parametrize(
    ("status_code", "expected", "attempts"),
    [
        (503, DeliveryStatus.DEFERRED, 2),  # retried (RETRY is set), then deferred: kept
        (429, DeliveryStatus.PAUSED, 1),  # a rate limit: the sender waits, as over HTTP: kept
        (None, DeliveryStatus.DEFERRED, 2),  # never reached the ESP: retried, then kept
        (400, DeliveryStatus.REJECTED, 1),  # the ESP refused the message: no retry, not kept
    ],
)
def test_anymail_api_errors(
    status_code: int | None, expected: DeliveryStatus, attempts: int
) -> None:
    with settings_for(ANYMAIL, WARMUP=WARMUP):
        message = mail.EmailMessage("Hi", "Body", None, ["ok@example.com"])
        message.anymail_test_response = AnymailAPIError("ESP trouble", status_code=status_code)
        if expected is DeliveryStatus.REJECTED:
            with pytest.raises(NotSentError) as refused:
                message.send()
            assert refused.value.result is message.sendguard_result
            assert not refused.value.kept
            assert kept_entries() == []
        else:
            assert message.send() == 1  # kept for a worker: counted as sent
            (entry,) = kept_entries()
            assert (entry.recipient, entry.letter, entry.attempts, entry.state) == (
                "ok@example.com",
                message.sendguard_result.outbox_id,
                attempts,
                Held.WAITING,
            )
        rr = message.sendguard_result.recipients["ok@example.com"]
        assert (rr.status, rr.attempts) == (expected, attempts)
        assert rr.kept is (expected is not DeliveryStatus.REJECTED)
        if rr.kept:
            assert rr.retry_at is not None
            assert rr.retry_at > dt.datetime.now(dt.UTC)
            assert entry.next_at == rr.retry_at
        assert len(mail.outbox) == attempts  # each attempt reached the backend
        assert get_guard().suppression("ok@example.com") is None
        assert get_guard().status("shop.example").sent_today == 0


def test_without_retry_configured_an_anymail_503_is_tried_once_and_kept_deferred() -> None:
    conf = {"BACKEND": ANYMAIL, "STORE": "memory://", "WARMUP": WARMUP}  # no RETRY
    with override_settings(EMAIL_BACKEND=OURS, SENDGUARD=conf):
        message = mail.EmailMessage("Hi", "Body", None, ["ok@example.com"])
        message.anymail_test_response = AnymailAPIError("ESP trouble", status_code=503)
        assert message.send() == 1
        rr = message.sendguard_result.recipients["ok@example.com"]
        assert (rr.status, rr.attempts, rr.kept) == (DeliveryStatus.DEFERRED, 1, True)
        assert len(mail.outbox) == 1  # one attempt in the call: no sleeping in a request
        (entry,) = kept_entries()
        assert (entry.recipient, entry.attempts, entry.next_at) == (
            "ok@example.com",
            1,
            rr.retry_at,
        )


@pytest.fixture
def server() -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer().in_thread() as running:
        yield running


def test_django_smtp_under_another_name_retries_a_451_and_suppresses_a_550(
    server: ScriptedSMTPServer,
) -> None:
    server.script("grey@example.com", "451 4.7.1 Greylisted", "250 OK")
    server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
    with settings_for(RELAY), override_settings(EMAIL_PORT=server.port):
        grey = mail.EmailMessage("Hi", "Body", None, ["grey@example.com"])
        assert grey.send() == 1
        rr = grey.sendguard_result.recipients["grey@example.com"]
        assert (rr.status, rr.attempts) == (DeliveryStatus.ACCEPTED, 2)
        gone = mail.EmailMessage("Hi", "Body", None, ["gone@example.com"])
        with pytest.raises(NotSentError) as refused:
            gone.send()
        assert refused.value.result is gone.sendguard_result
        assert not refused.value.kept
        assert gone.sendguard_result.recipients["gone@example.com"].suppressed
        assert get_guard().is_suppressed("gone@example.com")
        assert server.accepted == ["grey@example.com"]


class RefuseSender:
    """An aiosmtpd handler that refuses every sender as blocklisted."""

    async def handle_MAIL(
        self, server: object, session: object, envelope: object, address: str, options: object
    ) -> str:
        del server, session, envelope, address, options
        return "550 5.7.1 Client host rejected: blocked using zen.spamhaus.org"


def test_a_sender_refused_at_mail_from_pauses_the_sender_and_suppresses_nobody() -> None:
    port = free_port()
    controller = Controller(RefuseSender(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with settings_for(RELAY), override_settings(EMAIL_PORT=port):
            message = mail.EmailMessage("Hi", "Body", None, ["a@example.com", "b@example.com"])
            with pytest.raises(NotSentError) as refused:
                message.send()
            assert refused.value.result is message.sendguard_result
            assert not refused.value.kept
            recipients = message.sendguard_result.recipients
            assert {(r.status, r.kept) for r in recipients.values()} == {
                (DeliveryStatus.REJECTED, False)
            }
            guard = get_guard()
            assert not guard.is_suppressed("a@example.com")
            assert not guard.is_suppressed("b@example.com")
            pauses = guard.status("shop.example").domain_pauses
            assert [domain for domain, _, _ in pauses] == ["example.com"]
            (until,) = [until for _, until, _ in pauses]
            later = mail.EmailMessage("Later", "Body", None, ["c@example.com"])
            assert later.send() == 1  # held back by the pause and kept until it ends
            assert statuses(later) == {"c@example.com": DeliveryStatus.PAUSED}
            rr = later.sendguard_result.recipients["c@example.com"]
            assert (rr.kept, rr.attempts, rr.retry_at) == (True, 0, until)
            (entry,) = kept_entries()
            assert (entry.recipient, entry.next_at) == ("c@example.com", until)
    finally:
        controller.stop()


def test_smtplib_errors_become_replies_for_each_recipient() -> None:
    from sendguard._backend_adapter import error_replies  # noqa: PLC0415

    rcpts = ["a@example.com", "b@example.com"]
    refused = smtplib.SMTPRecipientsRefused({"A@example.com": (550, b"5.1.1 unknown")})
    replies = error_replies(rcpts, refused)
    assert (replies["a@example.com"].code, replies["a@example.com"].enhanced_code) == (550, "5.1.1")
    assert replies["b@example.com"].code is None  # not named: tried again
    data = error_replies(rcpts, smtplib.SMTPDataError(554, b"5.6.0 message refused"))
    assert {(r.code, str(r.stage)) for r in data.values()} == {(554, "data")}
    refused_connection = error_replies(rcpts, ConnectionRefusedError("refused"))
    assert {(r.code, str(r.stage)) for r in refused_connection.values()} == {(None, "connect")}
    lost = error_replies(rcpts, smtplib.SMTPServerDisconnected("gone"))  # maybe after the dot
    assert {(r.code, str(r.stage)) for r in lost.values()} == {(None, "data_end")}
    odd = error_replies(rcpts, RuntimeError("boom"))
    assert {(r.code, str(r.stage)) for r in odd.values()} == {(None, "data_end")}


def test_a_partial_refusal_the_guard_cannot_match_leaves_no_one_accepted() -> None:
    from sendguard._backend_adapter import replies_for  # noqa: PLC0415

    rcpts = ["a@example.com", "b@example.com"]
    named = replies_for(rcpts, object(), sent=1, refused={"B@Example.com": (550, b"5.1.1 no")})
    assert (named["a@example.com"].code, named["b@example.com"].code) == (250, 550)
    # The backend spelled a refused address its own way: which recipient it was is unknown,
    # so nobody is called accepted (uncertain, never suppressed, never re-sent).
    odd = replies_for(rcpts, object(), sent=1, refused={"=?utf-8?q?x?=": (550, "5.1.1 no")})
    assert {r.code for r in odd.values()} == {None}
    assert "refused =?utf-8?q?x?=" in odd["a@example.com"].text


def test_a_backend_instance_is_an_adapter_and_bad_ones_are_configuration_errors() -> None:
    adapter = BackendAdapter(LocmemBackend())
    guard = SyncGuard(adapter=adapter, store=MemoryStore())
    try:
        message = mail.EmailMessage("Hi", "Body", None, ["ok@example.com"])
        result = guard.send(
            message.message(),
            sender="news@shop.example",
            recipients=["ok@example.com"],
            original=message,
        )
        assert result.accepted == ["ok@example.com"]
        assert [m.to for m in mail.outbox] == [["ok@example.com"]]
    finally:
        guard.close()
    with pytest.raises(ConfigurationError, match="cannot import"):
        BackendAdapter("no.such.Backend")
    with pytest.raises(ConfigurationError, match="sendguard's own backend"):
        BackendAdapter(OURS)
    with pytest.raises(ConfigurationError):
        BackendAdapter(42)
    with settings_for("no.such.Backend"), pytest.raises(ImproperlyConfigured):
        mail.send_mail("Hi", "Body", None, ["ok@example.com"], fail_silently=True)


async def test_without_the_framework_message_the_adapter_refuses() -> None:
    adapter = BackendAdapter(LocmemBackend())
    envelope = Envelope("a@shop.example", ("b@example.com",), mail.EmailMessage().message(), b"")
    with pytest.raises(ConfigurationError, match="original=message"):
        await adapter.deliver(envelope)


def test_a_recipient_named_twice_gets_one_copy_and_the_apps_message_id_stays() -> None:
    with settings_for(LOCMEM):
        message = mail.EmailMessage(
            "Hi",
            "Body",
            None,
            ["ok@example.com"],
            cc=["OK@example.com"],
            headers={"Message-Id": "<app-1@shop.example>"},
        )
        assert message.send() == 1
        (delivered,) = mail.outbox
        assert (delivered.to, delivered.cc) == (["ok@example.com"], [])
        sent = delivered.message()
        assert sent.get_all("Message-ID") == ["<app-1@shop.example>"]
        assert message.sendguard_result.message_id == "<app-1@shop.example>"


def received_headers(server: ScriptedSMTPServer) -> list[tuple[list[str], str, str]]:
    """Per message received: its envelope recipients, its To and its Cc header."""
    found = []
    for received in server.received:
        parsed = message_from_bytes(received.data)
        found.append((sorted(received.rcpt_tos), str(parsed["To"]), str(parsed.get("Cc", ""))))
    return found


def test_a_partial_refusal_by_djangos_smtp_backend_is_read_per_recipient(
    server: ScriptedSMTPServer,
) -> None:
    # smtplib's sendmail returns the refused recipients when it accepted others, and Django's
    # SMTP backend drops that: the adapter must still see "gone" refused.
    server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
    server.script("full@example.com", "452 4.2.2 Mailbox full", "250 OK")
    with settings_for(RELAY), override_settings(EMAIL_PORT=server.port):
        message = mail.EmailMessage(
            "Hi", "Body", None, ["ok@example.com", "gone@example.com", "full@example.com"]
        )
        assert message.send() == 1
        recipients = message.sendguard_result.recipients
        assert recipients["ok@example.com"].status is DeliveryStatus.ACCEPTED
        assert recipients["gone@example.com"].status is DeliveryStatus.REJECTED
        assert recipients["gone@example.com"].suppressed
        assert recipients["gone@example.com"].enhanced_code == "5.1.1"
        # The 452 was retried for that recipient alone, and went through.
        assert (recipients["full@example.com"].status, recipients["full@example.com"].attempts) == (
            DeliveryStatus.ACCEPTED,
            2,
        )
        assert get_guard().is_suppressed("gone@example.com")
        assert not get_guard().is_suppressed("ok@example.com")
        assert sorted(server.accepted) == ["full@example.com", "ok@example.com"]


def test_a_partial_refusal_is_read_on_a_backend_instance_already_open(
    server: ScriptedSMTPServer,
) -> None:
    server.script("gone@example.com", "550 5.1.1 no such user")
    backend = DjangoSMTPBackend(host="127.0.0.1", port=server.port)
    backend.open()  # the application's own connection, kept open across sends
    try:
        guard = SyncGuard(adapter=BackendAdapter(backend), store=MemoryStore())
        with guard:
            for rcpt in ("gone@example.com", "ok@example.com"):
                message = mail.EmailMessage(
                    "Hi", "Body", "a@shop.example", ["ok2@example.com", rcpt]
                )
                result = guard.send(
                    message.message(),
                    sender="a@shop.example",
                    recipients=message.recipients(),
                    original=message,
                )
                assert result.recipients["ok2@example.com"].status is DeliveryStatus.ACCEPTED
            assert guard.is_suppressed("gone@example.com")
            assert not guard.is_suppressed("ok@example.com")
            assert server.connections == 1
    finally:
        backend.close()


@pytest.mark.parametrize("why", ["bounce_secret", "suppressed", "retry"])
def test_each_copy_shows_the_apps_to_and_cc_headers(server: ScriptedSMTPServer, why: str) -> None:
    extra: dict[str, Any] = {"BOUNCE_SECRET": "s" * 32} if why == "bounce_secret" else {}
    if why == "retry":
        server.script("b@example.com", "451 4.7.1 Greylisted", "250 OK")
    with settings_for(RELAY, **extra), override_settings(EMAIL_PORT=server.port):
        if why == "suppressed":
            get_guard().suppress("gone@example.com")
        to = ["Ann <a@example.com>", "b@example.com", "gone@example.com"]
        message = mail.EmailMessage(
            "Hi", "Body", None, to, cc=["c@example.com"], bcc=["hidden@example.com"]
        )
        assert message.send() == 1
    got = received_headers(server)
    assert sorted(r for rcpts, _, _ in got for r in rcpts) == sorted(
        ["a@example.com", "b@example.com", "c@example.com", "hidden@example.com"]
        + ([] if why == "suppressed" else ["gone@example.com"])
    )
    assert len(got) > 1 if why != "suppressed" else len(got) == 1
    for _, to_header, cc_header in got:
        assert to_header == "Ann <a@example.com>, b@example.com, gone@example.com"
        assert cc_header == "c@example.com"
    for received in server.received:
        assert b"hidden@example.com" not in received.data  # Bcc never in a header
        assert message_from_bytes(received.data).get_all("To") is not None
        assert len(message_from_bytes(received.data).get_all("To") or []) == 1


def test_a_to_header_the_app_set_itself_stays(server: ScriptedSMTPServer) -> None:
    with settings_for(RELAY, BOUNCE_SECRET="s" * 32), override_settings(EMAIL_PORT=server.port):
        message = mail.EmailMessage(
            "Hi",
            "Body",
            None,
            ["a@example.com", "b@example.com"],
            headers={"To": "Our customers <list@shop.example>"},
        )
        assert message.send() == 1
    assert {to for _, to, _ in received_headers(server)} == {"Our customers <list@shop.example>"}


def test_the_apps_message_gets_anymail_status_of_every_copy() -> None:
    with settings_for(ANYMAIL, BOUNCE_SECRET="s" * 32):  # a copy per recipient
        message = mail.EmailMessage("Hi", "Body", None, ["a@example.com", "b@example.com"])
        assert message.send() == 1
        assert len(mail.outbox) == 2
        status = message.anymail_status
        assert set(status.recipients) == {"a@example.com", "b@example.com"}
        assert status.status == {"sent"}
        ids = {mail.outbox[0].anymail_status.message_id, mail.outbox[1].anymail_status.message_id}
        assert status.message_id == ids  # two copies, two IDs: the set, as anymail gives it

        # Sent again to one recipient: this send's status only, as anymail does.
        message.to = ["a@example.com"]
        assert message.send() == 1
        assert set(message.anymail_status.recipients) == {"a@example.com"}
        assert message.anymail_status.message_id == mail.outbox[2].anymail_status.message_id


def test_anymail_status_is_fresh_when_every_recipient_is_held_back() -> None:
    with settings_for(ANYMAIL):
        get_guard().suppress("gone@example.com")
        message = mail.EmailMessage("Hi", "Body", None, ["ok@example.com"])
        assert message.send() == 1
        message.to = ["gone@example.com"]
        with pytest.raises(NotSentError):
            message.send()
        assert statuses(message) == {"gone@example.com": DeliveryStatus.SUPPRESSED}
        assert message.anymail_status.recipients == {}
        assert message.anymail_status.status is None
        message.to = ["ok@example.com"]
        assert message.send() == 1
        assert set(message.anymail_status.recipients) == {"ok@example.com"}
        message.to = ["gone@example.com"]
        assert mail.get_connection(fail_silently=True).send_messages([message]) == 0
        assert message.anymail_status.recipients == {}
        assert message.anymail_status.status is None
