"""The breaker trips on the send that crosses the line, never before min_volume, per sender."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from sendguard import (
    Breaker,
    BreakerEvent,
    ConfigurationError,
    DeliveryStatus,
    Guard,
    RetryPolicy,
    Store,
    Volume,
    WarmupSchedule,
)
from sendguard.testing import FakeClock, ScriptedSMTPServer, make_arf
from tests.conftest import message

pytestmark = pytest.mark.usefixtures("smtp_server")
ONCE = RetryPolicy(attempts=1)


def script_dead(server: ScriptedSMTPServer, count: int) -> list[str]:
    dead = [f"gone{i}@example.com" for i in range(count)]
    for address in dead:
        server.script(address, "550 5.1.1 User unknown")
    return dead


async def test_trips_on_the_send_that_crosses_the_pause_line(
    store: Store,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    clock: FakeClock,
) -> None:
    events: list[BreakerEvent] = []
    breaker = Breaker(
        bounce_warn=0.1,
        bounce_pause=0.2,
        min_volume=10,
        pause_for=dt.timedelta(hours=6),
        on_warn=events.append,
    )
    guard = make_guard(store=store, breaker=breaker, retry=ONCE)
    for i in range(9):
        assert (await guard.send(message(f"ok{i}@other.example"))).accepted
    dead = script_dead(smtp_server, 3)
    # Bounce 1: 1/10 = 10 %, a warning; bounce 2: 2/11 = 18 %; bounce 3: 3/12 = 25 %, the pause.
    for address in dead:
        result = await guard.send(message(address))
        assert result.recipients[address].status is DeliveryStatus.REJECTED
    assert [(e.level, e.volume) for e in events] == [
        ("warn", Volume(10, 1, 0)),
        ("warn", Volume(11, 2, 0)),
        ("pause", Volume(12, 3, 0)),
    ]
    status = await guard.status("sender.example")
    assert status.paused_until == clock.now + dt.timedelta(hours=6)
    assert status.volume == Volume(12, 3, 0)
    assert "pause threshold" in status.why

    # Paused: no recipient of any domain gets mail, and nobody is suppressed for it.
    smtp_server.rcpt_log.clear()
    held = await guard.send(message(["a@other.example", "b@third.example"]))
    for rr in held.recipients.values():
        assert (rr.status, rr.retry_at, rr.reason) == (
            DeliveryStatus.PAUSED,
            clock.now + dt.timedelta(hours=6),
            "breaker",
        )
    assert smtp_server.rcpt_log == []
    assert not await guard.is_suppressed("a@other.example")

    # Another sender domain is not affected.
    other = await guard.send(message("c@other.example", sender="news@else.example"))
    assert other.accepted == ["c@other.example"]


async def test_never_before_min_volume(
    store: Store, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    events: list[BreakerEvent] = []
    guard = make_guard(
        store=store, breaker=Breaker(min_volume=50, on_warn=events.append), retry=ONCE
    )
    for address in script_dead(smtp_server, 20):
        await guard.send(message(address))
    assert {e.level for e in events} == {"warn"}
    status = await guard.status("sender.example")
    assert status.volume == Volume(20, 20, 0)
    assert status.paused_until is None
    assert (await guard.send(message("fine@example.com"))).accepted == ["fine@example.com"]


async def test_complaints_from_feedback_reports_count(
    store: Store, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    breaker = Breaker(min_volume=10, complaint_warn=0.05, complaint_pause=0.1)
    guard = make_guard(store=store, breaker=breaker)
    for i in range(10):
        await guard.send(message(f"r{i}@example.com"))
    original = smtp_server.received[0].data
    with capture_logs() as logs:
        await guard.ingest_bounce(make_arf(original, "r0@example.com"))
    status = await guard.status("sender.example")
    assert status.volume == Volume(10, 0, 1)
    assert status.paused_until is not None
    assert any(e["event"] == "sendguard.breaker" and e["level"] == "pause" for e in logs)


async def test_the_window_rolls_and_resume_lifts_the_pause(
    store: Store,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    clock: FakeClock,
) -> None:
    guard = make_guard(store=store, breaker=Breaker(min_volume=2), retry=ONCE)
    for address in script_dead(smtp_server, 2):
        await guard.send(message(address))
    assert (await guard.status("sender.example")).paused_until is not None
    held = await guard.send(message("x@example.com"))
    assert held.recipients["x@example.com"].status is DeliveryStatus.PAUSED
    assert await guard.resume("sender.example") == 1
    assert (await guard.send(message("x@example.com"))).accepted == ["x@example.com"]
    clock.advance(days=1, hours=1)
    assert (await guard.status("sender.example")).volume == Volume()


async def test_status_reports_the_ramp(
    store: Store, make_guard: Callable[..., Guard], clock: FakeClock
) -> None:
    schedule = WarmupSchedule.from_table({1: 5, 2: 10}, started_on=clock.now.date())
    guard = make_guard(store=store, warmup=schedule)
    await guard.send(message(["a@example.com", "b@example.com"]))
    status = await guard.status("SENDER.example")
    assert (status.day, status.sent_today, status.cap_today) == (1, 2, 5)
    clock.advance(days=1)
    status = await guard.status("sender.example")
    assert (status.day, status.sent_today, status.cap_today) == (2, 0, 10)


def test_thresholds_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        Breaker(bounce_warn=0.1, bounce_pause=0.05)
    with pytest.raises(ConfigurationError):
        Breaker(min_volume=0)
    with pytest.raises(ConfigurationError):
        Breaker(window=dt.timedelta(minutes=5))
    with pytest.raises(ConfigurationError):
        Breaker(complaint_pause=1.5)
