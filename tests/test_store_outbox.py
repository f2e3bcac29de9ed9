"""The outbox part of the store protocol, on every store.

Scenario tests spell out the rules (claims in stream order, leases that run out, a lost worker's
entry uncertain, finish by the holder only, letters kept once and dropped with their last
entry); a hypothesis differential test then drives MemoryStore (the specification), SQLite,
Redis and Redis Cluster through the same random sequences of outbox operations on one fake
clock and compares every answer and every read after every step.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendguard import Store
from sendguard._store.outbox import Finish, Held, Kept, Letter, entry_id
from tests.test_store_differential import stores

START = dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)
LEASE = dt.timedelta(minutes=5)
STREAMS = ("transactional", "bulk")


def letter(name: str, stream: str = "transactional", data: bytes = b"") -> Letter:
    return Letter(
        id=name,
        sender="app@s.example",
        data=data or f"Message-ID: <{name}@s.example>\r\nSubject: hi\r\n\r\nbody\r\n".encode(),
        created_at=START,
        message_id=f"<{name}@s.example>",
        stream=stream,
        smtputf8=False,
        original='{"subject": "hi"}',
    )


def kept(
    name: str,
    recipient: str,
    *,
    stream: str = "transactional",
    at: dt.datetime = START,
    sender_domain: str = "s.example",
) -> Kept:
    return Kept(
        letter=name,
        recipient=recipient,
        sender_domain=sender_domain,
        stream=stream,
        next_at=at,
        created_at=START,
        detail="throttled",
    )


every_store = stores
"""Every store, fresh (the differential store test's): memory, SQLite, Redis, Redis Cluster."""


@pytest.fixture(params=["memory", "sqlite", "redis", "cluster"])
async def store(
    request: pytest.FixtureRequest, redis_url: str, redis_cluster_url: str
) -> AsyncIterator[Store]:
    async with every_store(redis_url, redis_cluster_url) as named:
        yield named[request.param]


async def test_a_letter_is_kept_once_and_its_entries_claimed_by_due_time(store: Store) -> None:
    big = letter("m1", data=b"Subject: x\r\n\r\n" + b"x" * 100_000)
    assert await store.keep(big, [kept("m1", "a@x.example"), kept("m1", "b@x.example")]) == 2
    # Keeping the same letter and entry again changes nothing (a retried keep).
    assert await store.keep(letter("m1", data=b"other"), [kept("m1", "a@x.example")]) == 0
    got = await store.letter("m1")
    assert got == big
    later = START + dt.timedelta(minutes=1)  # m1's lease still runs
    await store.keep(letter("m2"), [kept("m2", "c@x.example", at=later)])
    claim = await store.claim(START, token="w1", lease=LEASE, limit=10, streams=STREAMS)
    assert [e.id for e in claim.entries] == ["m1:a@x.example", "m1:b@x.example"]
    assert all(e.state is Held.CLAIMED and e.token == "w1" for e in claim.entries)
    assert {e.lease_until for e in claim.entries} == {START + LEASE}
    assert claim.letters == {"m1": big}
    # Nothing else is due; and a second worker gets nothing of what the first holds.
    again = await store.claim(START, token="w2", lease=LEASE, limit=10, streams=STREAMS)
    assert again.entries == []
    due = await store.claim(later, token="w2", lease=LEASE, limit=10, streams=STREAMS)
    assert [e.id for e in due.entries] == ["m2:c@x.example"]


async def test_the_first_stream_is_claimed_first_and_limit_counts_entries(store: Store) -> None:
    for n in range(3):
        await store.keep(
            letter(f"b{n}", "bulk"),
            [kept(f"b{n}", "a@x.example", stream="bulk", at=START - dt.timedelta(days=1))],
        )
    await store.keep(letter("t0"), [kept("t0", "a@x.example"), kept("t0", "b@x.example")])
    claim = await store.claim(START, token="w", lease=LEASE, limit=3, streams=STREAMS)
    assert [e.id for e in claim.entries] == ["t0:a@x.example", "t0:b@x.example", "b0:a@x.example"]
    only_bulk = await store.claim(START, token="v", lease=LEASE, limit=9, streams=("bulk",))
    assert [e.id for e in only_bulk.entries] == ["b1:a@x.example", "b2:a@x.example"]
    # A stream not named is never claimed.
    await store.keep(letter("o"), [kept("o", "a@x.example", stream="other")])
    none = await store.claim(START, token="u", lease=LEASE, limit=9, streams=STREAMS)
    assert none.entries == []


async def test_a_lease_that_runs_out_gives_back_a_claim_and_makes_a_send_uncertain(
    store: Store,
) -> None:
    await store.keep(letter("m"), [kept("m", "a@x.example"), kept("m", "b@x.example")])
    claim = await store.claim(START, token="w1", lease=LEASE, limit=10, streams=STREAMS)
    a, b = (e.id for e in claim.entries)
    assert await store.start("w1", [a], START) == [a]
    assert await store.start("w2", [b], START) == []  # not its claim
    after = START + LEASE
    assert await store.start("w1", [b], after) == []  # the lease ran out
    # w1 was killed: its claimed entry comes back, the one it was sending is uncertain.
    claim2 = await store.claim(after, token="w2", lease=LEASE, limit=10, streams=STREAMS)
    assert [e.id for e in claim2.entries] == [b]
    listed = {e.id: e for e in await store.kept()}
    assert listed[a].state is Held.UNCERTAIN
    assert listed[a].token == "w1"
    assert "uncertain" in listed[a].detail
    assert listed[b].state is Held.CLAIMED
    assert listed[b].token == "w2"
    # w1 is not dead after all: its finish of b is refused (w2 holds it), of a accepted.
    assert await store.finish("w1", [Finish(b)]) == 0
    assert await store.finish("w1", [Finish(a)]) == 1
    assert [e.id for e in await store.kept()] == [b]
    # The letter stays while an entry is left, and goes with it.
    assert await store.letter("m") is not None
    assert await store.finish("w2", [Finish(b)]) == 1
    assert await store.kept() == []
    assert await store.letter("m") is None


async def test_finish_keeps_waiting_or_uncertain_and_release_gives_back_unstarted(
    store: Store,
) -> None:
    await store.keep(letter("m"), [kept("m", f"{u}@x.example") for u in ("a", "b", "c", "d")])
    claim = await store.claim(START, token="w", lease=LEASE, limit=10, streams=STREAMS)
    a, b, c, d = (e.id for e in claim.entries)
    assert await store.start("w", [a, b], START) == [a, b]
    tomorrow = START + dt.timedelta(days=1)
    assert (
        await store.finish(
            "w",
            [
                Finish(a, Held.WAITING, tomorrow, attempts=1, detail="451 greylisted"),
                Finish(b, Held.UNCERTAIN, attempts=1, detail="no reply to the final dot"),
            ],
        )
        == 2
    )
    assert await store.release("w") == 2  # c and d, claimed and not started
    listed = {e.id: e for e in await store.kept()}
    assert listed[a] == Kept(
        "m",
        "a@x.example",
        "s.example",
        "transactional",
        tomorrow,
        START,
        1,
        Held.WAITING,
        "451 greylisted",
    )
    assert listed[b].state is Held.UNCERTAIN
    assert listed[b].attempts == 1
    assert listed[c].state is Held.WAITING
    assert listed[c].token == ""
    assert listed[c].lease_until is None
    # The uncertain one is never claimed again by itself; retry makes it (and a) due.
    later = START + dt.timedelta(hours=2)
    claim2 = await store.claim(later, token="v", lease=LEASE, limit=10, streams=STREAMS)
    assert sorted(e.id for e in claim2.entries) == [c, d]
    assert await store.retry([a, b, c, "m:nobody@x.example"], later) == 2  # c is claimed
    claim3 = await store.claim(later, token="u", lease=LEASE, limit=10, streams=STREAMS)
    assert [e.id for e in claim3.entries] == [a, b]
    assert all(e.next_at == later for e in claim3.entries)


async def test_drop_lists_and_backlog(store: Store) -> None:
    await store.keep(letter("m"), [kept("m", "a@x.example"), kept("m", "b@x.example")])
    await store.keep(
        letter("n", "bulk"),
        [kept("n", "c@x.example", stream="bulk", at=START + dt.timedelta(hours=1))],
    )
    await store.keep(letter("o"), [kept("o", "d@y.example", sender_domain="t.example")])
    claim = await store.claim(START, token="w", lease=LEASE, limit=1, streams=STREAMS)
    assert [e.id for e in claim.entries] == ["m:a@x.example"]
    await store.start("w", ["m:a@x.example"], START)
    backlog = await store.backlog(START)
    assert [
        (b.sender_domain, b.stream, b.waiting, b.due, b.claimed, b.uncertain) for b in backlog
    ] == [
        ("s.example", "bulk", 1, 0, 0, 0),
        ("s.example", "transactional", 1, 1, 1, 0),
        ("t.example", "transactional", 1, 1, 0, 0),
    ]
    assert all(b.oldest == START for b in backlog)
    # Paging by id, filtering by stream and state.
    first = await store.kept(limit=2)
    rest = await store.kept(after=first[-1].id)
    assert [e.id for e in first + rest] == [
        "m:a@x.example",
        "m:b@x.example",
        "n:c@x.example",
        "o:d@y.example",
    ]
    assert [e.id for e in await store.kept(stream="bulk")] == ["n:c@x.example"]
    assert [e.id for e in await store.kept(state=Held.SENDING)] == ["m:a@x.example"]
    # Being sent: not dropped.  The others go, with the letters they leave empty.
    assert await store.drop(["m:a@x.example", "m:b@x.example", "n:c@x.example", "x:y"]) == 2
    assert await store.letter("n") is None
    assert await store.letter("m") is not None
    assert [e.id for e in await store.kept()] == ["m:a@x.example", "o:d@y.example"]


async def test_renew_holds_what_a_worker_sends_and_retry_starts_an_entry_afresh(
    store: Store,
) -> None:
    await store.keep(letter("m"), [kept("m", "a@x.example"), kept("m", "b@x.example")])
    claim = await store.claim(START, token="w", lease=LEASE, limit=10, streams=STREAMS)
    a, b = (e.id for e in claim.entries)
    assert await store.start("w", [a], START) == [a]
    later = START + LEASE + LEASE
    # Renewed: a (sending) and b (claimed), by their holder only.
    assert await store.renew("v", [a, b], later) == 0
    assert await store.renew("w", [a, b, "m:nobody@x.example"], later) == 2
    after = START + LEASE + dt.timedelta(seconds=1)  # the first lease would have run out
    assert (
        await store.claim(after, token="v", lease=LEASE, limit=10, streams=STREAMS)
    ).entries == []
    listed = {e.id: e for e in await store.kept()}
    assert listed[a].state is Held.SENDING
    assert listed[a].lease_until == later
    assert await store.finish("w", [Finish(a, Held.UNCERTAIN, detail="no reply to the dot")]) == 1
    assert await store.renew("w", [a], later) == 0  # uncertain: held by no worker any more
    # A person's retry: due now, and kept since now (max_age counts from the retry).
    retried = START + dt.timedelta(days=6)
    assert await store.retry([a], retried) == 1
    entry = {e.id: e for e in await store.kept()}[a]
    assert (entry.state, entry.next_at, entry.created_at) == (Held.WAITING, retried, retried)
    oldest = {x.stream: x.oldest for x in await store.backlog(retried)}
    assert oldest == {"transactional": START}  # b was kept at START


# -- the differential test -------------------------------------------------------------------

LETTERS = ("m1", "m2", "m3")
RECIPIENTS = ("a@x.example", "b@y.example")
TOKENS = ("w1", "w2")
STEPS = (0.0, 1.0, 60.0, 299.0, 300.0, 3600.0, 86400.0)


@dataclass(frozen=True)
class Keep:
    letter: str
    stream: str
    recipients: tuple[str, ...]
    delay: float


@dataclass(frozen=True)
class Take:
    token: str
    limit: int
    streams: tuple[str, ...]


@dataclass(frozen=True)
class Start:
    token: str
    ids: tuple[str, ...]
    picks: tuple[int, ...] = ()
    """Also start these of what *token*'s last claim took (by index, modulo its length)."""


@dataclass(frozen=True)
class Done:
    token: str
    id: str
    state: Held | None
    delay: float
    pick: int | None = None
    """Finish this one of what *token*'s last claim took instead of *id*."""


@dataclass(frozen=True)
class Renew:
    token: str
    picks: tuple[int, ...]
    """Of what *token*'s last claim took, by index (modulo its length)."""
    seconds: float


@dataclass(frozen=True)
class Release:
    token: str


@dataclass(frozen=True)
class Retry:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Drop:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Advance:
    seconds: float


Op = Keep | Take | Start | Done | Renew | Release | Retry | Drop | Advance

ids = st.builds(entry_id, st.sampled_from(LETTERS), st.sampled_from(RECIPIENTS))
some_ids = st.lists(ids, max_size=3).map(tuple)
tokens = st.sampled_from(TOKENS)
ops: st.SearchStrategy[Op] = st.one_of(
    st.builds(
        Keep,
        st.sampled_from(LETTERS),
        st.sampled_from(STREAMS),
        st.lists(st.sampled_from(RECIPIENTS), min_size=1, max_size=2, unique=True).map(tuple),
        st.sampled_from([0.0, 30.0, 600.0]),
    ),
    st.builds(
        Take,
        tokens,
        st.integers(1, 4),
        st.sampled_from([STREAMS, ("bulk", "transactional"), ("bulk",)]),
    ),
    st.builds(Start, tokens, some_ids),
    # Workers start and finish what they claimed (random ids rarely hit a claim).
    st.builds(Start, tokens, st.just(()), st.lists(st.integers(0, 3), max_size=3).map(tuple)),
    st.builds(Start, tokens, st.just(()), st.lists(st.integers(0, 3), max_size=3).map(tuple)),
    st.builds(
        Done,
        tokens,
        ids,
        st.sampled_from([None, Held.WAITING, Held.UNCERTAIN]),
        st.sampled_from([0.0, 60.0, 900.0]),
    ),
    st.builds(
        Done,
        tokens,
        ids,
        st.sampled_from([None, Held.WAITING, Held.UNCERTAIN]),
        st.sampled_from([0.0, 60.0, 900.0]),
        st.integers(0, 3),
    ),
    st.builds(
        Done,
        tokens,
        ids,
        st.sampled_from([None, Held.WAITING, Held.UNCERTAIN]),
        st.sampled_from([0.0, 60.0, 900.0]),
        st.integers(0, 3),
    ),
    st.builds(
        Renew,
        tokens,
        st.lists(st.integers(0, 3), max_size=3).map(tuple),
        st.sampled_from([0.0, 60.0, 600.0]),
    ),
    st.builds(Release, tokens),
    st.builds(Retry, some_ids),
    st.builds(Drop, some_ids),
    st.builds(Advance, st.sampled_from(STEPS)),
)


async def answer(  # noqa: PLR0911 (one return per kind of operation)
    store: Store,
    op: Op,
    now: dt.datetime,
    created: dict[str, int],
    taken: dict[str, list[str]],
) -> Any:
    if isinstance(op, Keep):
        entries = [
            Kept(
                op.letter,
                r,
                "s.example",
                op.stream,
                now + dt.timedelta(seconds=op.delay),
                now,
                detail="kept",
            )
            for r in op.recipients
        ]
        made = Letter(op.letter, "app@s.example", op.letter.encode() * 3, now, stream=op.stream)
        return await store.keep(made, entries)
    if isinstance(op, Take):
        claim = await store.claim(
            now, token=op.token, lease=LEASE, limit=op.limit, streams=op.streams
        )
        if claim.entries:
            taken[op.token] = [e.id for e in claim.entries]
        return (list(claim.entries), sorted(claim.letters.items()))
    mine = taken.get(op.token, []) if isinstance(op, Start | Done | Renew) else []
    if isinstance(op, Renew):
        picked = [mine[p % len(mine)] for p in op.picks] if mine else []
        return await store.renew(op.token, picked, now + dt.timedelta(seconds=op.seconds))
    if isinstance(op, Start):
        picked = [mine[p % len(mine)] for p in op.picks] if mine else []
        return await store.start(op.token, [*op.ids, *picked], now)
    if isinstance(op, Done):
        done = mine[op.pick % len(mine)] if mine and op.pick is not None else op.id
        created[done] = created.get(done, 0) + 1
        finish = Finish(
            done,
            op.state,
            now + dt.timedelta(seconds=op.delay) if op.state is Held.WAITING else None,
            attempts=created[done],
            detail=f"try {created[done]}",
        )
        return await store.finish(op.token, [finish])
    if isinstance(op, Release):
        return await store.release(op.token)
    if isinstance(op, Retry):
        return await store.retry(op.ids, now)
    if isinstance(op, Drop):
        return await store.drop(op.ids)
    raise AssertionError(op)


async def reads(store: Store, now: dt.datetime) -> dict[str, Any]:
    return {
        "kept": await store.kept(limit=1000),
        "letters": [await store.letter(name) for name in LETTERS],
        "backlog": await store.backlog(now),
        "paged": [e.id for e in await store.kept(after="m1:b", limit=2)],
        "uncertain": [e.id for e in await store.kept(state=Held.UNCERTAIN)],
        "bulk": [e.id for e in await store.kept(stream="bulk")],
    }


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(ops, min_size=5, max_size=30))
def test_every_store_keeps_the_outbox_as_memory_store(
    redis_url: str, redis_cluster_url: str, sequence: list[Op]
) -> None:
    async def main() -> dict[str, list[Any]]:
        traces: dict[str, list[Any]] = {}
        async with every_store(redis_url, redis_cluster_url) as named:
            for name, store in named.items():
                now, trace = START, traces.setdefault(name, [])
                created: dict[str, int] = {}
                taken: dict[str, list[str]] = {}
                for op in sequence:
                    if isinstance(op, Advance):
                        now += dt.timedelta(seconds=op.seconds)
                        continue
                    got = await answer(store, op, now, created, taken)
                    trace.append((op, got, await reads(store, now)))
        return traces

    traces = asyncio.run(main())
    spec = traces.pop("memory")
    for name, trace in traces.items():
        for step, (want, got) in enumerate(zip(spec, trace, strict=True)):
            assert got == want, f"{name} differs from MemoryStore at step {step}: {want[0]}"
