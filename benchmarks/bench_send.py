"""Throughput of Guard.send against raw aiosmtplib, same sink, same concurrency.

    python3 dev.py run python benchmarks/bench_send.py [--messages N] [--concurrency C]
                                                       [--rounds R] [--sink smtp-sink|aiosmtpd]

The sink is Postfix's smtp-sink (a fast C server that accepts everything) when installed
(Debian: apt-get install postfix), else an aiosmtpd server in a separate process.  Raw
aiosmtplib sends with C connections, each in a loop of send_message(); the guard sends with
C tasks through one SMTPAdapter(pool_size=C) and a RedisStore (or, with --store sqlite, a
SQLiteStore on a scratch file), with a warmup cap high enough
never to bite, so every message takes the full hot path: validate, one Redis script call
(suppression check + quota reservation), one SMTP transaction.  Rounds alternate raw and guard
so both see the same machine state; the median round is reported.  Redis round trips are
counted on the client's connections.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib
import redis.asyncio as aioredis

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


class CountingConnection(aioredis.Connection):
    writes = 0

    async def send_packed_command(self, command: object, check_health: bool = True) -> None:
        type(self).writes += 1
        await super().send_packed_command(command, check_health)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_sink(kind: str) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if kind == "smtp-sink" and os.path.exists(binary):
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        cmd = [binary, *user, "-c", f"127.0.0.1:{port}", "1024"]
        name = "postfix smtp-sink"
    else:
        cmd = [sys.executable, "-c", AIOSMTPD_SINK, str(port)]
        name = "aiosmtpd (separate process)"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)  # noqa: S603
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port, name
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the sink did not start: {cmd}")


AIOSMTPD_SINK = """
import asyncio, sys
from aiosmtpd.smtp import SMTP
class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
async def main():
    loop = asyncio.get_running_loop()
    port = int(sys.argv[1])
    server = await loop.create_server(lambda: SMTP(Sink(), loop=loop), "127.0.0.1", port)
    await server.serve_forever()
asyncio.run(main())
"""


def make_message(i: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "news@bench.example"
    msg["To"] = f"user{i}@example.com"
    msg["Subject"] = f"Benchmark message {i}"
    msg.set_content("A short transactional e-mail body.\n" * 20)
    return msg


CPU_US: list[float] = []
"""Process CPU time per message of each round, in order (this process only, not the sink)."""


async def run_workers(
    total: int, concurrency: int, send: Callable[[int], Awaitable[None]]
) -> float:
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await send(i)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    CPU_US.append((time.process_time() - cpu) / total * 1e6)
    return total / (time.perf_counter() - start)


async def raw_round(port: int, total: int, concurrency: int) -> float:
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        for _ in range(concurrency)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    free: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
    for c in clients:
        free.put_nowait(c)

    async def send(i: int) -> None:
        client = await free.get()
        try:
            errors, _ = await client.send_message(make_message(i))
            assert not errors
        finally:
            free.put_nowait(client)

    rate = await run_workers(total, concurrency, send)
    await asyncio.gather(*(c.quit() for c in clients))
    return rate


class CountingSQLiteStore(SQLiteStore):
    """Counts its transactions: SQLite's counterpart of a Redis round trip."""

    transactions = 0

    def _transaction(self, work: Coroutine[Any, Any, T]) -> T:
        CountingSQLiteStore.transactions += 1
        return super()._transaction(work)


def trips_so_far() -> int:
    return CountingConnection.writes + CountingSQLiteStore.transactions


async def guard_round(
    port: int, store_url: str, total: int, concurrency: int, round_no: int
) -> tuple[float, float]:
    store: Store
    if store_url.startswith("sqlite:///"):
        folder = tempfile.mkdtemp(prefix="bench-")
        store = CountingSQLiteStore(Path(folder) / "bench.db")
    else:
        store = RedisStore.from_url(
            store_url,
            prefix=f"bench-{os.getpid()}-{round_no}",
            connection_class=CountingConnection,
        )
    today = dt.datetime.now(dt.UTC).date()
    guard = Guard(
        adapter=SMTPAdapter("127.0.0.1", port, start_tls=False, pool_size=concurrency),
        store=store,
        warmup=WarmupSchedule.from_table({1: 10 * total}, started_on=today),
        retry=RetryPolicy.never(),
    )
    # Connect the pools and load the script before timing.
    await asyncio.gather(*(guard.send(make_message(-1 - i)) for i in range(concurrency)))
    before = trips_so_far()

    async def send(i: int) -> None:
        result = await guard.send(make_message(i))
        assert len(result.accepted) == 1, result

    rate = await run_workers(total, concurrency, send)
    trips = (trips_so_far() - before) / total
    await guard.aclose()
    if isinstance(store, SQLiteStore):
        shutil.rmtree(store.path.parent)
        return rate, trips
    client = aioredis.Redis.from_url(store_url)
    keys = [k async for k in client.scan_iter(match=f"{{bench-{os.getpid()}-{round_no}}}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    return rate, trips


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sink", choices=["smtp-sink", "aiosmtpd"], default="smtp-sink")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    parser.add_argument(
        "--store",
        choices=["redis", "sqlite"],
        default="redis",
        help="the guard's store: RedisStore at --redis-url, or SQLiteStore on a scratch file",
    )
    args = parser.parse_args()
    # Decisions are logged at info; a production sender would ship them somewhere, this run
    # measures the guard itself.

    proc, port, sink = start_sink(args.sink)
    try:
        raw_rates, guard_rates, trips = [], [], []
        for r in range(args.rounds):
            raw_rates.append(await raw_round(port, args.messages, args.concurrency))
            store_url = args.redis_url if args.store == "redis" else "sqlite:///scratch"
            rate, per_message = await guard_round(
                port, store_url, args.messages, args.concurrency, r
            )
            guard_rates.append(rate)
            trips.append(per_message)
            print(
                f"round {r + 1}: raw {raw_rates[-1]:7.0f} msg/s   guard {rate:7.0f} msg/s   "
                f"ratio {rate / raw_rates[-1]:.2f}   store round trips/msg {per_message:.2f}"
            )
    finally:
        proc.terminate()
        proc.wait()
    raw, guard = statistics.median(raw_rates), statistics.median(guard_rates)
    print(
        f"\nsink: {sink}; {args.messages} messages x {args.rounds} rounds, "
        f"concurrency {args.concurrency}, store {args.store}, Python {sys.version.split()[0]}"
    )
    print(f"median raw aiosmtplib: {raw:.0f} msg/s")
    print(f"median Guard.send:     {guard:.0f} msg/s")
    ratios = [g / r for g, r in zip(guard_rates, raw_rates, strict=True)]
    raw_cpu, guard_cpu = statistics.median(CPU_US[0::2]), statistics.median(CPU_US[1::2])
    print(
        f"ratio guard/raw:       {guard / raw:.2f} (median of per-round ratios "
        f"{statistics.median(ratios):.2f})"
    )
    print(
        f"CPU per message:       raw {raw_cpu:.0f} us, guard {guard_cpu:.0f} us "
        f"(+{guard_cpu - raw_cpu:.0f} us)"
    )
    what = "Redis round trips" if args.store == "redis" else "SQLite transactions"
    print(f"{what} per message: {max(trips):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
