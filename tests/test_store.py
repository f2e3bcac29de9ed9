"""The store protocol, one test body per behaviour, run against MemoryStore and real Redis."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio as aioredis
from redis.crc import key_slot
from structlog.testing import capture_logs

from sendguard import (
    ConfigurationError,
    DeliveryStatus,
    Guard,
    MemoryStore,
    Quota,
    RedisStore,
    Store,
    StoreError,
    Suppression,
    WarmupSchedule,
)
from sendguard.testing import ScriptedSMTPServer
from tests.conftest import free_port, message

DAY = dt.date(2026, 11, 1)


def entry(address: str, reason: str = "userunknown", **extra: object) -> Suppression:
    return Suppression(address, reason, created_at=datetime(2026, 11, 1, tzinfo=UTC), **extra)  # type: ignore[arg-type]


async def test_reserve_reports_suppressions_and_takes_quota_in_order(store: Store) -> None:
    await store.add([entry("gone@example.com", detail="550 5.1.1")])
    quota = Quota("sender.example", DAY, 2)
    verdicts = await store.reserve(
        ["a@example.com", "gone@example.com", "b@example.com", "c@example.com"], quota
    )
    assert verdicts[0] is True
    assert isinstance(verdicts[1], Suppression)
    assert verdicts[1].detail == "550 5.1.1"
    assert verdicts[2:] == [True, False]
    assert await store.quota_used(quota) == 2
    assert await store.reserve(["d@example.com"], quota) == [False]


async def test_reserve_without_quota_only_checks_suppression(store: Store) -> None:
    await store.add([entry("gone@example.com")])
    verdicts = await store.reserve(["a@example.com", "gone@example.com"] * 50, None)
    assert verdicts.count(True) == 50
    assert all(isinstance(v, Suppression) for v in verdicts[1::2])


async def test_quota_is_per_domain_and_day(store: Store) -> None:
    await store.reserve(["a@example.com"], Quota("one.example", DAY, 1))
    assert await store.reserve(["a@example.com"], Quota("one.example", DAY, 1)) == [False]
    assert await store.reserve(["a@example.com"], Quota("two.example", DAY, 1)) == [True]
    next_day = Quota("one.example", DAY + dt.timedelta(days=1), 1)
    assert await store.reserve(["a@example.com"], next_day) == [True]


async def test_settle_gives_back_quota_but_never_below_zero(store: Store) -> None:
    quota = Quota("sender.example", DAY, 3)
    await store.reserve(["a@example.com", "b@example.com"], quota)
    await store.settle(quota, 1, [])
    assert await store.quota_used(quota) == 1
    await store.settle(quota, 5, [])
    assert await store.quota_used(quota) == 0


async def test_settle_keeps_the_first_entry_of_an_address(store: Store) -> None:
    await store.add([entry("old@example.com", "complaint")])
    added = await store.settle(None, 0, [entry("new@example.com"), entry("old@example.com")])
    assert added == [True, False]
    old = await store.get("old@example.com")
    assert old is not None
    assert old.reason == "complaint"


async def test_add_replace_remove_get_round_trip(store: Store) -> None:
    first = entry(
        "a@example.com",
        "manual",
        reply_code=550,
        enhanced_code="5.1.1",
        detail="no such user",
        source="cli",
    )
    assert await store.add([first]) == 1
    assert await store.get("a@example.com") == first
    assert await store.add([entry("a@example.com", "other")]) == 0
    assert await store.add([entry("a@example.com", "other")], replace=True) == 1
    replaced = await store.get("a@example.com")
    assert replaced is not None
    assert replaced.reason == "other"
    assert await store.remove("a@example.com") is True
    assert await store.remove("a@example.com") is False
    assert await store.get("a@example.com") is None


async def test_scan_returns_every_entry(store: Store) -> None:
    entries = [entry(f"user{i}@example.com") for i in range(1_234)]
    assert await store.add(entries) == 1_234
    seen = [e async for e in store.scan()]
    assert sorted(e.address for e in seen) == sorted(e.address for e in entries)


async def test_redis_keys_of_one_operation_share_a_hash_slot(
    redis_store: RedisStore, redis_url: str, prefix: str
) -> None:
    await redis_store.reserve(["a@example.com"], Quota("sender.example", DAY, 5))
    await redis_store.add([entry("b@example.com")])
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{{{prefix}}}*"))
    client.close()
    assert len(keys) == 2
    assert all(k.startswith(f"{{{prefix}}}:".encode()) for k in keys)
    assert len({key_slot(k) for k in keys}) == 1


def test_prefix_with_braces_is_refused(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisStore(aioredis.Redis.from_url(redis_url), prefix="a{b}")


class CountingConnection(aioredis.Connection):
    """A redis-py connection that counts what it writes: one write, one round trip."""

    writes = 0

    async def send_packed_command(self, command: object, check_health: bool = True) -> None:
        type(self).writes += 1
        await super().send_packed_command(command, check_health)  # type: ignore[arg-type]


@pytest.fixture
def counting_store(redis_url: str, prefix: str) -> RedisStore:
    CountingConnection.writes = 0
    return RedisStore.from_url(redis_url, prefix=prefix, connection_class=CountingConnection)


async def test_hot_path_is_one_redis_round_trip_per_message(
    counting_store: RedisStore, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(
        store=counting_store,
        warmup=WarmupSchedule.exponential(start=1_000, target=5_000, days=10, started_on=DAY),
    )
    await guard.send(message("warm@example.com"))  # connects and loads the script
    before = CountingConnection.writes
    for i in range(20):
        result = await guard.send(message([f"a{i}@example.com", f"b{i}@example.com"]))
        assert len(result.accepted) == 2
    assert CountingConnection.writes - before == 20


async def test_a_rejection_costs_one_more_round_trip(
    counting_store: RedisStore, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("gone@example.com", "550 5.1.1 no such user")
    smtp_server.script("gone2@example.com", "550 5.1.1 no such user")
    guard = make_guard(store=counting_store)
    await guard.send(message(["warm@example.com", "gone2@example.com"]))  # loads both scripts
    before = CountingConnection.writes
    result = await guard.send(message(["ok@example.com", "gone@example.com"]))
    assert result.recipients["gone@example.com"].suppressed
    assert CountingConnection.writes - before == 2


async def test_unreachable_store_sends_nothing(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(store=RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(StoreError) as info:
        await guard.send(message("alice@example.com"))
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    assert smtp_server.connections == 0


async def test_unreachable_store_may_be_ignored_when_asked(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(
        store=RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0"), on_store_error="send"
    )
    with capture_logs() as logs:
        result = await guard.send(message("alice@example.com"))
    assert result.accepted == ["alice@example.com"]
    assert smtp_server.accepted == ["alice@example.com"]
    assert any(e["event"] == "sendguard.store_error" and e["log_level"] == "warning" for e in logs)


class _SettleFails(MemoryStore):
    async def settle(self, quota: Quota | None, give_back: int, suppressions: object) -> list[bool]:
        raise StoreError("Redis settle failed: connection reset")


async def test_store_failing_after_delivery_raises_with_the_result(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("gone@example.com", "550 5.1.1 no such user")
    guard = make_guard(store=_SettleFails())
    with capture_logs() as logs, pytest.raises(StoreError) as info:
        await guard.send(message(["ok@example.com", "gone@example.com"]))
    result = info.value.result
    assert result is not None
    assert result.accepted == ["ok@example.com"]
    assert result.recipients["gone@example.com"].status is DeliveryStatus.REJECTED
    assert any(
        e["event"] == "sendguard.store_error" and e["unrecorded"] == ["g***@example.com"]
        for e in logs
    )


def test_bad_options_fail_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="on_store_error"):
        Guard(on_store_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        Guard(clock=datetime.now)
    with pytest.raises(ConfigurationError, match="Redis URL"):
        RedisStore.from_url("http://nope")
