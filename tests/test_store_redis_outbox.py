"""The outbox on Redis: many workers, one slot, and what only Redis can get wrong.

The rules themselves are tested on every store in test_store_outbox.py; here, concurrent
claimers on separate clients (one server, and a cluster), the keys' hash slot, names that share
a beginning, binary letters on a decoding client, exact times, and a flushed script cache.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from sendguard import MemoryStore, RedisStore, Store, StoreError
from sendguard._store.outbox import Finish, Held, Kept, Letter, entry_id
from tests.conftest import scratch_redis_store

START = dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)
LEASE = dt.timedelta(minutes=5)


def letter(name: str, data: bytes = b"Subject: hi\r\n\r\nbody\r\n") -> Letter:
    return Letter(id=name, sender="app@s.example", data=data, created_at=START)


def kept(
    name: str, recipient: str, *, stream: str = "transactional", at: dt.datetime = START
) -> Kept:
    return Kept(name, recipient, "s.example", stream, at, START)


@pytest.fixture(params=["redis", "cluster"])
async def url(request: pytest.FixtureRequest, redis_url: str, redis_cluster_url: str) -> str:
    return redis_cluster_url if request.param == "cluster" else redis_url


@pytest.fixture
async def store(url: str, redis_cluster_url: str, prefix: str) -> AsyncIterator[RedisStore]:
    async with scratch_redis_store(url, prefix, cluster=url == redis_cluster_url) as made:
        yield made


async def test_concurrent_claimers_take_every_entry_exactly_once(
    url: str, redis_cluster_url: str, prefix: str
) -> None:
    cluster = url == redis_cluster_url
    async with scratch_redis_store(url, prefix, cluster=cluster) as store:
        expected = []
        for n in range(40):
            entries = [
                kept(f"m{n}", f"{r}@x.example", stream=("transactional", "bulk")[n % 2])
                for r in ("a", "b", "c")
            ]
            await store.keep(letter(f"m{n}"), entries)
            expected += [e.id for e in entries]
        # Eight workers, each on a client of its own (as on eight hosts), one entry a claim.
        workers = [RedisStore.from_url(url, prefix=prefix, cluster=cluster) for _ in range(8)]
        taken: list[str] = []

        async def work(worker: RedisStore, token: str) -> None:
            while True:
                claim = await worker.claim(
                    START, token=token, lease=LEASE, limit=1, streams=("transactional", "bulk")
                )
                if not claim.entries:
                    return
                (entry,) = claim.entries
                assert set(claim.letters) == {entry.letter}
                taken.append(entry.id)
                assert await worker.start(token, [entry.id], START) == [entry.id]
                assert await worker.finish(token, [Finish(entry.id)]) == 1

        try:
            await asyncio.gather(*(work(w, f"w{i}") for i, w in enumerate(workers)))
        finally:
            for worker in workers:
                await worker.aclose()
        counts = collections.Counter(taken)
        assert [k for k, c in counts.items() if c > 1] == []
        assert sorted(counts) == sorted(expected)
        # Every entry finished, every letter went with its last entry.
        assert await store.kept() == []
        assert await store.letter("m0") is None
        assert await store.backlog(START) == []


async def test_the_outbox_keys_share_one_hash_slot(redis_url: str, prefix: str) -> None:
    async with scratch_redis_store(redis_url, prefix) as store:
        await store.keep(letter("m"), [kept("m", f"{u}@x.example") for u in "abcd"])
        await store.keep(letter("n"), [kept("n", "a@x.example", stream="{other}")])
        claim = await store.claim(
            START, token="w", lease=LEASE, limit=3, streams=("transactional",)
        )
        a, b, _ = (e.id for e in claim.entries)
        await store.start("w", [a, b], START)
        await store.finish("w", [Finish(b, Held.UNCERTAIN)])
        assert await store.backlog(START)
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{{{prefix}}}*"))
        client.close()
    # Entries, letters, refs, ids, waiting, due, leases, created, counts, holds: every one
    # in use, none named after a stream, a token or an entry.
    assert sorted(keys) == sorted(k.encode() for k in store._outbox_keys)
    assert all(k.startswith(f"{{{prefix}}}:outbox:".encode()) for k in keys)
    assert len({key_slot(k) for k in keys}) == 1


async def test_names_that_begin_alike_stay_apart(store: RedisStore) -> None:
    # Streams, sender domains and tokens go into sorted-set members: "bulk" must not take
    # "bulk:2"'s entries, nor "w" release "w1"'s claims.
    for name, stream in (("m1", "bulk"), ("m2", "bulk:2"), ("m3", "bulk2"), ("m4", "{x}")):
        await store.keep(letter(name), [kept(name, "a@x.example", stream=stream)])
    one = await store.claim(START, token="w", lease=LEASE, limit=9, streams=("bulk",))
    assert [e.id for e in one.entries] == ["m1:a@x.example"]
    other = await store.claim(
        START, token="w1", lease=LEASE, limit=9, streams=("bulk:2", "bulk2", "{x}")
    )
    assert [e.id for e in other.entries] == ["m2:a@x.example", "m3:a@x.example", "m4:a@x.example"]
    assert await store.release("w") == 1
    assert [e.id for e in await store.kept(state=Held.CLAIMED)] == [
        "m2:a@x.example",
        "m3:a@x.example",
        "m4:a@x.example",
    ]
    assert await store.release("w1") == 3
    assert [e.id for e in await store.kept(stream="bulk:2")] == ["m2:a@x.example"]
    backlog = await store.backlog(START)
    assert [(b.stream, b.waiting, b.due) for b in backlog] == [
        ("bulk", 1, 1),
        ("bulk2", 1, 1),
        ("bulk:2", 1, 1),
        ("{x}", 1, 1),
    ]


async def test_times_come_back_to_the_microsecond(store: RedisStore) -> None:
    moments = [
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
        START + dt.timedelta(microseconds=1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
    ]
    for n, moment in enumerate(moments):
        await store.keep(letter(f"m{n}"), [kept(f"m{n}", "a@x.example", at=moment)])
    assert [e.next_at for e in await store.kept()] == moments
    # Due by the microsecond: START + 1 µs is not due at START, and is one microsecond later.
    claim = await store.claim(START, token="w", lease=LEASE, limit=9, streams=("transactional",))
    assert [e.next_at for e in claim.entries] == moments[:2]
    later = await store.claim(
        START + dt.timedelta(microseconds=1),
        token="w",
        lease=dt.timedelta(microseconds=7),
        limit=9,
        streams=("transactional",),
    )
    assert [e.lease_until for e in later.entries] == [START + dt.timedelta(microseconds=8)]
    # A lease runs out at its very microsecond.
    assert await store.start("w", ["m2:a@x.example"], START + dt.timedelta(microseconds=8)) == []
    assert await store.start("w", ["m2:a@x.example"], START + dt.timedelta(microseconds=7)) == [
        "m2:a@x.example"
    ]


async def test_a_binary_letter_comes_back_as_bytes_on_a_decoding_client(
    url: str, redis_cluster_url: str, prefix: str
) -> None:
    data = bytes(range(256)) * 40 + b"\n\r\n\xff\xfe"
    sent = Letter(
        id="m",
        sender="app@s.example",
        data=data,
        created_at=START,
        message_id="<m@s.example>",
        stream="bulk",
        smtputf8=True,
        original='{"subject": "h\\u00e9\\n"}',
    )
    entry = Kept("m", "zoë@x.example", "s.example", "bulk", START, START, detail='é\n\t"')
    async with scratch_redis_store(url, prefix, cluster=url == redis_cluster_url):
        store = RedisStore.from_url(
            url, prefix=prefix, cluster=url == redis_cluster_url, decode_responses=True
        )
        try:
            assert await store.keep(sent, [entry]) == 1
            assert await store.letter("m") == sent
            assert await store.kept() == [entry]
            claim = await store.claim(START, token="t", lease=LEASE, limit=1, streams=("bulk",))
            assert claim.letters == {"m": sent}
            assert await store.start("t", [entry.id], START) == [entry.id]
            assert [b.claimed for b in await store.backlog(START)] == [1]
        finally:
            await store.aclose()


async def test_a_flushed_script_cache_is_filled_again(store: RedisStore) -> None:
    await store.keep(letter("m"), [kept("m", "a@x.example")])
    await store._client.script_flush()  # on a cluster, on every primary
    assert await store._client.script_exists(store._outbox_scripts["claim"].sha) == [False]
    claim = await store.claim(START, token="w", lease=LEASE, limit=1, streams=("transactional",))
    assert [e.id for e in claim.entries] == ["m:a@x.example"]


def outbox_operations(store: RedisStore) -> dict[str, Callable[[], Awaitable[object]]]:
    ids = ["m:a@x.example"]
    return {
        "keep": lambda: store.keep(letter("m"), [kept("m", "a@x.example")]),
        "claim": lambda: store.claim(START, token="w", lease=LEASE, limit=1, streams=("bulk",)),
        "start": lambda: store.start("w", ids, START),
        "renew": lambda: store.renew("w", ids, START),
        "finish": lambda: store.finish("w", [Finish(ids[0])]),
        "release": lambda: store.release("w"),
        "kept": store.kept,
        "letter": lambda: store.letter("m"),
        "retry": lambda: store.retry(ids, START),
        "drop": lambda: store.drop(ids),
        "backlog": lambda: store.backlog(START),
    }


async def test_every_outbox_operation_on_a_cluster_fails_with_store_error_only(
    redis_cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    failure = redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down")
    async with scratch_redis_store(redis_cluster_url, prefix, cluster=True) as store:
        client = store._client
        assert isinstance(client, redis.asyncio.RedisCluster)
        await client.aclose()

        async def fails(*args: object, **kwargs: object) -> None:
            raise failure

        monkeypatch.setattr(client, "initialize", fails)
        for name, call in outbox_operations(store).items():
            with pytest.raises(StoreError, match=f"Redis {name} failed") as info:
                await call()
            assert info.value.__cause__ is failure


# -- a differential of what the one in test_store_outbox.py leaves out -------------------------
# Names that begin alike or hold braces, colons and non-ASCII letters, the empty token, leases
# of a microsecond, limits of 0, entries kept already claimed, finishes of several entries:
# Redis and Redis Cluster against MemoryStore, every answer and every read compared.

NAMES = ("m", "m1", "mé")
RECIPIENTS = ("a@x.example", "a@x.example:b", "zoë@y.example")
STREAMS = ("bulk", "bulk:2", "{t}", "é")
SENDERS = ("s.example", "s.example2")
TOKENS = ("w", "w1", "")
TICKS = (
    dt.timedelta(0),
    dt.timedelta(microseconds=1),
    dt.timedelta(seconds=1),
    dt.timedelta(minutes=5),
    dt.timedelta(days=1),
)


@dataclass(frozen=True)
class Keep:
    name: str
    entries: tuple[tuple[str, str, str, dt.timedelta, Held, str, dt.timedelta | None], ...]


@dataclass(frozen=True)
class Take:
    token: str
    lease: dt.timedelta
    limit: int
    streams: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    """Any other operation: its name and its arguments after now's.

    Without ``ids``: the entries the last claim that took any handed out, as a worker would use
    them; a ``token`` of ``None``: that claim's.
    """

    name: str
    token: str | None = ""
    ids: tuple[str, ...] = ()
    states: tuple[Held | None, ...] = ()


@dataclass(frozen=True)
class Tick:
    by: dt.timedelta


# Most draws are the plain case (kept waiting and due, claimed from every stream, leases that
# outlive a tick or two, a worker starting what it claimed), so that the rare ones meet state.
ids = st.builds(entry_id, st.sampled_from(NAMES), st.sampled_from(RECIPIENTS))
some_ids = st.just(()) | st.lists(ids, min_size=1, max_size=4).map(tuple)
ticks = st.sampled_from(TICKS)
tokens = st.sampled_from(TOKENS)
kept_as = st.tuples(
    st.sampled_from(RECIPIENTS),
    st.sampled_from(STREAMS),
    st.sampled_from(SENDERS),
    st.just(dt.timedelta(0)) | ticks,
    st.sampled_from([Held.WAITING] * 4 + list(Held)),
    st.sampled_from(["", "", *TOKENS]),
    st.sampled_from([None, None, *TICKS]),
)
finishes = st.lists(
    st.sampled_from([None, Held.WAITING, Held.UNCERTAIN]), min_size=4, max_size=4
).map(tuple)
keeps = st.builds(
    Keep,
    st.sampled_from(NAMES),
    st.lists(kept_as, min_size=1, max_size=3, unique_by=lambda k: k[0]).map(tuple),
)
takes = st.builds(
    Take,
    tokens,
    st.sampled_from([dt.timedelta(minutes=5), dt.timedelta(days=2)]) | ticks,
    st.integers(0, 5),
    st.just(STREAMS) | st.lists(st.sampled_from(STREAMS), max_size=3).map(tuple),
)
operations: st.SearchStrategy[Keep | Take | Call | Tick] = st.one_of(
    keeps,
    takes,
    st.builds(Call, st.just("start"), st.none() | tokens, some_ids),
    st.builds(Call, st.just("finish"), st.none() | tokens, some_ids, finishes),
    keeps,
    takes,
    st.builds(Call, st.just("release"), st.none() | tokens),
    st.builds(Call, st.sampled_from(["retry", "drop"]), ids=some_ids),
    st.builds(Tick, ticks),
)


async def run(  # noqa: PLR0911 (one return per kind of operation)
    store: Store, op: Keep | Take | Call, now: dt.datetime, last: dict[str, tuple[str, ...]]
) -> object:
    if isinstance(op, Keep):
        made = Letter(op.name, "app@s.example", op.name.encode() + b"\xff\x00", now)
        return await store.keep(
            made,
            [
                Kept(
                    op.name,
                    recipient,
                    sender,
                    stream,
                    now + delay,
                    now - delay,
                    state=state,
                    token=token,
                    lease_until=None if lease is None else now + lease,
                )
                for recipient, stream, sender, delay, state, token, lease in op.entries
            ],
        )
    if isinstance(op, Take):
        claim = await store.claim(
            now, token=op.token, lease=op.lease, limit=op.limit, streams=op.streams
        )
        if claim.entries:
            last.clear()
            last[op.token] = tuple(e.id for e in claim.entries)
        return list(claim.entries), sorted(claim.letters.items())
    token = next(iter(last), "") if op.token is None else op.token
    chosen = op.ids or next(iter(last.values()), ())
    if op.name == "start":
        return await store.start(token, chosen, now)
    if op.name == "finish":
        done = [
            Finish(key, state, now + dt.timedelta(seconds=n), attempts=n, detail=f"try {n}")
            for n, (key, state) in enumerate(zip(chosen, op.states, strict=False))
        ]
        return await store.finish(token, done)
    if op.name == "release":
        return await store.release(token)
    if op.name == "retry":
        return await store.retry(chosen, now)
    return await store.drop(chosen)


async def looks(store: Store, now: dt.datetime) -> object:
    return (
        await store.kept(limit=1000),
        [await store.letter(name) for name in NAMES],
        await store.backlog(now),
        await store.kept(after="m1", limit=2),
        await store.kept(after="m:a@x.example", limit=1, state=Held.WAITING),
        [await store.kept(stream=s) for s in STREAMS],
        [await store.kept(state=s, limit=2) for s in Held],
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(operations, min_size=10, max_size=40))
def test_redis_keeps_the_outbox_as_memory_store_whatever_the_names(
    redis_url: str, redis_cluster_url: str, sequence: list[Keep | Take | Call | Tick]
) -> None:
    async def trace(store: Store) -> list[object]:
        now = START
        seen: list[object] = []
        last: dict[str, tuple[str, ...]] = {}
        for op in sequence:
            if isinstance(op, Tick):
                now += op.by
            else:
                seen.append((op, await run(store, op, now, last), await looks(store, now)))
        return seen

    async def main() -> tuple[list[object], list[object], list[object]]:
        prefix = f"outbox-{uuid.uuid4().hex[:12]}"
        async with (
            scratch_redis_store(redis_url, prefix) as single,
            scratch_redis_store(redis_cluster_url, prefix, cluster=True) as cluster,
        ):
            return await trace(MemoryStore()), await trace(single), await trace(cluster)

    spec, single, cluster = asyncio.run(main())
    for name, got in (("redis", single), ("cluster", cluster)):
        for step, (want, have) in enumerate(zip(spec, got, strict=True)):
            assert have == want, f"{name} differs from MemoryStore at step {step}"
