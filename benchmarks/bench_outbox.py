"""What the outbox costs: keeping a message, draining a backlog, and the memory a backlog takes.

    python3 dev.py run python benchmarks/bench_outbox.py [--store sqlite|redis]
        [--messages N] [--concurrency C ...] [--backlog N] [--rounds R]

1. Keeping: N sends that are all held back (a warmup cap of 0), with ``keep=True`` against
   ``keep=False`` on the same store: the time and store calls one kept message adds.
2. Draining: N kept messages sent by ``deliver_outbox`` passes (the worker's path: claim,
   start, reserve, SMTP, finish) against N direct ``Guard.send`` calls, at each concurrency,
   to the same sink (Postfix's smtp-sink when installed, else aiosmtpd in another process);
   rounds alternate and the medians are reported.
3. Memory: a backlog of ``--backlog`` kept messages (one recipient each, ~1 KiB body): Redis
   ``used_memory`` growth, or the SQLite file's growth, per kept message.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis

from benchmarks.bench_send import (
    CountingConnection,
    CountingSQLiteStore,
    make_message,
    start_sink,
    trips_so_far,
)
from sendguard import (
    Guard,
    RedisStore,
    RetryPolicy,
    SMTPAdapter,
    SQLiteStore,
    Store,
    WarmupSchedule,
)

T = TypeVar("T")

Clock = Callable[[], dt.datetime]


class CountingAllSQLiteStore(CountingSQLiteStore):
    """Counts every transaction, the outbox's (plain SQL) too."""

    def _atomic(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        CountingSQLiteStore.transactions += 1
        return super()._atomic(work, write=write)

    def _transaction(self, work: Coroutine[Any, Any, T]) -> T:
        return SQLiteStore._transaction(self, work)  # counted once, by _atomic


class Scratch:
    """Fresh stores of one kind, and their cleanup."""

    def __init__(self, kind: str, redis_url: str) -> None:
        self.kind = kind
        self.redis_url = redis_url
        self.folder = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
        self.prefixes: list[str] = []
        self.last = ""

    def store(self, name: str | None = None) -> Store:
        """A new store, or (given the *name* of one made before) that store opened again."""
        self.last = name or uuid.uuid4().hex[:12]
        if self.kind == "sqlite":
            return CountingAllSQLiteStore(self.folder / f"{self.last}.db")
        prefix = f"bench-outbox-{self.last}"
        self.prefixes.append(prefix)
        return RedisStore.from_url(
            self.redis_url, prefix=prefix, connection_class=CountingConnection
        )

    async def clean(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if not self.prefixes:
            return
        client = aioredis.Redis.from_url(self.redis_url)
        for prefix in self.prefixes:
            keys = [k async for k in client.scan_iter(match=f"{{{prefix}}}*", count=1000)]
            for i in range(0, len(keys), 1000):
                await client.delete(*keys[i : i + 1000])
        await client.aclose()


def guard(port: int, store: Store, cap: int, clock: Clock, **options: object) -> Guard:
    today = dt.datetime.now(dt.UTC).date()
    return Guard(
        adapter=SMTPAdapter("127.0.0.1", port, start_tls=False, pool_size=32),
        store=store,
        warmup=WarmupSchedule.from_table({1: cap}, started_on=today),
        retry=RetryPolicy.never(),
        clock=clock,
        **options,  # type: ignore[arg-type]
    )


async def send_all(g: Guard, first: int, total: int, concurrency: int) -> float:
    """Send *total* messages with *concurrency* tasks; seconds taken."""
    numbers = iter(range(first, first + total))

    async def worker() -> None:
        for i in numbers:
            await g.send(make_message(i))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def tomorrow() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


async def keeping(port: int, scratch: Scratch, total: int) -> None:
    rows = []
    for keep in (False, True, False, True):
        g = guard(port, scratch.store(), 0, now, keep=keep)
        await send_all(g, -100, 50, 1)  # warm the pools and scripts
        before, cpu = trips_so_far(), time.process_time()
        seconds = await send_all(g, 0, total, 1)
        rows.append((keep, seconds / total * 1e6, (time.process_time() - cpu) / total * 1e6,
                     (trips_so_far() - before) / total))  # fmt: skip
        assert keep == bool(await g.backlog())
        await g.aclose()
    plain = statistics.median(r[1] for r in rows if not r[0])
    kept = statistics.median(r[1] for r in rows if r[0])
    trips = {k: max(r[3] for r in rows if r[0] == k) for k in (False, True)}
    print(
        f"keeping ({scratch.kind}, {total} held-back sends, concurrency 1): "
        f"keep=False {plain:.0f} us/msg, keep=True {kept:.0f} us/msg "
        f"(+{kept - plain:.0f} us); store calls per message {trips[False]:.2f} -> "
        f"{trips[True]:.2f}"
    )


async def draining(port: int, scratch: Scratch, total: int, concurrency: int, rounds: int) -> None:
    direct_rates, drain_rates = [], []
    for _ in range(rounds):
        g = guard(port, scratch.store(), 10 * total, now)
        await send_all(g, -100, 50, concurrency)
        direct_rates.append(total / await send_all(g, 0, total, concurrency))
        await g.aclose()
        holding = guard(port, scratch.store(), 0, now)
        await send_all(holding, 0, total, concurrency)
        await holding.aclose()
        worker = guard(port, scratch.store(scratch.last), 10 * total, tomorrow)
        start = time.perf_counter()
        sent = 0
        while sent < total:
            run = await worker.deliver_outbox(limit=4 * concurrency, concurrency=concurrency)
            if not run.claimed:
                break
            sent += run.delivered
        drain_rates.append(sent / (time.perf_counter() - start))
        assert sent == total, sent
        await worker.aclose()
        print(
            f"  round: direct {direct_rates[-1]:6.0f} msg/s, drain {drain_rates[-1]:6.0f} msg/s "
            f"({drain_rates[-1] / direct_rates[-1]:.2f})"
        )
    direct, drained = statistics.median(direct_rates), statistics.median(drain_rates)
    print(
        f"draining ({scratch.kind}, {total} messages, concurrency {concurrency}): direct "
        f"Guard.send {direct:.0f} msg/s, deliver_outbox {drained:.0f} msg/s, ratio "
        f"{drained / direct:.2f}"
    )


async def memory(port: int, scratch: Scratch, backlog: int) -> None:
    store = scratch.store()
    client = aioredis.Redis.from_url(scratch.redis_url) if scratch.kind == "redis" else None

    async def used() -> int:
        if client is not None:
            info = await client.info("memory")
            return int(info["used_memory"])
        path = store.path  # type: ignore[attr-defined]
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())

    g = guard(port, store, 0, now)
    await send_all(g, -10, 10, 8)
    before = await used()
    start = time.perf_counter()
    await send_all(g, 0, backlog, 16)
    seconds = time.perf_counter() - start
    if client is None:
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]
    after = await used()
    kept = sum(b.waiting for b in await g.backlog())
    await g.aclose()
    if client is not None:
        await client.aclose()
    print(
        f"memory ({scratch.kind}): a backlog of {kept} kept messages "
        f"(message {len(make_message(0).as_bytes())} B) takes {(after - before) / kept:.0f} B "
        f"each; kept at {backlog / seconds:.0f} msg/s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "redis"], default="sqlite")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--sink", choices=["smtp-sink", "aiosmtpd"], default="smtp-sink")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["keep", "drain", "memory"])
    args = parser.parse_args()
    proc, port, sink = start_sink(args.sink)
    scratch = Scratch(args.store, args.redis_url)
    print(f"sink: {sink}; store {args.store}; Python {sys.version.split()[0]}")
    try:
        if "keep" not in args.skip:
            await keeping(port, scratch, args.messages)
        if "drain" not in args.skip:
            for c in args.concurrency:
                await draining(port, scratch, args.messages, c, args.rounds)
        if "memory" not in args.skip:
            await memory(port, scratch, args.backlog)
    finally:
        await scratch.clean()
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
