"""What the Django and Flask backends count as sent, and when they raise NotSentError.

A message counts as sent when a recipient accepted it or it was kept in the outbox for a
worker; ``KEPT = "raise"`` makes a kept-only message raise, ``NOT_SENT = "ignore"`` makes one
that reached no one return 0, and any other value of either is a configuration error.  Without
``RETRY`` a send makes one attempt and keeps the rest, which a worker then delivers.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_mailman
import pytest
from anymail.message import AnymailRecipientStatus
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from flask import Flask, g
from sendguard_django import get_guard, reset_guard
from sendguard_django.checks import check_settings
from sendguard_flask import SendGuard, current_guard

from sendguard import (
    ConfigurationError,
    DeliveryStatus,
    Held,
    Kept,
    NotSentError,
    SyncGuard,
    WarmupSchedule,
)
from sendguard.testing import ScriptedSMTPServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OURS = "sendguard_django.EmailBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
ANYMAIL = "anymail.backends.test.EmailBackend"


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def next_midnight() -> dt.datetime:
    return dt.datetime.combine(today() + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


def kept_entries(guard: SyncGuard) -> list[Kept]:
    """What *guard* keeps in its store's outbox, by id."""
    return guard._call(guard.guard.store.kept())


@pytest.fixture
def server() -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer().in_thread() as running:
        yield running


# -- Django ------------------------------------------------------------------------------------


@pytest.fixture
def fresh_guard(tmp_path: Path) -> Iterator[None]:
    reset_guard()
    with override_settings(BASE_DIR=tmp_path):
        mail.outbox = []
        yield
    reset_guard()


def django_settings(backend: str = LOCMEM, *, cap: int = 1, **extra: Any) -> Any:
    """Our backend in front of *backend*, a memory store, and a warmup cap of *cap* today."""
    conf = {
        "BACKEND": backend,
        "STORE": "memory://",
        "WARMUP": {"table": {"1": cap}, "started_on": today().isoformat()},
        **extra,
    }
    return override_settings(EMAIL_BACKEND=OURS, SENDGUARD=conf)


@pytest.mark.usefixtures("fresh_guard")
@pytest.mark.parametrize("not_sent", ["raise", "ignore"])
def test_django_kept_raise_makes_a_kept_only_message_raise(not_sent: str) -> None:
    # NOT_SENT="ignore" is about mail that reached no one and was not kept: it does not
    # silence KEPT="raise".
    with django_settings(KEPT="raise", NOT_SENT=not_sent):
        assert mail.send_mail("Hi", "Body", None, ["first@example.com"]) == 1
        message = mail.EmailMessage("Hi", "Body", None, ["later@example.com"])
        with pytest.raises(NotSentError) as raised:
            message.send()
        assert raised.value.kept is True
        result = raised.value.result
        assert result is message.sendguard_result
        assert result.kept == ["later@example.com"]
        later = result.recipients["later@example.com"]
        assert (later.status, later.kept, later.retry_at) == (
            DeliveryStatus.THROTTLED,
            True,
            next_midnight(),
        )
        # Raised, and still kept: a worker sends it tomorrow.
        (entry,) = kept_entries(get_guard())
        assert (entry.recipient, entry.letter, entry.state, entry.next_at) == (
            "later@example.com",
            result.outbox_id,
            Held.WAITING,
            next_midnight(),
        )
        assert [m.to for m in mail.outbox] == [["first@example.com"]]
        silent = mail.get_connection(fail_silently=True)
        assert silent.send_messages([mail.EmailMessage("Hi", "Body", None, ["x@example.com"])]) == 0
        assert len(kept_entries(get_guard())) == 2


@pytest.mark.usefixtures("fresh_guard")
def test_django_kept_raise_still_counts_a_message_a_recipient_accepted() -> None:
    with django_settings(KEPT="raise"):
        message = mail.EmailMessage("Hi", "Body", None, ["a@example.com", "b@example.com"])
        assert message.send() == 1
        assert message.sendguard_result.accepted == ["a@example.com"]
        assert message.sendguard_result.kept == ["b@example.com"]
        assert [m.to for m in mail.outbox] == [["a@example.com"]]
        assert [e.recipient for e in kept_entries(get_guard())] == ["b@example.com"]


