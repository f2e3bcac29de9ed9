"""Django: mail the guard holds back is kept, counted as sent, and a worker sends it later.

The scenario of the outbox issue: a ramp of 20 a day, 25 password resets.  Twenty go today,
five are kept (``send_mail`` returns 1 for each, as django-mailer would); the worker of the
next day sends those five, the same message, once each.  Through the guard's own SMTP (a real
aiosmtpd server), django-anymail's test backend and Django's locmem backend.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import override_settings
from sendguard_django import reset_guard
from sendguard_django._config import _options, config
from sendguard_django.signals import mail_delivered, mail_expired, mail_kept

from sendguard import DeliveryStatus, Guard, OutboxEvent, SQLiteStore
from sendguard.testing import FakeClock, ScriptedSMTPServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OURS = "sendguard_django.EmailBackend"
FROM = "Shop <noreply@shop.example>"


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@pytest.fixture
def server() -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer().in_thread() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_guard(tmp_path: Path) -> Iterator[None]:
    reset_guard()
    with override_settings(BASE_DIR=tmp_path, DEFAULT_FROM_EMAIL=FROM):
        mail.outbox = []
        yield
    reset_guard()


def settings_for(backend: str, tmp_path: Path, port: int = 25, **extra: Any) -> Any:
    conf = {
        "BACKEND": backend,
        "STORE": f"sqlite:///{tmp_path / 'sendguard.db'}",
        "WARMUP": {"table": {"1": 20}, "started_on": today().isoformat()},
        **extra,
    }
    return override_settings(EMAIL_BACKEND=OURS, EMAIL_PORT=port, SENDGUARD=conf)


def worker_on(day: dt.date) -> Guard:
    """The project's guard, as ``manage.py sendguard worker`` builds it, on *day*'s clock."""
    clock = FakeClock(dt.datetime.combine(day, dt.time(0, 5), tzinfo=dt.UTC))
    return Guard(**{**_options(config()), "clock": clock})


BACKENDS = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "anymail": "anymail.backends.test.EmailBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
}


@pytest.mark.parametrize("name", list(BACKENDS))
def test_25_password_resets_under_a_ramp_of_20_all_arrive_20_today_5_tomorrow(
    name: str, server: ScriptedSMTPServer, tmp_path: Path
) -> None:
    kept: list[OutboxEvent] = []
    delivered: list[OutboxEvent] = []

    def on_kept(event: OutboxEvent, **_: Any) -> None:
        kept.append(event)

    def on_delivered(event: OutboxEvent, **_: Any) -> None:
        delivered.append(event)

    mail_kept.connect(on_kept)
    mail_delivered.connect(on_delivered)
    users = [f"user{i}@example.com" for i in range(25)]

    def arrived() -> list[str]:
        if name == "smtp":
            return server.accepted
        return [r for m in mail.outbox for r in m.to]

    try:
        with settings_for(BACKENDS[name], tmp_path, server.port):
            counts = [
                mail.send_mail(
                    "Reset your password", f"Your link, {u}.", None, [u], fail_silently=False
                )
                for u in users
            ]
            assert counts == [1] * 25  # a message kept for later counts as sent
            assert arrived() == users[:20]
            assert [e.result.address for e in kept] == users[20:]
            assert all(e.result.status is DeliveryStatus.THROTTLED for e in kept)
            tomorrow = today() + dt.timedelta(days=1)
            midnight = dt.datetime.combine(tomorrow, dt.time(0), tzinfo=dt.UTC)
            assert {e.result.retry_at for e in kept} == {midnight}

            async def work() -> tuple[int, int]:
                async with worker_on(tomorrow) as worker:
                    run = await worker.deliver_outbox()
                    again = await worker.deliver_outbox()
                    return run.delivered, again.claimed

            assert asyncio.run(work()) == (5, 0)
            assert sorted(arrived()) == sorted(users)  # every one once, none twice
            assert sorted(e.result.address for e in delivered) == sorted(users[20:])
            # The mail sent tomorrow is the mail kept today.
            if name == "smtp":
                late = [m for m in server.received if m.rcpt_tos[0] in users[20:]]
                bodies = [m.data for m in late]
                assert all(b"Subject: Reset your password" in b for b in bodies)
                assert all(b"From: Shop <noreply@shop.example>" in b for b in bodies)
                assert all(f"Your link, {m.rcpt_tos[0]}.".encode() in m.data for m in late)
            else:
                later = [m for m in mail.outbox if m.to[0] in users[20:]]
                assert [m.subject for m in later] == ["Reset your password"] * 5
                assert all(m.body == f"Your link, {m.to[0]}." for m in later)
                assert {m.from_email for m in later} == {FROM}
    finally:
        mail_kept.disconnect(on_kept)
        mail_delivered.disconnect(on_delivered)
    store = SQLiteStore(tmp_path / "sendguard.db")
    assert asyncio.run(store.kept()) == []
    asyncio.run(store.aclose())


def test_the_worker_command_sends_a_deferred_message_once(
    server: ScriptedSMTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("slow@example.com", "451 4.7.1 greylisted, come back later", "250 2.1.5 ok")
    retry = {"attempts": 1, "defer_for": 0}
    with settings_for(BACKENDS["smtp"], tmp_path, server.port, RETRY=retry):
        message = mail.EmailMessage("Hi", "Body", None, ["slow@example.com"])
        assert message.send() == 1
        result = message.sendguard_result.recipients["slow@example.com"]
        assert result.status is DeliveryStatus.DEFERRED
        assert result.kept
        assert server.accepted == []
        with pytest.raises(SystemExit) as done:
            call_command("sendguard", "outbox", "list")
        assert done.value.code == 0
        listing = capsys.readouterr().out
        assert "shop.example transactional: 1 waiting (1 due)" in listing
        assert ":slow@example.com\ttransactional\twaiting\t" in listing
        assert "greylisted" in listing
        with pytest.raises(SystemExit) as done:
            call_command("sendguard", "worker", "--once")
        assert done.value.code == 0
        assert "delivered 1" in capsys.readouterr().out
        with pytest.raises(SystemExit):
            call_command("sendguard", "outbox", "list")
        assert "the outbox is empty" in capsys.readouterr().out
    assert server.accepted == ["slow@example.com"]
    assert server.rcpt_log == ["slow@example.com", "slow@example.com"]


def test_kept_mail_expires_after_max_age_with_a_signal(tmp_path: Path) -> None:
    expired: list[OutboxEvent] = []

    def on_expired(event: OutboxEvent, **_: Any) -> None:
        expired.append(event)

    mail_expired.connect(on_expired)
    try:
        warmup = {"table": {"1": 0}, "started_on": today().isoformat()}
        with settings_for(BACKENDS["locmem"], tmp_path, WARMUP=warmup, MAX_AGE="2d"):
            assert mail.send_mail("Hi", "Body", None, ["late@example.com"]) == 1

            async def work() -> int:
                async with worker_on(today() + dt.timedelta(days=3)) as worker:
                    run = await worker.deliver_outbox()
                    assert await worker.soft_bounces("late@example.com") == 1
                    return run.expired

            assert asyncio.run(work()) == 1
    finally:
        mail_expired.disconnect(on_expired)
    assert [e.result.status for e in expired] == [DeliveryStatus.EXPIRED]
    assert mail.outbox == []
