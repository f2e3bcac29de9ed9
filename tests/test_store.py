"""The store protocol, one test body per behaviour, run against MemoryStore and real Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio as aioredis
from redis.crc import key_slot
from structlog.testing import capture_logs

from sendguard import (
    Admission,
    Admit,
    Breaker,
    ConfigurationError,
    DeliveryStatus,
    Guard,
    MemoryStore,
    Outcome,
    Pause,
    Quota,
    RedisStore,
    Reservation,
    Settled,
    Shape,
    SoftBouncePolicy,
    Store,
    StoreError,
    Suppression,
    WarmupSchedule,
)
from sendguard._store import Ramp
from sendguard.testing import FakeClock, ScriptedSMTPServer
from tests.conftest import free_port, message, scratch_redis_store
from tests.test_store_redis_outbox import outbox_operations

DAY = dt.date(2026, 11, 1)
NOW = datetime(2026, 11, 1, 10, tzinfo=UTC)


def entry(address: str, reason: str = "userunknown", **extra: object) -> Suppression:
    return Suppression(address, reason, created_at=datetime(2026, 11, 1, tzinfo=UTC), **extra)  # type: ignore[arg-type]


def reservation(keys: list[str], quota: Quota | None = None, **extra: object) -> Reservation:
    return Reservation(keys=keys, now=NOW, quota=quota, **extra)  # type: ignore[arg-type]


async def test_reserve_reports_suppressions_and_takes_quota_in_order(store: Store) -> None:
    await store.add([entry("gone@example.com", detail="550 5.1.1")])
    quota = Quota("sender.example", DAY, 2)
    admissions = await store.reserve(
        reservation(["a@example.com", "gone@example.com", "b@example.com", "c@example.com"], quota)
    )
    assert [a.verdict for a in admissions] == [
        Admit.CLEAR,
        Admit.SUPPRESSED,
        Admit.CLEAR,
        Admit.THROTTLED,
    ]
    assert admissions[1].suppression is not None
    assert admissions[1].suppression.detail == "550 5.1.1"
    assert await store.quota_used(quota) == 2
    (late,) = await store.reserve(reservation(["d@example.com"], quota))
    assert late.verdict is Admit.THROTTLED


async def test_reserve_without_quota_only_checks_suppression(store: Store) -> None:
    await store.add([entry("gone@example.com")])
    admissions = await store.reserve(reservation(["a@example.com", "gone@example.com"] * 50))
    verdicts = [a.verdict for a in admissions]
    assert verdicts == [Admit.CLEAR, Admit.SUPPRESSED] * 50


async def test_quota_is_per_domain_and_day(store: Store) -> None:
    def verdicts(admissions: list[Admission]) -> list[Admit]:
        return [a.verdict for a in admissions]

    await store.reserve(reservation(["a@example.com"], Quota("one.example", DAY, 1)))
    one = await store.reserve(reservation(["a@example.com"], Quota("one.example", DAY, 1)))
    two = await store.reserve(reservation(["a@example.com"], Quota("two.example", DAY, 1)))
    next_day = Quota("one.example", DAY + dt.timedelta(days=1), 1)
    tomorrow = await store.reserve(reservation(["a@example.com"], next_day))
    assert (verdicts(one), verdicts(two), verdicts(tomorrow)) == (
        [Admit.THROTTLED],
        [Admit.CLEAR],
        [Admit.CLEAR],
    )


async def test_settle_gives_back_quota_but_never_below_zero(store: Store) -> None:
    quota = Quota("sender.example", DAY, 3)
    await store.reserve(reservation(["a@example.com", "b@example.com"], quota))
    await store.settle(Outcome(NOW, quota, give_back=1))
    assert await store.quota_used(quota) == 1
    await store.settle(Outcome(NOW, quota, give_back=5))
    assert await store.quota_used(quota) == 0


async def test_settle_keeps_the_first_entry_of_an_address(store: Store) -> None:
    await store.add([entry("old@example.com", "complaint")])
    settled = await store.settle(
        Outcome(NOW, suppressions=[entry("new@example.com"), entry("old@example.com")])
    )
    assert settled.added == [True, False]
    old = await store.get("old@example.com")
    assert old is not None
    assert old.reason == "complaint"


async def test_pauses_hold_one_sender_toward_one_domain_until_they_expire(store: Store) -> None:
    until = NOW + dt.timedelta(hours=1)
    pause = Pause("sender.example", "example.com", until, "blocked", "554 5.7.1 listed")
    await store.settle(Outcome(NOW, pauses=[pause]))
    keys = ["a@example.com", "b@other.example"]
    held = await store.reserve(reservation(keys, sender_domain="sender.example"))
    assert [a.verdict for a in held] == [Admit.PAUSED, Admit.CLEAR]
    assert held[0].pause == pause
    other_sender = await store.reserve(reservation(keys, sender_domain="else.example"))
    assert [a.verdict for a in other_sender] == [Admit.CLEAR, Admit.CLEAR]
    assert await store.pauses("sender.example", NOW) == [pause]
    assert await store.pauses("sender.example", until) == []
    expired = await store.reserve(Reservation(keys[:1], until, sender_domain="sender.example"))
    assert expired[0].verdict is Admit.CLEAR


async def test_paused_recipients_take_no_quota_and_resume_lifts_the_pause(store: Store) -> None:
    quota = Quota("sender.example", DAY, 5)
    pause = Pause("sender.example", "example.com", NOW + dt.timedelta(days=1), "blocked")
    await store.settle(Outcome(NOW, pauses=[pause]))
    request = reservation(["a@example.com"], quota, sender_domain="sender.example")
    assert (await store.reserve(request))[0].verdict is Admit.PAUSED
    assert await store.quota_used(quota) == 0
    assert await store.resume("sender.example", NOW) == 1
    assert await store.resume("sender.example", NOW) == 0
    assert (await store.reserve(request))[0].verdict is Admit.CLEAR


async def test_soft_bounces_escalate_after_threshold_and_span(store: Store) -> None:
    policy = SoftBouncePolicy(threshold=3, span=dt.timedelta(days=2))
    full = entry("full@example.com", "mailboxfull", detail="452 4.2.2 mailbox full")
    for day in range(3):  # three soft bounces, but within less than two days
        now = NOW + dt.timedelta(hours=20 * day)
        settled = await store.settle(Outcome(now, soft_failures=[full], soft_policy=policy))
        assert settled.escalated == []
    assert await store.soft_bounces("full@example.com") == 3
    assert await store.get("full@example.com") is None
    later = NOW + dt.timedelta(days=2)
    settled = await store.settle(Outcome(later, soft_failures=[full], soft_policy=policy))
    assert settled.escalated == ["full@example.com"]
    suppressed = await store.get("full@example.com")
    assert suppressed is not None
    assert suppressed.reason == "softbounce"
    assert "452 4.2.2 mailbox full" in suppressed.detail
    assert await store.soft_bounces("full@example.com") == 0


async def test_a_delivery_resets_the_soft_bounce_count(store: Store) -> None:
    full = entry("full@example.com", "mailboxfull")
    await store.settle(Outcome(NOW, soft_failures=[full, full]))
    (admission,) = await store.reserve(reservation(["full@example.com"]))
    assert admission.soft
    await store.settle(Outcome(NOW, soft_resets=["full@example.com"]))
    assert await store.soft_bounces("full@example.com") == 0
    (admission,) = await store.reserve(reservation(["full@example.com"]))
    assert not admission.soft


# -- ids that make an outcome a duplicate: a provider's event id and a request's nonce ---------

VICTIM = "victim@example.com"


def substituted(kind: str, now: datetime = NOW) -> Outcome:
    """An outcome whose every effect would show, of one *kind* (what a forged replay carries)."""
    quota = Quota("sender.example", DAY, 10)
    victim = entry(VICTIM, detail="550 5.1.1 forged")
    return {
        "suppress": Outcome(now, suppressions=[victim]),
        "soft": Outcome(
            now, soft_failures=[victim], soft_policy=SoftBouncePolicy(1, dt.timedelta())
        ),
        "reset": Outcome(now, soft_resets=["full@example.com"]),
        "pause": Outcome(
            now, pauses=[Pause("sender.example", "example.com", NOW + HOUR, "blocked")]
        ),
        "give_back": Outcome(now, quota, give_back=1),
        "breaker": Outcome(
            now, sender_domain="sender.example", breaker=Breaker(min_volume=1), complaints=5
        ),
        "slowdown": Outcome(now, slowdowns=["sender.example\tgoogle"]),
    }[kind]


HOUR = dt.timedelta(hours=1)
EFFECTS = ["suppress", "soft", "reset", "pause", "give_back", "breaker", "slowdown"]


async def effects(store: Store) -> tuple[object, ...]:
    """Everything a substituted outcome could change."""
    quota = Quota("sender.example", DAY, 10)
    return (
        await store.get(VICTIM),
        await store.soft_bounces(VICTIM),
        await store.soft_bounces("full@example.com"),
        await store.pauses("sender.example", NOW),
        await store.quota_used(quota),
        await store.volume("sender.example", Breaker().bucket(NOW)),
    )


async def prepared(store: Store) -> tuple[object, ...]:
    """Some state for the effects to change: quota spent, a soft bounce on record."""
    await store.reserve(
        reservation(["a@example.com", "b@example.com"], Quota("sender.example", DAY, 10))
    )
    await store.settle(Outcome(NOW, soft_failures=[entry("full@example.com", "mailboxfull")]))
    return await effects(store)


@pytest.mark.parametrize("kind", EFFECTS)
async def test_a_seen_nonce_makes_an_outcome_a_duplicate_whatever_its_event_id(
    store: Store, kind: str
) -> None:
    before = await prepared(store)
    first = await store.settle(Outcome(NOW, event_id="mailgun\tev-1", nonce="nonce\ttok-1"))
    assert not first.duplicate
    for event_id in ("mailgun\tev-2", "mailgun\tev-1", ""):
        forged = replace(substituted(kind), event_id=event_id, nonce="nonce\ttok-1")
        settled = await store.settle(forged)
        assert settled.duplicate, event_id
        assert (settled.added, settled.escalated, settled.tripped) == ([], [], False)
    assert await effects(store) == before
    assert await rate_retry(store) == NOW + dt.timedelta(seconds=60)  # not slowed down


async def rate_retry(store: Store) -> datetime | None:
    """When a third send of a burst of two at one a minute may go (later if slowed down)."""
    shape = Shape("sender.example\tgoogle", interval=60.0, burst=2, adaptive=True)
    for _ in range(3):
        (admission,) = await store.reserve(
            reservation(["r@gmail.com"], shapes=[shape], shape_of=[1])
        )
    return admission.retry_at


@pytest.mark.parametrize("kind", EFFECTS)
async def test_a_seen_event_id_spends_a_new_nonce_too(store: Store, kind: str) -> None:
    before = await prepared(store)
    await store.settle(Outcome(NOW, event_id="mailgun\tev-1", nonce="nonce\ttok-1"))
    # The provider re-sends ev-1 under a new token: a duplicate, and tok-2 is spent with it,
    # so a capture of the re-send cannot carry other data either.
    again = await store.settle(Outcome(NOW, event_id="mailgun\tev-1", nonce="nonce\ttok-2"))
    assert again.duplicate
    for event_id in ("mailgun\tev-3", ""):
        forged = replace(substituted(kind), event_id=event_id, nonce="nonce\ttok-2")
        assert (await store.settle(forged)).duplicate
    assert await effects(store) == before
    assert await rate_retry(store) == NOW + dt.timedelta(seconds=60)


async def test_an_outcome_with_new_ids_takes_effect_and_ids_are_forgotten_later(
    store: Store,
) -> None:
    done = await store.settle(replace(substituted("suppress"), nonce="nonce\ttok-1"))
    assert (done.duplicate, done.added) == (False, [True])
    await store.remove(VICTIM)
    later = NOW + dt.timedelta(days=30, seconds=1)
    assert not (
        await store.settle(replace(substituted("suppress", later), nonce="nonce\ttok-1"))
    ).duplicate
    assert await store.get(VICTIM) is not None
    short = Outcome(later, nonce="nonce\tbrief", remember=dt.timedelta(minutes=5))
    assert not (await store.settle(short)).duplicate
    assert (await store.settle(replace(short, now=later + dt.timedelta(minutes=4)))).duplicate
    assert not (await store.settle(replace(short, now=later + dt.timedelta(minutes=10)))).duplicate


async def test_duplicates_follow_the_memory_store_on_random_ids(store: Store) -> None:
    """Differential: random event ids and nonces, drawn to collide, against MemoryStore."""
    spec = MemoryStore()
    rng = random.Random(9)
    for step in range(150):
        event_id = rng.choice(["", *(f"p\te{i}" for i in range(12))])
        nonce = rng.choice(["", *(f"nonce\tt{i}" for i in range(12))])
        now = NOW + dt.timedelta(days=step // 10)
        outcome = Outcome(now, event_id=event_id, nonce=nonce, remember=dt.timedelta(days=6))
        mine, expected = await store.settle(outcome), await spec.settle(outcome)
        assert mine.duplicate == expected.duplicate, (step, event_id, nonce)


async def test_a_nonce_is_seen_by_every_store_object_and_after_a_restart(
    reopen: Callable[[], Store],
) -> None:
    one, two = reopen(), reopen()
    assert not (
        await one.settle(Outcome(NOW, event_id="mailgun\tev-1", nonce="nonce\tt"))
    ).duplicate
    forged = replace(substituted("suppress"), event_id="mailgun\tev-2", nonce="nonce\tt")
    assert (await two.settle(forged)).duplicate
    await one.aclose()
    await two.aclose()
    restarted = reopen()
    assert (await restarted.settle(forged)).duplicate
    assert (
        await restarted.settle(replace(forged, nonce="nonce\tother", event_id="mailgun\tev-1"))
    ).duplicate
    assert (
        await restarted.settle(replace(forged, nonce="nonce\tother", event_id="mailgun\tev-9"))
    ).duplicate
    assert await restarted.get(VICTIM) is None


async def test_connections_racing_one_nonce_record_it_once(reopen: Callable[[], Store]) -> None:
    stores = [reopen() for _ in range(3)]
    for each in stores:  # connected first: the race is between settles, not connection set-ups
        await each.get("nobody@example.com")
    outcomes = [
        Outcome(
            NOW,
            suppressions=[entry(f"r{i}@example.com")],
            event_id=f"mailgun\tev-{i}",
            nonce="nonce\trace",
        )
        for i in range(24)
    ]
    settled = await asyncio.gather(*(stores[i % 3].settle(o) for i, o in enumerate(outcomes)))
    assert sum(not s.duplicate for s in settled) == 1
    listed = [e.address async for e in stores[0].scan()]
    assert len(listed) == 1


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
    await redis_store.reserve(
        reservation(
            ["a@example.com"],
            Quota("sender.example", DAY, 5),
            sender_domain="sender.example",
        )
    )
    await redis_store.add([entry("b@example.com")])
    pause = Pause("sender.example", "example.com", NOW + dt.timedelta(hours=1), "blocked")
    soft = entry("c@example.com", "mailboxfull")
    await redis_store.settle(Outcome(NOW, pauses=[pause], soft_failures=[soft]))
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{{{prefix}}}*"))
    client.close()
    assert len(keys) == 4  # quota counter, suppressions, soft bounces, pauses
    assert all(k.startswith(f"{{{prefix}}}:".encode()) for k in keys)
    assert len({key_slot(k) for k in keys}) == 1


@pytest.mark.parametrize("round_", range(5))
async def test_a_fresh_cluster_store_takes_concurrent_first_calls(
    redis_cluster_url: str, prefix: str, round_: int
) -> None:
    # redis-py's RedisCluster routes a command before it learns the slots: the first calls
    # of a fresh client went to any node, came back MOVED, and every fifth MOVED closed the
    # connections of the other calls under them (AttributeError from deep in redis-py).
    del round_
    async with scratch_redis_store(redis_cluster_url, prefix, cluster=True) as fresh:
        quota = Quota("sender.example", DAY, 100)
        calls = [
            *(fresh.settle(Outcome(NOW, event_id=f"ses\tev-{i}")) for i in range(20)),
            *(fresh.reserve(reservation([f"r{i}@example.com"], quota)) for i in range(5)),
            fresh.get("nobody@example.com"),
            fresh.quota_used(quota),
        ]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        assert [a for a in answers if isinstance(a, BaseException)] == []
        assert await fresh.quota_used(quota) == 5


def every_operation(store: RedisStore) -> dict[str, Callable[[], Awaitable[object]]]:
    """One call of each public operation of *store*, by name."""
    quota = Quota("sender.example", DAY, 5)

    async def scan() -> object:
        return [e async for e in store.scan()]

    return {
        "reserve": lambda: store.reserve(reservation(["a@example.com"], quota)),
        "settle": lambda: store.settle(Outcome(NOW, suppressions=[entry("a@example.com")])),
        "add": lambda: store.add([entry("a@example.com")]),
        "remove": lambda: store.remove("a@example.com"),
        "get": lambda: store.get("a@example.com"),
        "scan": scan,
        "quota_used": lambda: store.quota_used(quota),
        "soft_bounces": lambda: store.soft_bounces("a@example.com"),
        "pauses": lambda: store.pauses("sender.example", NOW),
        "volume": lambda: store.volume("sender.example", 1000),
        "ramp_day": lambda: store.ramp_day("sender.example", Ramp((1, 2), 20_000)),
        "resume": lambda: store.resume("sender.example"),
        **outbox_operations(store),
    }


def test_every_operation_is_in_the_failure_tests() -> None:
    operations = {
        name
        for name, member in vars(Store).items()
        if getattr(member, "__isabstractmethod__", False)
    }
    assert set(every_operation(RedisStore(aioredis.Redis()))) == operations


CLUSTER_FAILURES = [
    redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
    redis.exceptions.MasterDownError("MASTERDOWN Link with MASTER is down"),
    redis.exceptions.MovedError("3999 127.0.0.1:6381"),
    redis.exceptions.AskError("3999 127.0.0.1:6381"),
    redis.exceptions.TryAgainError("TRYAGAIN Multiple keys request during rehashing"),
    redis.exceptions.ClusterError("TTL exhausted."),
    redis.exceptions.SlotNotCoveredError("Slot 3999 not covered by the cluster."),
    redis.exceptions.RedisClusterException("Redis Cluster cannot be connected."),
    redis.exceptions.MaxConnectionsError("Too many connections"),
    redis.exceptions.TimeoutError("Timeout reading from socket"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError("timed out"),
    OSError(113, "No route to host"),
]


@pytest.mark.parametrize("failure", CLUSTER_FAILURES, ids=lambda e: type(e).__name__)
async def test_every_operation_on_a_cluster_fails_with_store_error_only(
    redis_cluster_url: str, prefix: str, failure: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with scratch_redis_store(redis_cluster_url, prefix, cluster=True) as store:
        client = store._client  # the cluster client the store asks first
        assert isinstance(client, redis.asyncio.RedisCluster)
        await client.aclose()  # made anew by the next call: it must learn the slots again

        async def fails(*args: object, **kwargs: object) -> None:
            raise failure

        monkeypatch.setattr(client, "initialize", fails)
        for name, call in every_operation(store).items():
            with pytest.raises(StoreError, match=f"Redis {name} failed") as info:
                await call()
            assert info.value.__cause__ is failure


async def test_an_attribute_error_of_our_own_is_not_taken_for_redis(
    redis_cluster_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with scratch_redis_store(redis_cluster_url, prefix, cluster=True) as store:

        async def broken(*args: object, **kwargs: object) -> None:
            raise AttributeError("a bug here, not a closed connection")

        monkeypatch.setattr(store._client, "initialize", broken)
        with pytest.raises(AttributeError, match="a bug here"):
            await store.get("a@example.com")


class ClosedUnderIt(aioredis.Connection):
    """A connection closed by another task while it writes (RedisCluster.aclose() does that
    to every connection when a node answers CLUSTERDOWN, or a slot is not covered)."""

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        await self.disconnect()
        await super()._send_packed_command(command)


async def test_a_connection_closed_under_a_call_is_a_store_error(
    redis_url: str, prefix: str
) -> None:
    # redis-py then writes to the writer it no longer has: AttributeError, from its own code.
    store = RedisStore.from_url(
        redis_url, prefix=prefix, connection_class=ClosedUnderIt, socket_timeout=5
    )
    for name, call in every_operation(store).items():
        with pytest.raises(StoreError, match=f"Redis {name} failed: connection closed") as info:
            await call()
        assert isinstance(info.value.__cause__, AttributeError)
    await store.aclose()


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
    async def settle(self, outcome: Outcome) -> Settled:
        raise StoreError("Redis settle failed: connection reset")


async def test_store_failing_after_delivery_returns_the_result_and_keeps_the_outcome(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    # Raising here would make the caller send the accepted mail again.
    smtp_server.script("gone@example.com", "550 5.1.1 no such user")
    guard = make_guard(store=_SettleFails(), journal=False)
    with capture_logs() as logs:
        result = await guard.send(message(["ok@example.com", "gone@example.com"]))
    assert not result.recorded
    assert result.accepted == ["ok@example.com"]
    assert result.recipients["gone@example.com"].status is DeliveryStatus.REJECTED
    assert any(
        e["event"] == "sendguard.journaled" and e["suppressions"] == ["g***@example.com"]
        for e in logs
    )


def test_bad_options_fail_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="on_store_error"):
        Guard(on_store_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        Guard(clock=datetime.now)
    with pytest.raises(ConfigurationError, match="Redis URL"):
        RedisStore.from_url("http://nope")


async def test_on_the_server_clock_times_follow_redis_not_the_client(
    redis_url: str,
    prefix: str,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    clock: FakeClock,
) -> None:
    # The guard's clock is a fake one, weeks behind; the store keeps time by Redis's TIME.
    smtp_server.script("bob@example.com", "554 5.7.1 Client host blocked using zen.spamhaus.org")
    async with scratch_redis_store(redis_url, prefix, server_clock=True) as store:
        guard = make_guard(store=store)
        before = datetime.now(UTC)
        await guard.send(message("bob@example.com"))
        (pause,) = await store.pauses("sender.example", before)
        assert before + dt.timedelta(minutes=59) < pause.until < before + dt.timedelta(minutes=61)
        # Two fake hours later the server says seconds have passed: still paused.
        clock.advance(7200)
        held = await guard.send(message("alice@example.com"))
        assert held.recipients["alice@example.com"].status is DeliveryStatus.PAUSED


@pytest.mark.parametrize(("bounces", "sends", "line"), [(7, 100, 0.07), (7, 25, 0.28)])
async def test_breaker_trips_exactly_at_its_line_on_every_store(
    store: Store, bounces: int, sends: int, line: float
) -> None:
    # 0.07 * 100 is 7.000000000000001 in floating point: compared so in Lua, 7 bounces in 100
    # sends once paused the sender on Memory and SQLite and not on Redis.
    breaker = Breaker(bounce_warn=line / 2, bounce_pause=line, min_volume=sends)
    keys = [f"r{n}@example.com" for n in range(sends)]
    await store.reserve(
        reservation(
            keys,
            sender_domain="sender.example",
            bucket=breaker.bucket(NOW),
            bucket_seconds=breaker.bucket_seconds,
        )
    )
    below = Outcome(NOW, sender_domain="sender.example", breaker=breaker, bounces=bounces - 1)
    assert not (await store.settle(below)).tripped
    at = Outcome(NOW, sender_domain="sender.example", breaker=breaker, bounces=1)
    settled = await store.settle(at)
    assert settled.volume == (sends, bounces, 0)
    assert settled.tripped
    assert [p.recipient_domain for p in await store.pauses("sender.example", NOW)] == ["*"]