@pytest.mark.usefixtures("fresh_guard")
def test_django_kept_counts_as_sent_by_default() -> None:
    with django_settings(NOT_SENT="ignore"):
        messages = [mail.EmailMessage("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(3)]
        assert mail.get_connection().send_messages(messages) == 3
        assert [m.sendguard_result.kept for m in messages] == [
            [],
            ["u1@example.com"],
            ["u2@example.com"],
        ]
        assert len(mail.outbox) == 1


@pytest.mark.usefixtures("fresh_guard")
def test_django_not_sent_ignore_returns_0_without_raising() -> None:
    with django_settings(ANYMAIL, cap=100, NOT_SENT="ignore"), override_settings(ANYMAIL={}):
        get_guard().suppress("gone@example.com")
        gone = mail.EmailMessage("Hi", "Body", None, ["gone@example.com"])
        assert gone.send() == 0
        assert {a: r.status for a, r in gone.sendguard_result.recipients.items()} == {
            "gone@example.com": DeliveryStatus.SUPPRESSED
        }
        listed = mail.EmailMessage("Hi", "Body", None, ["listed@example.com"])
        listed.anymail_test_response = {
            "recipient_status": {"listed@example.com": AnymailRecipientStatus("id1", "rejected")}
        }
        assert listed.send() == 0  # anymail raised "every recipient refused": the guard does not
        rr = listed.sendguard_result.recipients["listed@example.com"]
        assert (rr.status, rr.suppressed, rr.kept) == (DeliveryStatus.REJECTED, True, False)
        assert kept_entries(get_guard()) == []
        assert len(mail.outbox) == 1  # the rejected one reached anymail; the suppressed did not


@pytest.mark.usefixtures("fresh_guard")
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("KEPT", "queue"),
        ("KEPT", "ignore"),
        ("KEPT", True),
        ("NOT_SENT", "silent"),
        ("NOT_SENT", "sent"),
    ],
)
def test_django_a_bad_kept_or_not_sent_is_improperly_configured(key: str, value: object) -> None:
    conf = {"BACKEND": LOCMEM, "STORE": "memory://", key: value}
    with override_settings(EMAIL_BACKEND=OURS, SENDGUARD=conf):
        said = rf"SENDGUARD\['{key}'\] must be .*, not {re.escape(repr(value))}$"
        with pytest.raises(ImproperlyConfigured, match=said):
            mail.get_connection()
        with pytest.raises(ImproperlyConfigured, match=said):  # fail_silently never hides it
            mail.send_mail("Hi", "Body", None, ["ok@example.com"], fail_silently=True)
        with pytest.raises(ImproperlyConfigured, match=said):
            get_guard()
        (error,) = check_settings()
        assert error.id == "sendguard.E001"
        assert re.search(said, error.msg)
    assert mail.outbox == []


@pytest.mark.usefixtures("fresh_guard")
def test_django_without_retry_a_451_is_tried_once_kept_and_a_worker_delivers_it(
    server: ScriptedSMTPServer, tmp_path: Path
) -> None:
    server.script("grey@example.com", "451 4.7.1 Greylisted", "250 OK")
    # No RETRY: no sleeping in the request; the store is the default file in BASE_DIR.
    with override_settings(EMAIL_BACKEND=OURS, EMAIL_PORT=server.port, SENDGUARD={}):
        message = mail.EmailMessage("Hi", "Body", None, ["grey@example.com"])
        assert message.send() == 1
        rr = message.sendguard_result.recipients["grey@example.com"]
        assert (rr.status, rr.attempts, rr.kept, rr.reply_code) == (
            DeliveryStatus.DEFERRED,
            1,
            True,
            451,
        )
        assert server.accepted == []
        assert server.rcpt_log == ["grey@example.com"]
        guard = get_guard()
        (entry,) = kept_entries(guard)
        assert (entry.recipient, entry.attempts, entry.next_at) == (
            "grey@example.com",
            1,
            rr.retry_at,
        )
        assert (tmp_path / "sendguard.db").is_file()
        # Due now (as when its time has come), a worker's pass delivers it.
        guard._call(guard.guard.store.retry([entry.id], dt.datetime.now(dt.UTC)))
        run = guard.deliver_outbox()
        assert (run.claimed, run.delivered) == (1, 1)
        assert kept_entries(guard) == []
        assert server.accepted == ["grey@example.com"]


# -- Flask -------------------------------------------------------------------------------------


@pytest.fixture
def flask_apps(tmp_path: Path) -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        current_guard(app).close()


def flask_app(
    made: list[Flask], tmp_path: Path, *, cap: int = 1, **config: Any
) -> tuple[Flask, flask_mailman.Mail]:
    """A guarded app with Flask-Mailman's locmem backend behind the guard, a memory store."""
    app = Flask("test", instance_path=str(tmp_path / f"instance{len(made)}"))
    app.config.update(
        MAIL_DEFAULT_SENDER="news@shop.example",
        SENDGUARD_STORE="memory://",
        SENDGUARD_BACKEND="locmem",
        SENDGUARD_WARMUP=WarmupSchedule.from_table({1: cap}, started_on=today()),
        **config,
    )
    SendGuard(app)
    made.append(app)
    return app, flask_mailman.Mail(app)


