"""MemoryStore is the specification: SQLite, Redis and Redis Cluster must give the same answers.

Hypothesis draws one store configuration (quota or ramp, rates and a spread, a breaker, a
soft-bounce policy) and a short sequence of reservations, outcomes, suppressions added and
removed, resumes and clock steps, for two sender domains and three recipient domains; the same
sequence runs on every store, on one fake clock (Redis with ``server_clock=False``), and each
answer (admissions, what ``settle``, ``add``, ``remove`` and ``resume`` did, and every read of
the protocol after every step: ``get``, ``scan``, ``soft_bounces``, ``pauses``, ``quota_used``
of today and the days before, ``volume``, ``ramp_day``) must equal MemoryStore's.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sendguard import (
    Breaker,
    MemoryStore,
    Outcome,
    Pause,
    Quota,
    Reservation,
    Shape,
    SoftBouncePolicy,
    SQLiteStore,
    Store,
    Suppression,
)
from sendguard._store import Ramp
from tests.conftest import scratch_redis_store

SENDER = "s.example"
SENDERS = (SENDER, "t.example")
DOMAINS = ("x.example", "gmail.com", "y.example")
ADDRESSES = tuple(f"{user}@{domain}" for user in ("a", "b") for domain in DOMAINS)
START = dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)
CREATED = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
# Clock steps: none, a millisecond, parts of a rate's interval, the breaker's bucket, days.
SPANS = (dt.timedelta(0), dt.timedelta(minutes=1), dt.timedelta(days=7))
STEPS = (0.0, 0.001, 0.3, 1.0, 7.2, 60.0, 600.0, 3600.0, 86400.0, 8 * 86400.0, 40 * 86400.0)


@dataclass(frozen=True)
class Config:
    """What stays the same through one sequence."""

    cap: int | None
    ramp: tuple[int, ...] | None
    idle_restart: int
    shapes: tuple[Shape, ...]
    spread: int
    breaker: Breaker | None
    soft_policy: SoftBouncePolicy
    recover: dt.timedelta
    slow_max: int
    remember: dt.timedelta


@dataclass(frozen=True)
class Reserve:
    keys: tuple[str, ...]
    shape_of: tuple[int, ...]
    checks_pauses: bool
    sender: str = SENDER


@dataclass(frozen=True)
class Settle:
    give_back: int
    suppressions: tuple[str, ...]
    soft_failures: tuple[str, ...]
    soft_resets: tuple[str, ...]
    pauses: tuple[tuple[str, float], ...]
    bounces: int
    complaints: int
    slowdowns: tuple[str, ...]
    event_id: str
    nonce: str
    sender: str = SENDER


@dataclass(frozen=True)
class Add:
    addresses: tuple[str, ...]
    reason: str
    replace: bool


@dataclass(frozen=True)
class Remove:
    address: str


@dataclass(frozen=True)
class Resume:
    sender: str


@dataclass(frozen=True)
class Advance:
    seconds: float


Op = Reserve | Settle | Add | Remove | Resume | Advance

shapes = st.lists(
    st.builds(
        Shape,
        field=st.sampled_from(["rate:google", "rate:*"]),
        interval=st.sampled_from([0.3, 1.0, 7.2, 60.0]),
        burst=st.integers(1, 3),
        adaptive=st.booleans(),
    ),
    max_size=2,
    unique_by=lambda s: s.field,
).map(tuple)

breakers = st.none() | st.builds(
    lambda bounce, complaint, min_volume, pause_for: Breaker(
        bounce_warn=bounce / 2,
        bounce_pause=bounce,
        complaint_warn=complaint / 2,
        complaint_pause=complaint,
        min_volume=min_volume,
        window=dt.timedelta(hours=24),
        pause_for=pause_for,
    ),
    st.sampled_from([0.07, 0.1, 0.3, 0.5, 1.0]),
    st.sampled_from([0.07, 0.2, 1.0]),
    st.integers(1, 6),
    st.none() | st.sampled_from([dt.timedelta(minutes=10), dt.timedelta(days=1)]),
)


@st.composite
def configs(draw: st.DrawFn) -> Config:
    drawn = draw(shapes)
    return Config(
        cap=draw(st.none() | st.integers(0, 4)),
        ramp=draw(st.none() | st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple)),
        idle_restart=draw(st.sampled_from([1, 30])),
        shapes=drawn,
        spread=draw(st.integers(0, len(drawn))),
        breaker=draw(breakers),
        soft_policy=SoftBouncePolicy(
            threshold=draw(st.integers(1, 3)),
            span=draw(st.sampled_from(SPANS)),
        ),
        recover=draw(st.sampled_from([dt.timedelta(seconds=60), dt.timedelta(minutes=10)])),
        slow_max=draw(st.sampled_from([4, 64])),
        remember=draw(st.sampled_from([dt.timedelta(hours=1), dt.timedelta(days=30)])),
    )


addresses = st.sampled_from(ADDRESSES)
few = st.lists(addresses, max_size=2).map(tuple)


@st.composite
def reserves(draw: st.DrawFn, config: Config) -> Reserve:
    keys = tuple(draw(st.lists(addresses, min_size=1, max_size=4)))
    shape_of = tuple(draw(st.integers(0, len(config.shapes))) for _ in keys)
    return Reserve(keys, shape_of, draw(st.booleans()), draw(senders))


senders = st.sampled_from(SENDERS)


settles = st.builds(
    Settle,
    give_back=st.integers(0, 3),
    suppressions=few,
    soft_failures=st.lists(addresses, max_size=3).map(tuple),
    soft_resets=few,
    pauses=st.lists(
        st.tuples(st.sampled_from((*DOMAINS, "*")), st.sampled_from([0.0, 0.5, 60.0, 3600.0])),
        max_size=2,
    ).map(tuple),
    bounces=st.integers(0, 3),
    complaints=st.integers(0, 2),
    slowdowns=st.lists(st.sampled_from(["rate:google", "rate:*"]), max_size=2).map(tuple),
    event_id=st.sampled_from(["", "", "ev1", "ev2"]),
    nonce=st.sampled_from(["", "", "n1"]),
    sender=senders,
)
adds = st.builds(
    Add,
    addresses=st.lists(addresses, min_size=1, max_size=3).map(tuple),
    reason=st.sampled_from(["userunknown", "manual"]),
    replace=st.booleans(),
)
removes = st.builds(Remove, addresses)
resumes = st.builds(Resume, senders)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Config, list[Op]]:
    config = draw(configs())
    op: st.SearchStrategy[Op] = st.one_of(
        reserves(config),
        settles,
        adds,
        removes,
        resumes,
        st.builds(Advance, st.sampled_from(STEPS)),
    )
    return config, draw(st.lists(op, min_size=1, max_size=16))


@dataclass
class Run:
    """One store driven through a sequence; ``trace`` is every answer it gave."""

    store: Store
    trace: list[Any] = field(default_factory=list)


def entry(address: str, reason: str = "userunknown") -> Suppression:
    return Suppression(address, reason, 550, "5.1.1", "gone", "smtp", CREATED)


def quota_of(config: Config, now: dt.datetime, sender: str = SENDER) -> Quota | None:
    if config.cap is None and config.ramp is None:
        return None
    return Quota(sender, now.date(), config.cap or 0)


def ramp_of(config: Config, now: dt.datetime) -> Ramp | None:
    if config.ramp is None:
        return None
    return Ramp(config.ramp, int(now.timestamp()) // 86400, config.idle_restart)


def reservation(config: Config, op: Reserve, now: dt.datetime) -> Reservation:
    breaker = config.breaker
    return Reservation(
        keys=op.keys,
        now=now,
        quota=quota_of(config, now, op.sender),
        sender_domain=op.sender if op.checks_pauses or breaker else "",
        bucket=breaker.bucket(now) if breaker else None,
        bucket_seconds=breaker.bucket_seconds if breaker else 0,
        shapes=config.shapes,
        shape_of=op.shape_of if config.shapes else (),
        spread=config.spread,
        recover=config.recover,
        ramp=ramp_of(config, now),
    )


def outcome(config: Config, op: Settle, now: dt.datetime) -> Outcome:
    return Outcome(
        now=now,
        quota=quota_of(config, now, op.sender),
        give_back=op.give_back,
        suppressions=[entry(a) for a in op.suppressions],
        soft_failures=[entry(a, "mailboxfull") for a in op.soft_failures],
        soft_resets=op.soft_resets,
        pauses=[
            Pause(op.sender, domain, now + dt.timedelta(seconds=s), "blocked", "554 5.7.1")
            for domain, s in op.pauses
        ],
        soft_policy=config.soft_policy,
        sender_domain=op.sender,
        breaker=config.breaker,
        bounces=op.bounces,
        complaints=op.complaints,
        slowdowns=op.slowdowns,
        event_id=op.event_id,
        nonce=op.nonce,
        remember=config.remember,
        slow_max=config.slow_max,
        recover=config.recover,
    )


DAYS = 3
"""Days of quota counters every store answers for exactly: today and the two before."""


async def state(config: Config, store: Store, now: dt.datetime) -> dict[str, Any]:
    """Every read a store answers, after a step.

    ``quota_older`` (the counter of three days ago) is no promise: compared apart.
    """
    ramp = ramp_of(config, now)
    breaker = config.breaker
    quota = quota_of(config, now)  # the counters are read for any sender, at cap 0
    days = [now - dt.timedelta(days=d) for d in range(DAYS + 1)]
    used: dict[str, list[tuple[dt.date, int]]] = {}
    for sender in SENDERS:
        used[sender] = (
            [(d.date(), await store.quota_used(Quota(sender, d.date(), 0))) for d in days]
            if quota
            else []
        )
    return {
        "quota_used": {s: u[:DAYS] for s, u in used.items()},
        "quota_older": {s: u[DAYS] for s, u in used.items() if u},
        "soft_bounces": [await store.soft_bounces(a) for a in ADDRESSES],
        "suppressed": [await store.get(a) for a in ADDRESSES],
        "scan": sorted([e async for e in store.scan()], key=lambda e: e.address),
        "pauses": {
            s: sorted(await store.pauses(s, now), key=lambda p: p.recipient_domain) for s in SENDERS
        },
        "volume": {s: await store.volume(s, breaker.bucket(now)) for s in SENDERS}
        if breaker
        else None,
        "ramp_day": {s: await store.ramp_day(s, ramp) for s in (*SENDERS, "")} if ramp else None,
    }


async def answer(config: Config, store: Store, op: Op, now: dt.datetime) -> Any:
    """What *store* answers to *op* at *now*."""
    if isinstance(op, Reserve):
        return await store.reserve(reservation(config, op, now))
    if isinstance(op, Settle):
        return await store.settle(outcome(config, op, now))
    if isinstance(op, Add):
        entries = [entry(a, op.reason) for a in op.addresses]
        return await store.add(entries, replace=op.replace)
    if isinstance(op, Remove):
        return await store.remove(op.address)
    if isinstance(op, Resume):
        return await store.resume(op.sender, now)
    raise AssertionError(op)


async def drive(config: Config, ops: list[Op], runs: list[Run]) -> None:
    now = START
    for op in ops:
        if isinstance(op, Advance):
            now += dt.timedelta(seconds=op.seconds)
            continue
        for run in runs:
            got = await answer(config, run.store, op, now)
            run.trace.append((op, got, await state(config, run.store, now)))


def compare(spec: list[Any], trace: list[Any], name: str) -> None:
    """*trace* must be *spec*, step by step; a counter three days old may be gone (0)."""
    last: dict[tuple[str, dt.date], int] = {}
    for step, (expected, got) in enumerate(zip(spec, trace, strict=True)):
        (op, want, reads), (_, answer_, got_reads) = expected, got
        older = got_reads.pop("quota_older")
        older_expected = reads.pop("quota_older")
        assert (op, answer_, got_reads) == (op, want, reads), (
            f"{name} differs from MemoryStore at step {step}"
        )
        for sender, (day, value) in older.items():
            kept = last.get((sender, day), 0)
            assert value in (0, kept), f"{name}: {sender}'s counter of {day} is {value}"
            assert older_expected[sender][1] in (0, kept), f"memory: {sender}, {day}"
        for sender, counts in reads["quota_used"].items():
            for day, value in counts:
                last[(sender, day)] = value


@contextlib.asynccontextmanager
async def stores(redis_url: str, cluster_url: str) -> AsyncIterator[dict[str, Store]]:
    prefix = f"diff-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as directory:
        sqlite = SQLiteStore(Path(directory) / "sendguard.db")
        async with (
            scratch_redis_store(redis_url, prefix) as redis_store,
            scratch_redis_store(cluster_url, prefix, cluster=True) as cluster_store,
        ):
            try:
                yield {
                    "memory": MemoryStore(),
                    "sqlite": sqlite,
                    "redis": redis_store,
                    "cluster": cluster_store,
                }
            finally:
                await sqlite.aclose()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
@example(  # Lua kept a rate's arrival time to 14 digits and let this second send through
    (
        Config(
            cap=None,
            ramp=None,
            idle_restart=1,
            shapes=(Shape("rate:*", 0.3), Shape("rate:google", 0.3, burst=3, adaptive=True)),
            spread=2,
            breaker=None,
            soft_policy=SoftBouncePolicy(threshold=1, span=dt.timedelta(0)),
            recover=dt.timedelta(seconds=60),
            slow_max=4,
            remember=dt.timedelta(hours=1),
        ),
        [
            Settle(0, (), (), (), (), 0, 0, ("rate:google",), "", ""),
            Reserve(("a@x.example",), (2,), checks_pauses=False),
            Reserve(("a@x.example",), (0,), checks_pauses=False),
        ],
    )
)
@example(  # Redis's resume lifted 3 where MemoryStore lifted 2: expired pauses were counted
    (
        Config(
            None,
            None,
            30,
            (),
            0,
            None,
            SoftBouncePolicy(),
            dt.timedelta(minutes=10),
            64,
            dt.timedelta(days=30),
        ),
        [
            Settle(
                0,
                (),
                (),
                (),
                (("x.example", 0.0), ("*", 0.5), ("y.example", 60.0)),
                0,
                0,
                (),
                "",
                "",
                "t.example",
            ),
            Add(("a@x.example",), "manual", replace=False),
            Advance(1.0),
            Reserve(("a@x.example", "b@gmail.com"), (0, 0), checks_pauses=True, sender="t.example"),
            Resume("t.example"),
            Settle(0, (), (), (), (("gmail.com", 3600.0),), 0, 0, (), "", "", "t.example"),
            Advance(7200.0),
            Resume("t.example"),
        ],
    )
)
@example(  # MemoryStore forgot yesterday's counter (and the other sender's) at a new day
    (
        Config(
            2,
            None,
            30,
            (),
            0,
            None,
            SoftBouncePolicy(),
            dt.timedelta(minutes=10),
            64,
            dt.timedelta(days=30),
        ),
        [
            Reserve(("a@x.example", "b@x.example"), (0, 0), checks_pauses=False),
            Reserve(("a@x.example",), (0,), checks_pauses=False, sender="t.example"),
            Advance(86400.0),
            Reserve(("a@x.example",), (0,), checks_pauses=False),
            Advance(86400.0),
            Advance(86400.0),
            Reserve(("a@x.example",), (0,), checks_pauses=False),
        ],
    )
)
def test_every_store_answers_as_memory_store(
    redis_url: str, redis_cluster_url: str, scenario: tuple[Config, list[Op]]
) -> None:
    config, ops = scenario

    async def main() -> dict[str, list[Any]]:
        async with stores(redis_url, redis_cluster_url) as named:
            runs = {name: Run(store) for name, store in named.items()}
            await drive(config, ops, list(runs.values()))
            return {name: run.trace for name, run in runs.items()}

    traces = asyncio.run(main())
    spec = traces.pop("memory")
    for name, trace in traces.items():
        compare(copy.deepcopy(spec), trace, name)


def rate_request(field: str, recover: dt.timedelta, now: dt.datetime) -> Reservation:
    return Reservation(
        keys=("a@x.example",),
        now=now,
        shapes=(Shape(field, 10.0, adaptive=True),),
        shape_of=(1,),
        recover=recover,
    )


async def test_a_batch_applies_each_reservations_own_recovery(redis_url: str) -> None:
    """reserve.lua took the first request's ``recover`` for the whole batch."""
    slowed = Outcome(now=START, slowdowns=("rate:a", "rate:b"))
    later = START + dt.timedelta(seconds=61)
    # rate:a recovers in 10 minutes (still slowed: 20 s apart), rate:b in a minute (10 s).
    batch = [
        rate_request("rate:a", dt.timedelta(minutes=10), later),
        rate_request("rate:b", dt.timedelta(minutes=1), later),
    ]
    then = later + dt.timedelta(seconds=10)
    follow = [rate_request(r.shapes[0].field, r.recover, then) for r in batch]
    memory = MemoryStore()
    await memory.settle(slowed)
    expected = [await memory.reserve(r) for r in batch]
    expected += [await memory.reserve(r) for r in follow]
    assert [a[0].verdict for a in expected] == ["clear", "clear", "throttled", "clear"]
    async with scratch_redis_store(redis_url, f"diff-{uuid.uuid4().hex[:12]}") as redis_store:
        await redis_store.settle(slowed)
        got = await redis_store._reserve_batch(batch)  # one batch, for sure
        got += [await redis_store.reserve(r) for r in follow]
    assert got == expected
