"""Warmup schedules, and the guard holding a sender domain to today's cap."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sendguard import ConfigurationError, DeliveryStatus, Guard, Store, WarmupSchedule
from sendguard.testing import DROP, FakeClock, ScriptedSMTPServer
from tests.conftest import message

NOV_1 = dt.date(2026, 11, 1)


def test_exponential_ramp_runs_from_start_to_target() -> None:
    schedule = WarmupSchedule.exponential(start=20, target=50_000, days=42, started_on=NOV_1)
    table = schedule.table()
    assert table[0] == (1, 20)
    assert table[-1] == (42, 50_000)
    assert len(table) == 42
    # Each day grows by about the same factor (50000/20)**(1/41), about 21 %.
    assert 1.15 < table[10][1] / table[9][1] < 1.27
    assert schedule.cap_for(100) == 50_000


def test_linear_ramp_and_table() -> None:
    linear = WarmupSchedule.linear(start=20, target=2_000, days=30, started_on=NOV_1)
    assert linear.cap_for(1) == 20
    assert linear.cap_for(30) == 2_000
    assert linear.cap_for(2) - linear.cap_for(1) in (68, 69)
    table = WarmupSchedule.from_table({1: 50, 2: 100, 4: 400}, started_on=NOV_1)
    assert table.table() == [(1, 50), (2, 100), (3, 100), (4, 400)]


def test_calendar_days_map_to_ramp_days() -> None:
    schedule = WarmupSchedule.from_table({1: 10, 2: 20, 3: 30}, started_on=NOV_1)
    assert schedule.cap_on(dt.date(2026, 10, 20)) == 10  # before the start: day 1
    assert schedule.cap_on(NOV_1) == 10
    assert schedule.cap_on(dt.date(2026, 11, 2)) == 20
    assert schedule.cap_on(dt.date(2027, 1, 1)) == 30


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: WarmupSchedule.exponential(start=0, target=10, days=5, started_on=NOV_1),
            "start at 1",
        ),
        (
            lambda: WarmupSchedule.exponential(start=50, target=10, days=5, started_on=NOV_1),
            "at least its start",
        ),
        (
            lambda: WarmupSchedule.linear(start=5, target=10, days=0, started_on=NOV_1),
            "at least one day",
        ),
        (lambda: WarmupSchedule.from_table({1: 10, 2: 5}, started_on=NOV_1), "never decrease"),
        (lambda: WarmupSchedule.from_table({2: 10}, started_on=NOV_1), "day 1"),
        (lambda: WarmupSchedule([], started_on=NOV_1), "at least one day"),
    ],
)
def test_impossible_schedules_fail_at_construction(
    build: Callable[[], WarmupSchedule], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        build()


@given(
    start=st.integers(1, 1_000),
    extra=st.integers(0, 1_000_000),
    days=st.integers(1, 120),
    kind=st.sampled_from(["exponential", "linear"]),
)
def test_caps_never_decrease_and_end_on_target(
    start: int, extra: int, days: int, kind: str
) -> None:
    target = start + extra
    build = WarmupSchedule.exponential if kind == "exponential" else WarmupSchedule.linear
    schedule = build(start=start, target=target, days=days, started_on=NOV_1)
    caps = [cap for _, cap in schedule.table()]
    assert caps == sorted(caps)
    assert caps[-1] == target
    assert caps[0] == (start if days > 1 else target)
    assert len(caps) == days


@given(st.dictionaries(st.integers(1, 60), st.integers(0, 10_000), min_size=1))
def test_table_round_trips(table: dict[int, int]) -> None:
    table.setdefault(1, 0)
    caps = [table[d] for d in sorted(table)]
    if caps != sorted(caps):
        with pytest.raises(ConfigurationError):
            WarmupSchedule.from_table(table, started_on=NOV_1)
        return
    schedule = WarmupSchedule.from_table(table, started_on=NOV_1)
    again = WarmupSchedule.from_table(dict(schedule.table()), started_on=NOV_1)
    assert again.table() == schedule.table()
    for day, cap in table.items():
        assert schedule.cap_for(day) == cap


async def test_recipients_over_todays_cap_are_throttled_until_utc_midnight(
    store: Store,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    clock: FakeClock,
) -> None:
    clock.now = datetime(2026, 11, 2, 23, 59, 30, tzinfo=UTC)  # day 2 of the ramp
    schedule = WarmupSchedule.from_table({1: 2, 2: 3, 3: 5}, started_on=NOV_1)
    guard = make_guard(store=store, warmup=schedule)
    first = await guard.send(message(["a@example.com", "b@example.com"]))
    assert first.accepted == ["a@example.com", "b@example.com"]
    second = await guard.send(message(["c@example.com", "d@example.com", "e@example.com"]))
    assert second.accepted == ["c@example.com"]
    for key in ("d@example.com", "e@example.com"):
        rr = second.recipients[key]
        assert rr.status is DeliveryStatus.THROTTLED
        assert rr.retry_at == datetime(2026, 11, 3, tzinfo=UTC)
    assert smtp_server.rcpt_log == ["a@example.com", "b@example.com", "c@example.com"]

    clock.advance(31)  # past midnight UTC: day 3, a fresh cap of 5
    third = await guard.send(message([f"n{i}@example.com" for i in range(7)]))
    assert len(third.accepted) == 5
    assert len(third.by_status(DeliveryStatus.THROTTLED)) == 2


async def test_the_cap_is_per_sender_domain(store: Store, make_guard: Callable[..., Guard]) -> None:
    guard = make_guard(store=store, warmup=WarmupSchedule.from_table({1: 1}, started_on=NOV_1))
    one = await guard.send(message("a@example.com", sender="x@one.example"))
    other = await guard.send(message("b@example.com", sender="x@other.example"))
    again = await guard.send(message("c@example.com", sender="y@ONE.example"))
    assert one.accepted == ["a@example.com"]
    assert other.accepted == ["b@example.com"]
    assert again.recipients["c@example.com"].status is DeliveryStatus.THROTTLED


async def test_quota_of_recipients_not_accepted_is_given_back(
    store: Store,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.script("gone@example.com", "550 5.1.1 no such user")
    smtp_server.script("blocked@blocked.example", "554 5.7.1 Client host blocked")
    smtp_server.script("later@example.com", "451 4.7.1 later")
    guard = make_guard(store=store, warmup=WarmupSchedule.from_table({1: 4}, started_on=NOV_1))
    result = await guard.send(
        message(
            ["ok@example.com", "gone@example.com", "blocked@blocked.example", "later@example.com"]
        )
    )
    assert result.accepted == ["ok@example.com"]
    # Three of the four reserved were not accepted: three remain for today.
    more = await guard.send(message([f"m{i}@example.com" for i in range(4)]))
    assert len(more.accepted) == 3


async def test_quota_stays_spent_when_delivery_is_uncertain(
    store: Store,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.script_data(DROP)
    guard = make_guard(store=store, warmup=WarmupSchedule.from_table({1: 2}, started_on=NOV_1))
    await guard.send(message(["a@example.com", "b@example.com"]))
    after = await guard.send(message("c@example.com"))
    assert after.recipients["c@example.com"].status is DeliveryStatus.THROTTLED


async def test_suppressed_recipients_take_no_quota(
    store: Store, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(store=store, warmup=WarmupSchedule.from_table({1: 1}, started_on=NOV_1))
    await guard.suppress("gone@example.com")
    result = await guard.send(message(["gone@example.com", "ok@example.com"]))
    assert result.recipients["gone@example.com"].status is DeliveryStatus.SUPPRESSED
    assert result.accepted == ["ok@example.com"]


def test_presets() -> None:
    schedule = WarmupSchedule.preset("new-domain", started_on=NOV_1)
    caps = [cap for _, cap in schedule.table()]
    assert (caps[0], caps[-1], len(caps)) == (20, 50_000, 42)
    assert caps == sorted(caps)
    assert WarmupSchedule.preset("new-domain").started_on == dt.datetime.now(dt.UTC).date()
    with pytest.raises(ConfigurationError, match="new-domain"):
        WarmupSchedule.preset("fast")


async def test_a_ramp_of_sending_days_advances_only_on_days_with_sends(
    store: Store, make_guard: Callable[..., Guard], clock: FakeClock
) -> None:
    schedule = WarmupSchedule.from_table(
        {1: 2, 2: 4, 3: 8}, started_on=clock.now.date(), counting="sending", idle_restart=30
    )
    guard = make_guard(store=store, warmup=schedule)

    async def accepted(count: int) -> int:
        result = await guard.send(message([f"r{i}@example.com" for i in range(count)]))
        return len(result.accepted)

    assert await accepted(5) == 2  # sending day 1
    clock.advance(days=2)  # a calendar day without sends in between
    assert (await guard.status("sender.example")).day == 2
    assert await accepted(5) == 4  # sending day 2, on calendar day 3
    assert await accepted(5) == 0  # the same day: its cap is spent
    clock.advance(days=1)
    assert await accepted(10) == 8
    clock.advance(days=31)  # idle past idle_restart: back to day 1
    assert (await guard.status("sender.example")).day == 1
    assert await accepted(5) == 2


async def test_a_day_whose_sends_were_all_suppressed_does_not_advance_the_ramp(
    store: Store, make_guard: Callable[..., Guard], clock: FakeClock
) -> None:
    schedule = WarmupSchedule.from_table(
        {1: 1, 2: 3}, started_on=clock.now.date(), counting="sending"
    )
    guard = make_guard(store=store, warmup=schedule)
    await guard.suppress("gone@example.com")
    await guard.send(message("gone@example.com"))
    clock.advance(days=1)
    assert (await guard.status("sender.example")).day == 1
    result = await guard.send(message(["a@example.com", "b@example.com"]))
    assert len(result.accepted) == 1