@pytest.mark.parametrize("not_sent", ["raise", "ignore"])
def test_flask_kept_raise_makes_a_kept_only_message_raise(
    not_sent: str, flask_apps: list[Flask], tmp_path: Path
) -> None:
    app, mailman = flask_app(
        flask_apps, tmp_path, SENDGUARD_KEPT="raise", SENDGUARD_NOT_SENT=not_sent
    )
    with app.app_context():
        assert mailman.send_mail("Hi", "Body", None, ["first@example.com"]) == 1
        message = flask_mailman.EmailMessage("Hi", "Body", None, ["later@example.com"])
        with pytest.raises(NotSentError) as raised:
            mailman.get_connection().send_messages([message])
        assert raised.value.kept is True
        result = raised.value.result
        assert result is message.sendguard_result
        assert g.sendguard_results[-1] is result
        later = result.recipients["later@example.com"]
        assert (later.status, later.kept, later.retry_at) == (
            DeliveryStatus.THROTTLED,
            True,
            next_midnight(),
        )
        (entry,) = kept_entries(current_guard(app))
        assert (entry.recipient, entry.letter) == ("later@example.com", result.outbox_id)
        assert mailman.send_mail("Hi", "Body", None, ["x@example.com"], fail_silently=True) == 0
        assert [m.to for m in mailman.outbox] == [["first@example.com"]]


def test_flask_kept_counts_as_sent_by_default(flask_apps: list[Flask], tmp_path: Path) -> None:
    app, mailman = flask_app(flask_apps, tmp_path, SENDGUARD_NOT_SENT="ignore")
    with app.app_context():
        messages = [
            flask_mailman.EmailMessage("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(3)
        ]
        assert mailman.get_connection().send_messages(messages) == 3
        assert [m.sendguard_result.kept for m in messages] == [
            [],
            ["u1@example.com"],
            ["u2@example.com"],
        ]
        assert len(mailman.outbox) == 1


def test_flask_not_sent_ignore_returns_0_without_raising(
    flask_apps: list[Flask], tmp_path: Path
) -> None:
    app, mailman = flask_app(flask_apps, tmp_path, cap=100, SENDGUARD_NOT_SENT="ignore")
    with app.app_context():
        current_guard(app).suppress("gone@example.com")
        assert mailman.send_mail("Hi", "Body", None, ["ok@example.com"]) == 1
        message = flask_mailman.EmailMessage("Hi", "Body", None, ["gone@example.com"])
        assert mailman.get_connection().send_messages([message]) == 0
        assert g.sendguard_results[-1] is message.sendguard_result
        gone = message.sendguard_result.recipients["gone@example.com"]
        assert (gone.status, gone.kept) == (DeliveryStatus.SUPPRESSED, False)
        assert [m.to for m in mailman.outbox] == [["ok@example.com"]]
        assert kept_entries(current_guard(app)) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("KEPT", "queue"),
        ("KEPT", "ignore"),
        ("KEPT", True),
        ("NOT_SENT", "silent"),
        ("NOT_SENT", "sent"),
    ],
)
def test_flask_a_bad_kept_or_not_sent_is_a_configuration_error(
    key: str, value: object, tmp_path: Path
) -> None:
    app = Flask("test", instance_path=str(tmp_path / "instance"))
    app.config.update(SENDGUARD_STORE="memory://", **{f"SENDGUARD_{key}": value})
    said = rf"SENDGUARD_{key} (must be )?'.*' or '.*' \(not {re.escape(repr(value))}\)"
    with pytest.raises(ConfigurationError, match=said):
        SendGuard(app)
    assert "sendguard" not in app.extensions


def test_flask_without_retry_a_451_is_tried_once_kept_and_a_worker_delivers_it(
    server: ScriptedSMTPServer, tmp_path: Path
) -> None:
    server.script("grey@example.com", "451 4.7.1 Greylisted", "250 OK")
    app = Flask("test", instance_path=str(tmp_path / "instance"))
    app.config.update(  # no SENDGUARD_RETRY
        MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, MAIL_DEFAULT_SENDER="news@shop.example"
    )
    SendGuard(app)
    mailman = flask_mailman.Mail(app)
    guard = current_guard(app)
    try:
        with app.app_context():
            message = flask_mailman.EmailMessage("Hi", "Body", None, ["grey@example.com"])
            assert mailman.get_connection().send_messages([message]) == 1
        rr = message.sendguard_result.recipients["grey@example.com"]
        assert (rr.status, rr.attempts, rr.kept) == (DeliveryStatus.DEFERRED, 1, True)
        assert server.accepted == []
        (entry,) = kept_entries(guard)
        assert (entry.recipient, entry.attempts, entry.next_at) == (
            "grey@example.com",
            1,
            rr.retry_at,
        )
        guard._call(guard.guard.store.retry([entry.id], dt.datetime.now(dt.UTC)))
        run = guard.deliver_outbox()
        assert (run.claimed, run.delivered) == (1, 1)
        assert kept_entries(guard) == []
        assert server.accepted == ["grey@example.com"]
    finally:
        guard.close()
