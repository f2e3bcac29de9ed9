"""Traffic shaping per sender x provider, adaptive slow-down, and the day's cap spread out."""

from __future__ import annotations

import datetime as dt
import importlib.util
from collections.abc import Callable

import pytest

from sendguard import (
    ConfigurationError,
    DeliveryStatus,
    Guard,
    Limit,
    RetryPolicy,
    Shaping,
    Store,
    WarmupSchedule,
    mx_provider,
    parse_limit,
)
from sendguard._pacing.shaping import provider_of_mx
from sendguard.testing import FakeClock, ScriptedSMTPServer
from tests.conftest import message

pytestmark = pytest.mark.usefixtures("smtp_server")


def test_limits_parse() -> None:
    assert parse_limit("500/hour") == Limit(500, dt.timedelta(hours=1), 50)
    assert parse_limit("20/minute", burst=1) == Limit(20, dt.timedelta(minutes=1), 1)
    assert parse_limit("100/10min").period == dt.timedelta(minutes=10)
    assert parse_limit("3 / days").interval == 28_800
    for bad in ("fast", "0/hour", "10/fortnight", "/hour"):
        with pytest.raises(ConfigurationError):
            parse_limit(bad)


async def test_providers_by_list_custom_domains_and_a_cached_resolver() -> None:
    asked: list[str] = []

    async def resolver(domain: str) -> str | None:
        asked.append(domain)
        return "google" if domain == "shop.example" else None

    shaping = Shaping({"*": "10/second"}, domains={"corp.example": "microsoft"}, resolver=resolver)
    assert shaping.provider_of("GMail.com") == "google"
    assert shaping.provider_of("aol.com") == "yahoo"
    assert shaping.provider_of("corp.example") == "microsoft"
    assert await shaping.resolve("shop.example") == "google"
    assert await shaping.resolve("shop.example") == "google"
    assert await shaping.resolve("other.example") == "*"
    assert asked == ["shop.example", "other.example"]
    assert provider_of_mx(["alt1.aspmx.l.google.com."]) == "google"
    assert provider_of_mx(["shop-example.mail.protection.outlook.com"]) == "microsoft"
    assert provider_of_mx(["mx.example.net"]) is None


async def test_a_provider_limit_holds_sends_back_until_the_rate_allows(
    store: Store,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    clock: FakeClock,
) -> None:
    shaping = Shaping({"google": "2/minute", "*": "1000/minute"}, burst=1)
    guard = make_guard(store=store, shaping=shaping)
    first = await guard.send(message(["a@gmail.com", "b@gmail.com", "c@yahoo.com"]))
    assert first.accepted == ["a@gmail.com", "c@yahoo.com"]
    held = first.recipients["b@gmail.com"]
    assert (held.status, held.retry_at) == (
        DeliveryStatus.THROTTLED,
        clock.now + dt.timedelta(seconds=30),
    )
    assert "rate" in held.detail
    clock.advance(29)
    still = await guard.send(message("b@gmail.com"))
    assert still.recipients["b@gmail.com"].status is DeliveryStatus.THROTTLED
    clock.advance(1)
    later = await guard.send(message("b@gmail.com"))
    assert later.accepted == ["b@gmail.com"]
    # The limit is per sender domain.
    other = await guard.send(message("d@gmail.com", sender="news@else.example"))
    assert other.accepted == ["d@gmail.com"]


async def test_bursts(store: Store, make_guard: Callable[..., Guard]) -> None:
    guard = make_guard(store=store, shaping=Shaping({"*": "60/minute"}, burst=3))
    result = await guard.send(message([f"r{i}@example.com" for i in range(5)]))
    assert len(result.accepted) == 3
    assert len(result.by_status(DeliveryStatus.THROTTLED)) == 2


async def test_a_slow_down_answer_halves_the_rate_and_it_recovers(
    store: Store,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    clock: FakeClock,
) -> None:
    smtp_server.script(
        "slow@gmail.com",
        "421 4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from "
        "your IP address",
    )
    shaping = Shaping({"google": "60/minute"}, burst=1, recover_every=dt.timedelta(minutes=10))
    guard = make_guard(
        store=store,
        shaping=shaping,
        transient_pause_for=dt.timedelta(seconds=1),
        retry=RetryPolicy(attempts=1),
    )
    told = await guard.send(message("slow@gmail.com"))
    assert told.recipients["slow@gmail.com"].reason == "ratelimited"
    clock.advance(2)
    assert (await guard.send(message("a@gmail.com"))).accepted == ["a@gmail.com"]
    # One send a second was the limit; after "slow down" it is one every two seconds.
    clock.advance(1)
    held = (await guard.send(message("b@gmail.com"))).recipients["b@gmail.com"]
    assert (held.status, held.retry_at) == (
        DeliveryStatus.THROTTLED,
        clock.now + dt.timedelta(seconds=1),
    )
    clock.advance(1)
    assert (await guard.send(message("b@gmail.com"))).accepted == ["b@gmail.com"]
    # Ten quiet minutes later the rate is back to one a second.
    clock.advance(600)
    assert (await guard.send(message("c@gmail.com"))).accepted == ["c@gmail.com"]
    clock.advance(1)
    assert (await guard.send(message("d@gmail.com"))).accepted == ["d@gmail.com"]


async def test_the_days_cap_is_spread_over_the_day(
    store: Store, make_guard: Callable[..., Guard], clock: FakeClock
) -> None:
    schedule = WarmupSchedule.from_table({1: 24}, started_on=clock.now.date())
    guard = make_guard(
        store=store, warmup=schedule, spread_over=dt.timedelta(hours=24), spread_burst=0.1
    )
    # A burst of ceil(2.4) = 3 now, then one an hour: the cap is not gone in the first minute.
    first = await guard.send(message([f"r{i}@example.com" for i in range(10)]))
    assert len(first.accepted) == 3
    throttled = first.by_status(DeliveryStatus.THROTTLED)
    assert len(throttled) == 7
    assert first.recipients[throttled[0]].retry_at == clock.now + dt.timedelta(hours=1)
    clock.advance(3600)
    assert len((await guard.send(message(["x@example.com", "y@example.com"]))).accepted) == 1
    assert (await guard.status("sender.example")).sent_today == 4


async def test_mx_lookups_need_dnspython_or_say_so() -> None:
    if importlib.util.find_spec("dns") is None:
        with pytest.raises(ConfigurationError, match="dnspython"):
            await mx_provider("example.com")
    else:  # no network here: an unresolvable name maps to no provider
        assert await mx_provider("name.invalid") is None


def test_options_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        Shaping({})
    with pytest.raises(ConfigurationError):
        Guard(spread_over=dt.timedelta(0))
    with pytest.raises(ConfigurationError):
        Guard(spread_burst=0)
