"""sendguard-flask with Flask-Mailman and Flask-Mail, against a real aiosmtpd server and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import smtplib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask_mail
import flask_mailman
import pytest
from flask import Flask, g
from sendguard_flask import SendGuard, current_guard

from sendguard import (
    ConfigurationError,
    DeliveryStatus,
    HeaderInjectionError,
    Held,
    Kept,
    NotSentError,
    StoreError,
    WarmupSchedule,
)
from sendguard.testing import ScriptedSMTPServer
from tests.conftest import free_port, in_forked_child, scratch_redis_store

FAST_RETRY = {"attempts": 2, "initial_wait": 0.01, "max_wait": 0.02, "jitter": 0}


@pytest.fixture
def server() -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer().in_thread() as running:
        yield running


MakeApp = Callable[..., Flask]


@pytest.fixture
def make_app(server: ScriptedSMTPServer, tmp_path: Path) -> MakeApp:
    """Apps that send to *server*, each with its own instance folder (the default store's)."""

    def make(instance: Path | None = None, **config: Any) -> Flask:
        folder = instance or tmp_path / f"instance{len(made)}"
        app = Flask("test", instance_path=str(folder))
        made.append(app)
        app.config.update(
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=server.port,
            MAIL_DEFAULT_SENDER="news@shop.example",
            SENDGUARD_RETRY=FAST_RETRY,
            **config,
        )
        return app

    made: list[Flask] = []
    return make


@pytest.fixture
def apps(server: ScriptedSMTPServer, redis_url: str, prefix: str) -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        current_guard(app).close()

    async def clean() -> None:
        async with scratch_redis_store(redis_url, prefix):
            pass

    asyncio.run(clean())


def test_flask_mailman_sends_through_the_guard(
    server: ScriptedSMTPServer, make_app: MakeApp, apps: list[Flask], redis_url: str, prefix: str
) -> None:
    app = make_app(SENDGUARD_REDIS_URL=redis_url, SENDGUARD_PREFIX=prefix)
    SendGuard(app)
    mail = flask_mailman.Mail(app)
    apps.append(app)
    server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
    with app.app_context():
        message = flask_mailman.EmailMessage(
            "Hi", "Body", "news@shop.example", ["ok@example.com", "gone@example.com"]
        )
        assert mail.get_connection().send_messages([message]) == 1
        assert message.sendguard_result.recipients["gone@example.com"].suppressed
        assert g.sendguard_results == [message.sendguard_result]
        server.rcpt_log.clear()
        with pytest.raises(NotSentError) as refused:
            mail.send_mail("Again", "Body", "news@shop.example", ["gone@example.com"])
        assert server.rcpt_log == []
        again = refused.value.result
        assert not refused.value.kept
        assert again.recipients["gone@example.com"].status is DeliveryStatus.SUPPRESSED
        assert g.sendguard_results == [message.sendguard_result, again]
        silently = mail.send_mail("Again", "Body", None, ["gone@example.com"], fail_silently=True)
        assert silently == 0
        assert server.rcpt_log == []
    assert server.accepted == ["ok@example.com"]


def test_an_app_factory_and_mailman_registered_first(
    server: ScriptedSMTPServer, make_app: MakeApp, apps: list[Flask]
) -> None:
    server.script("grey@example.com", "451 4.7.1 Greylisted", "250 OK")
    sg = SendGuard()
    app = make_app()
    mail = flask_mailman.Mail(app)  # registered before sendguard: it already chose a backend
    sg.init_app(app)
    apps.append(app)
    with app.app_context():
        assert mail.send_mail("Hi", "Body", None, ["grey@example.com"]) == 1
        (result,) = g.sendguard_results
        assert result.recipients["grey@example.com"].attempts == 2
    with pytest.raises(ConfigurationError, match="already registered"):
        sg.init_app(app)


def test_fail_silently_hides_a_store_outage(
    server: ScriptedSMTPServer, make_app: MakeApp, apps: list[Flask]
) -> None:
    app = make_app(SENDGUARD_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    SendGuard(app)
    mail = flask_mailman.Mail(app)
    apps.append(app)
    with app.app_context():
        with pytest.raises(StoreError):
            mail.send_mail("Hi", "Body", None, ["ok@example.com"])
        assert mail.send_mail("Hi", "Body", None, ["ok@example.com"], fail_silently=True) == 0
    assert server.received == []


def test_flask_mail_sends_through_the_guard(
    server: ScriptedSMTPServer, make_app: MakeApp, apps: list[Flask]
) -> None:
    app = make_app()
    SendGuard(app)
    mail = flask_mail.Mail(app)
    apps.append(app)
    server.script("gone@example.com", "550 5.1.1 User unknown")
    with app.app_context():
        mail.send(flask_mail.Message("Hi", recipients=["ok@example.com", "gone@example.com"]))
        (result,) = g.sendguard_results
        assert result.recipients["gone@example.com"].status is DeliveryStatus.REJECTED
        assert current_guard(app).is_suppressed("gone@example.com")
        server.script("dead@example.com", "550 5.1.1 User unknown")
        dead = flask_mail.Message("Hi", recipients=["dead@example.com"])
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            mail.send(dead)
    assert server.accepted == ["ok@example.com"]


def test_an_unguarded_app_keeps_flask_mail_as_it_was(
    server: ScriptedSMTPServer, make_app: MakeApp
) -> None:
    guarded = make_app()
    SendGuard(guarded)  # patches Flask-Mail once, for guarded apps only
    plain = make_app()
    mail = flask_mail.Mail(plain)
    with plain.app_context():
        mail.send(flask_mail.Message("Hi", recipients=["plain@example.com"]))
        assert "sendguard_results" not in g
    assert server.accepted == ["plain@example.com"]
    current_guard(guarded).close()


def test_a_view_sends_and_the_cli_group_manages_the_list(
    server: ScriptedSMTPServer, make_app: MakeApp, apps: list[Flask], redis_url: str, prefix: str
) -> None:
    app = make_app(SENDGUARD_REDIS_URL=redis_url, SENDGUARD_PREFIX=prefix)
    SendGuard(app)
    mail = flask_mailman.Mail(app)
    apps.append(app)

    @app.post("/signup")
    def signup() -> dict[str, object]:
        try:
            return {"sent": mail.send_mail("Welcome", "Hi", None, ["new@example.com"])}
        except NotSentError as exc:  # it reached no one: the view says why
            return {"sent": 0, "not_sent": {a: r.status for a, r in exc.result.recipients.items()}}

    assert app.test_client().post("/signup").get_json() == {"sent": 1}
    runner = app.test_cli_runner()
    env = {"SENDGUARD_REDIS_URL": redis_url, "SENDGUARD_PREFIX": prefix}
    added = runner.invoke(args=["sendguard", "suppress", "add", "new@example.com"], env=env)
    assert added.exit_code == 0, added.output
    assert current_guard(app).is_suppressed("new@example.com")
    assert app.test_client().post("/signup").get_json() == {
        "sent": 0,
        "not_sent": {"new@example.com": "suppressed"},
    }
    assert server.accepted == ["new@example.com"]


def test_without_a_store_the_list_is_a_file_in_the_instance_folder_and_survives_a_restart(
    server: ScriptedSMTPServer, make_app: MakeApp, tmp_path: Path
) -> None:
    server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
    instance = tmp_path / "instance"
    app = make_app(instance)
    SendGuard(app)
    with app.app_context(), pytest.raises(NotSentError) as refused:
        flask_mailman.Mail(app).send_mail("Hi", "Body", None, ["gone@example.com"])
    gone = refused.value.result.recipients["gone@example.com"]
    assert (gone.status, gone.reason, gone.kept) == (DeliveryStatus.REJECTED, "userunknown", False)
    assert current_guard(app).is_suppressed("gone@example.com")
    current_guard(app).close()
    assert (instance / "sendguard.db").is_file()

    restarted = make_app(instance)
    SendGuard(restarted)
    assert current_guard(restarted).is_suppressed("gone@example.com")
    listed = restarted.test_cli_runner().invoke(args=["sendguard", "suppress", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.startswith("gone@example.com\tuserunknown\t")
    current_guard(restarted).close()


def test_a_store_url_and_a_redis_url_together_is_refused(make_app: MakeApp) -> None:
    app = make_app(SENDGUARD_STORE="memory://", SENDGUARD_REDIS_URL="redis://localhost")
    with pytest.raises(ConfigurationError, match="not both"):
        SendGuard(app)


def test_a_worker_forked_after_the_app_was_loaded_gets_its_own_guard(
    server: ScriptedSMTPServer, make_app: MakeApp
) -> None:
    """gunicorn --preload, uWSGI without lazy-apps: the app is made, then workers are forked."""
    server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
    app = make_app()
    SendGuard(app)
    mail = flask_mailman.Mail(app)
    with app.app_context():
        assert mail.send_mail("Hi", "Body", None, ["parent@example.com"]) == 1

    def worker() -> None:
        with app.app_context():
            assert mail.send_mail("Hi", "Body", None, ["gone@example.com", "ok@example.com"]) == 1
            assert current_guard(app).is_suppressed("gone@example.com")
        current_guard(app).close()

    in_forked_child(worker)
    assert server.accepted == ["parent@example.com", "ok@example.com"]
    # The parent's guard still works, and sees what the worker wrote to the shared file.
    assert current_guard(app).is_suppressed("gone@example.com")
    current_guard(app).close()


NAMED_SENDERS = [
    ("Shop <app@shop.example>", "Shop"),
    ('"Shop, Inc." <app@shop.example>', "Shop, Inc."),
    ("=?utf-8?q?Caf=C3=A9?= <app@shop.example>", "Café"),
    ("Café <app@shop.example>", "Café"),
]


@pytest.mark.parametrize(("sender", "name"), NAMED_SENDERS)
def test_flask_mailman_display_names_survive_and_the_envelope_is_bare(
    sender: str,
    name: str,
    *,
    server: ScriptedSMTPServer,
    make_app: MakeApp,
    apps: list[Flask],
    redis_url: str,
    prefix: str,
) -> None:
    app = make_app(SENDGUARD_REDIS_URL=redis_url, SENDGUARD_PREFIX=prefix)
    SendGuard(app)
    mail = flask_mailman.Mail(app)
    apps.append(app)
    with app.app_context():
        message = flask_mailman.EmailMessage(
            "Hi",
            "Body",
            sender,
            ["Bob <bob@example.com>", "Broken <nope>", '"Smith, Ann" <ann@example.com>'],
            cc=["Zoë <zoe@example.com>"],
            reply_to=["Support <help@shop.example>"],
        )
        assert mail.get_connection().send_messages([message]) == 1
    (received,) = server.received
    assert received.mail_from == "app@shop.example"
    assert received.rcpt_tos == ["bob@example.com", "ann@example.com", "zoe@example.com"]
    (mailbox,) = received.message["From"].addresses
    assert (mailbox.display_name, mailbox.addr_spec) == (name, "app@shop.example")
    assert received.message["To"].addresses[0].display_name == "Bob"
    assert message.sendguard_result.recipients["Broken <nope>"].status is DeliveryStatus.INVALID


@pytest.mark.parametrize(
    "sender",
    [("Shop", "app@shop.example"), "Shop <app@shop.example>", ("Café", "app@shop.example")],
)
def test_flask_mail_tuples_and_names(
    sender: str | tuple[str, str],
    *,
    server: ScriptedSMTPServer,
    make_app: MakeApp,
    apps: list[Flask],
    redis_url: str,
    prefix: str,
) -> None:
    app = make_app(SENDGUARD_REDIS_URL=redis_url, SENDGUARD_PREFIX=prefix)
    SendGuard(app)
    mail = flask_mail.Mail(app)
    apps.append(app)
    with app.app_context():
        mail.send(
            flask_mail.Message(
                "Hi",
                sender=sender,
                recipients=[("Bob", "bob@example.com"), "Ann <ann@example.com>"],
                body="Body",
            )
        )
        (result,) = g.sendguard_results
    (received,) = server.received
    assert received.mail_from == "app@shop.example"
    assert sorted(received.rcpt_tos) == ["ann@example.com", "bob@example.com"]  # a set
    assert received.message["From"].addresses[0].addr_spec == "app@shop.example"
    assert sorted(result.accepted) == ["ann@example.com", "bob@example.com"]


def test_flask_mail_line_breaks_in_headers_never_make_a_header_line(
    server: ScriptedSMTPServer, make_app: MakeApp, apps: list[Flask], redis_url: str, prefix: str
) -> None:
    app = make_app(SENDGUARD_REDIS_URL=redis_url, SENDGUARD_PREFIX=prefix)
    SendGuard(app)
    mail = flask_mail.Mail(app)
    apps.append(app)
    with app.app_context():
        for c in ("\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"):
            message = flask_mail.Message(
                "Hi",
                recipients=["bob@example.com"],
                body="Body",
                extra_headers={"X-Campaign": f"a{c}Bcc: victim@evil.example"},
            )
            # Flask-Mail's own folding may already turn it into folding white space; what it
            # leaves as a line break the guard refuses.
            with contextlib.suppress(HeaderInjectionError):
                mail.send(message)
    for received in server.received:
        head = received.data.split(b"\r\n\r\n")[0]
        names = [line.split(b":")[0] for line in head.split(b"\r\n") if line[:1] not in b" \t"]
        assert b"Bcc" not in names
        assert received.rcpt_tos == ["bob@example.com"]


# -- SENDGUARD_BACKEND: any Flask-Mailman backend is the guard's adapter -----------------------


def _today_ramp(cap: int) -> WarmupSchedule:
    return WarmupSchedule.from_table({1: cap}, started_on=dt.datetime.now(dt.UTC).date())


def _next_midnight() -> dt.datetime:
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(0), tzinfo=dt.UTC)


def _kept_entries(app: Flask) -> list[Kept]:
    """What *app*'s guard keeps in its store's outbox, by id."""
    guard = current_guard(app)
    return guard._call(guard.guard.store.kept())


def test_a_mailman_backend_goes_through_the_whole_pipeline(
    make_app: MakeApp, apps: list[Flask]
) -> None:
    app = make_app(
        SENDGUARD_STORE="memory://", SENDGUARD_BACKEND="locmem", SENDGUARD_WARMUP=_today_ramp(20)
    )
    SendGuard(app)
    mail = flask_mailman.Mail(app)
    apps.append(app)
    with app.app_context():
        current_guard(app).suppress("gone@example.com")
        messages = [
            flask_mailman.EmailMessage("Hi", "Body", None, [f"user{i}@example.com"])
            for i in range(26)
        ]
        # 20 sent and 6 kept for a worker: all 26 count as sent.
        assert mail.get_connection().send_messages(messages) == 26
        outcome = [next(iter(m.sendguard_result.recipients.values())) for m in messages]
        assert [(r.status, r.kept) for r in outcome] == [(DeliveryStatus.ACCEPTED, False)] * 20 + [
            (DeliveryStatus.THROTTLED, True)
        ] * 6
        assert {r.retry_at for r in outcome[20:]} == {_next_midnight()}
        assert len(mail.outbox) == 20
        assert sorted(m.to[0] for m in mail.outbox) == sorted(
            f"user{i}@example.com" for i in range(20)
        )
        entries = _kept_entries(app)
        assert sorted((e.recipient, e.letter) for e in entries) == sorted(
            (m.to[0], m.sendguard_result.outbox_id) for m in messages[20:]
        )
        assert {(e.state, e.next_at) for e in entries} == {(Held.WAITING, _next_midnight())}
        status = current_guard(app).status("shop.example")
        assert (status.sent_today, status.cap_today) == (20, 20)
        with pytest.raises(NotSentError) as refused:
            mail.send_mail("Hi", "Body", None, ["gone@example.com"])
        assert refused.value.result.recipients["gone@example.com"].status is (
            DeliveryStatus.SUPPRESSED
        )
        assert len(mail.outbox) == 20  # a suppressed recipient never reaches the backend
        assert len(_kept_entries(app)) == 6  # nor the outbox


def test_mailman_smtp_as_the_backend_retries_a_451_and_suppresses_a_550(
    server: ScriptedSMTPServer, make_app: MakeApp, apps: list[Flask]
) -> None:
    # Flask-Mailman's own SMTP backend, named: the guard reads smtplib's refusals.
    app = make_app(SENDGUARD_STORE="memory://", SENDGUARD_BACKEND="smtp")
    SendGuard(app)
    mail = flask_mailman.Mail(app)
    apps.append(app)
    server.script("grey@example.com", "451 4.7.1 Greylisted", "250 OK")
    server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
    with app.app_context():
        grey = flask_mailman.EmailMessage("Hi", "Body", None, ["grey@example.com"])
        assert mail.get_connection().send_messages([grey]) == 1
        rr = grey.sendguard_result.recipients["grey@example.com"]
        assert (rr.status, rr.attempts) == (DeliveryStatus.ACCEPTED, 2)
        with pytest.raises(NotSentError) as refused:
            mail.send_mail("Hi", "Body", None, ["gone@example.com"])
        gone = refused.value.result.recipients["gone@example.com"]
        assert (gone.status, gone.suppressed, gone.kept) == (DeliveryStatus.REJECTED, True, False)
        assert current_guard(app).is_suppressed("gone@example.com")
    assert server.accepted == ["grey@example.com"]


def test_mailman_smtp_as_the_backend_reads_a_partial_refusal_and_keeps_the_headers(
    server: ScriptedSMTPServer, make_app: MakeApp, apps: list[Flask]
) -> None:
    # smtplib returns the refused recipient when it accepted the others, Flask-Mailman drops
    # it; and a copy per recipient (the bounce token) shows the app's To and Cc once each.
    app = make_app(
        SENDGUARD_STORE="memory://", SENDGUARD_BACKEND="smtp", SENDGUARD_BOUNCE_SECRET="s" * 32
    )
    SendGuard(app)
    mail = flask_mailman.Mail(app)
    apps.append(app)
    server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
    with app.app_context():
        message = flask_mailman.EmailMessage(
            "Hi", "Body", None, ["ok@example.com", "gone@example.com"], cc=["c@example.com"]
        )
        assert mail.get_connection().send_messages([message]) == 1
        recipients = message.sendguard_result.recipients
        assert recipients["ok@example.com"].status is DeliveryStatus.ACCEPTED
        assert recipients["gone@example.com"].status is DeliveryStatus.REJECTED
        assert current_guard(app).is_suppressed("gone@example.com")
        assert not current_guard(app).is_suppressed("ok@example.com")
    assert sorted(server.accepted) == ["c@example.com", "ok@example.com"]
    for received in server.received:
        parsed = email.message_from_bytes(received.data)
        assert parsed.get_all("To") == ["ok@example.com, gone@example.com"]
        assert parsed.get_all("Cc") == ["c@example.com"]


def test_flask_mail_through_a_mailman_backend(make_app: MakeApp, apps: list[Flask]) -> None:
    app = make_app(SENDGUARD_STORE="memory://", SENDGUARD_BACKEND="locmem")
    SendGuard(app)
    mailman = flask_mailman.Mail(app)
    mail = flask_mail.Mail(app)
    apps.append(app)
    with app.app_context():
        current_guard(app).suppress("gone@example.com")
        mail.send(
            flask_mail.Message(
                "Hi there", recipients=["ok@example.com", "gone@example.com"], bcc=["b@example.com"]
            )
        )
        (result,) = g.sendguard_results
        assert result.recipients["gone@example.com"].status is DeliveryStatus.SUPPRESSED
        (delivered,) = mailman.outbox
        assert sorted(delivered.recipients()) == ["b@example.com", "ok@example.com"]
        sent = delivered.message()
        assert sent["Subject"] == "Hi there"
        assert sent["Message-ID"] == result.message_id
        assert b"\r\n" in sent.as_bytes(linesep="\r\n")


def test_a_bad_sendguard_backend_is_a_configuration_error(make_app: MakeApp) -> None:
    for bad in ("no_such_backend", "sendguard_flask.mailman.EmailBackend"):
        app = make_app(SENDGUARD_STORE="memory://", SENDGUARD_BACKEND=bad)
        with pytest.raises(ConfigurationError):
            SendGuard(app)
