"""Flask: held-back mail is kept, counted as sent, signalled, sent by the worker command."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_mailman
import pytest
from flask import Flask
from sendguard_flask import SendGuard, current_guard, mail_delivered, mail_kept

from sendguard import DeliveryStatus, NotSentError, OutboxEvent
from sendguard.testing import ScriptedSMTPServer


@pytest.fixture
def server() -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer().in_thread() as running:
        yield running


def make_app(server: ScriptedSMTPServer, tmp_path: Path, **config: Any) -> Flask:
    app = Flask("test", instance_path=str(tmp_path / "instance"))
    app.config.update(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=server.port,
        MAIL_DEFAULT_SENDER="Shop <news@shop.example>",
        SENDGUARD_RETRY={"attempts": 1, "defer_for": 0},
        **config,
    )
    flask_mailman.Mail(app)
    SendGuard(app)
    return app


def test_a_deferred_message_is_kept_signalled_and_sent_by_the_worker_command(
    server: ScriptedSMTPServer, tmp_path: Path
) -> None:
    server.script("slow@x.example", "451 4.7.1 greylisted", "250 2.1.5 ok")
    app = make_app(server, tmp_path)
    heard: list[tuple[str, OutboxEvent]] = []

    def kept(sender: Flask, event: OutboxEvent) -> None:
        assert sender is app
        heard.append(("kept", event))

    def delivered(sender: Flask, event: OutboxEvent) -> None:
        heard.append(("delivered", event))

    try:
        mail_kept.connect(kept)
        mail_delivered.connect(delivered)
        with app.app_context():
            message = flask_mailman.EmailMessage("Hi", "Body", to=["slow@x.example"])
            assert message.send() == 1  # kept for later: counted as sent
            result = message.sendguard_result.recipients["slow@x.example"]
            assert result.status is DeliveryStatus.DEFERRED
            assert result.kept
        assert [k for k, _ in heard] == ["kept"]
        out = app.test_cli_runner().invoke(args=["sendguard", "worker", "--once"])
        assert out.exit_code == 0, out.output
        assert "delivered 1" in out.output
        assert server.accepted == ["slow@x.example"]
        assert [k for k, _ in heard] == ["kept", "delivered"]
        assert heard[1][1].message_id == message.sendguard_result.message_id
    finally:
        mail_kept.disconnect(kept)
        mail_delivered.disconnect(delivered)
        current_guard(app).close()


def test_kept_raise_and_not_sent_ignore(server: ScriptedSMTPServer, tmp_path: Path) -> None:
    table = {"table": {"1": 0}, "started_on": dt.date.today().isoformat()}
    app = make_app(server, tmp_path, SENDGUARD_WARMUP=table, SENDGUARD_KEPT="raise")
    try:
        with app.app_context():
            message = flask_mailman.EmailMessage("Hi", "Body", to=["a@x.example"])
            with pytest.raises(NotSentError) as raised:
                message.send()
            assert raised.value.kept
            assert raised.value.result.recipients["a@x.example"].status is DeliveryStatus.THROTTLED
    finally:
        current_guard(app).close()
    server.script("gone@x.example", "550 5.1.1 no such user")
    other = make_app(server, tmp_path / "other", SENDGUARD_NOT_SENT="ignore")
    try:
        with other.app_context():
            gone = flask_mailman.EmailMessage("Hi", "Body", to=["gone@x.example"])
            assert gone.send() == 0
            loud = flask_mailman.EmailMessage("Hi", "Body", to=["gone@x.example"])
        other.config["SENDGUARD_NOT_SENT"] = "raise"
        with other.app_context(), pytest.raises(NotSentError):
            loud.send()
    finally:
        current_guard(other).close()
