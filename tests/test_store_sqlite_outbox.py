"""SQLiteStore's outbox: in the file, not in the process.

It survives closing and reopening the file, a file of schema 1 (from before the outbox) is
upgraded in place, its times come back exactly, and workers on one file (processes or
threads, each with its own store) never claim the same entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import multiprocessing
import sqlite3
import threading
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sendguard import SQLiteStore, StoreError, Suppression
from sendguard._store.outbox import Finish, Held, Kept, Letter
from sendguard._store.sqlite import SCHEMA_VERSION

START = dt.datetime(2026, 11, 1, 9, 30, 15, 123457, tzinfo=dt.UTC)
LEASE = dt.timedelta(minutes=5)
STREAMS = ("transactional", "bulk")


def letter(name: str, stream: str = "transactional") -> Letter:
    return Letter(
        id=name,
        sender="app@s.example",
        data=f"Message-ID: <{name}@s.example>\r\n\r\n".encode() + bytes(range(256)),
        created_at=START,
        message_id=f"<{name}@s.example>",
        stream=stream,
        smtputf8=True,
        original='{"subject": "hi"}',
    )


def kept(
    name: str, recipient: str, *, stream: str = "transactional", at: dt.datetime = START
) -> Kept:
    return Kept(name, recipient, "s.example", stream, at, START, detail="throttled")


async def test_the_outbox_survives_closing_and_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = SQLiteStore(path)
    await first.keep(letter("m"), [kept("m", "a@x.example"), kept("m", "b@x.example")])
    later = START + dt.timedelta(hours=1, microseconds=1)
    await first.keep(letter("n", "bulk"), [kept("n", "c@x.example", stream="bulk", at=later)])
    claim = await first.claim(START, token="w1", lease=LEASE, limit=10, streams=STREAMS)
    assert [e.id for e in claim.entries] == ["m:a@x.example", "m:b@x.example"]
    assert await first.start("w1", ["m:a@x.example"], START) == ["m:a@x.example"]
    before = await first.kept()
    backlog = await first.backlog(START)
    await first.aclose()

    again = SQLiteStore(path)
    try:
        assert await again.kept() == before
        assert await again.letter("m") == letter("m")
        assert await again.letter("n") == letter("n", "bulk")
        assert await again.backlog(START) == backlog
        # The worker of the first store never came back: its leases run out in the file.
        claim2 = await again.claim(later, token="w2", lease=LEASE, limit=10, streams=STREAMS)
        assert [e.id for e in claim2.entries] == ["m:b@x.example", "n:c@x.example"]
        assert claim2.letters == {"m": letter("m"), "n": letter("n", "bulk")}
        (lost,) = await again.kept(state=Held.UNCERTAIN)
        assert (lost.id, lost.token, lost.lease_until) == ("m:a@x.example", "w1", None)
        assert await again.finish("w1", [Finish(lost.id)]) == 1
        assert await again.finish("w2", [Finish(e.id) for e in claim2.entries]) == 2
        assert await again.kept() == []
        assert await again.letter("m") is None
    finally:
        await again.aclose()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox_letters").fetchone() == (0,)


async def test_times_come_back_exactly_whatever_their_offset(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    paris = dt.timezone(dt.timedelta(hours=1))
    at = dt.datetime(2026, 11, 1, 10, 30, 15, 123458, tzinfo=paris)  # START + 1 us, in UTC+1
    try:
        await store.keep(letter("m"), [kept("m", "a@x.example", at=at)])
        (entry,) = await store.kept()
        assert entry.next_at == at
        assert entry.next_at.tzinfo is dt.UTC
        # Ordered as instants, not as text: not due one microsecond before.
        early = await store.claim(START, token="w", lease=LEASE, limit=1, streams=STREAMS)
        assert early.entries == []
        claim = await store.claim(at, token="w", lease=LEASE, limit=1, streams=STREAMS)
        assert [e.lease_until for e in claim.entries] == [at + LEASE]
        with pytest.raises(ValueError, match="timezone-aware"):
            await store.claim(
                dt.datetime(2026, 11, 1), token="w", lease=LEASE, limit=1, streams=STREAMS
            )
    finally:
        await store.aclose()


async def test_a_file_of_schema_1_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    old = SQLiteStore(path)
    await old.add([Suppression("gone@example.com", "userunknown", detail="550 5.1.1")])
    await old.aclose()
    with contextlib.closing(sqlite3.connect(path)) as db:  # as sendguard with schema 1 left it
        db.executescript("DROP TABLE outbox; DROP TABLE outbox_letters; PRAGMA user_version = 1;")
    store = SQLiteStore(path)
    try:
        entry = await store.get("gone@example.com")
        assert entry is not None
        assert entry.detail == "550 5.1.1"
        assert await store.keep(letter("m"), [kept("m", "a@x.example")]) == 1
        claim = await store.claim(START, token="w", lease=LEASE, limit=5, streams=STREAMS)
        assert [e.id for e in claim.entries] == ["m:a@x.example"]
        assert claim.letters == {"m": letter("m")}
    finally:
        await store.aclose()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_a_file_of_the_next_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(path).db.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer sendguard"):
        SQLiteStore(path)


# -- workers on one file -------------------------------------------------------------------

WORKERS = 4
LETTERS = 40
RECIPIENTS = ("a@x.example", "b@y.example", "c@z.example")


def drain(path: str, worker: int, ready: Any) -> list[str]:
    """One worker: its own store on *path*, claiming one entry at a time until none is left.

    It finishes each entry it claims (letters go with their last entry, whoever finishes it)
    and answers the ids it claimed.
    """

    async def main() -> list[str]:
        store = SQLiteStore(path)
        token, now = f"w{worker}", START + dt.timedelta(hours=1)
        got: list[str] = []
        try:
            ready.wait()
            while True:
                claim = await store.claim(now, token=token, lease=LEASE, limit=1, streams=STREAMS)
                if not claim.entries:
                    return got
                (entry,) = claim.entries
                assert set(claim.letters) == {entry.letter}
                assert await store.start(token, [entry.id], now) == [entry.id]
                assert await store.finish(token, [Finish(entry.id)]) == 1
                got.append(entry.id)
        finally:
            await store.aclose()

    return asyncio.run(main())


def drain_to(path: str, worker: int, ready: Any, out: Any) -> None:
    """:func:`drain` in a process of its own, its answer (or its failure) put on *out*."""
    try:
        out.put((worker, drain(path, worker, ready)))
    except BaseException:
        out.put((worker, traceback.format_exc()))
        raise


async def fill(path: Path) -> set[str]:
    store = SQLiteStore(path)
    try:
        for n in range(LETTERS):
            stream = STREAMS[n % 2]
            entries = [kept(f"m{n}", r, stream=stream) for r in RECIPIENTS]
            await store.keep(letter(f"m{n}", stream), entries)
        return {e.id for e in await store.kept(limit=10_000)}
    finally:
        await store.aclose()


def claimed_by_processes(path: Path) -> dict[int, Any]:
    spawn = multiprocessing.get_context("spawn")  # no fork of a process running threads
    ready, out = spawn.Barrier(WORKERS), spawn.Queue()
    procs = [
        spawn.Process(target=drain_to, args=(str(path), w, ready, out)) for w in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    try:
        answers = dict(out.get(timeout=90) for _ in procs)
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    return answers


def claimed_by_threads(path: Path) -> dict[int, Any]:
    ready = threading.Barrier(WORKERS)
    answers: dict[int, Any] = {}

    def run(worker: int) -> None:
        try:
            answers[worker] = drain(str(path), worker, ready)
        except Exception:  # noqa: BLE001 (the test reads it)
            answers[worker] = traceback.format_exc()

    threads = [threading.Thread(target=run, args=(w,)) for w in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return answers


@pytest.mark.parametrize("workers", ["processes", "threads"])
async def test_workers_on_one_file_never_claim_the_same_entry(tmp_path: Path, workers: str) -> None:
    path = tmp_path / "store.db"
    everything = await fill(path)
    run = claimed_by_processes if workers == "processes" else claimed_by_threads
    answers = await asyncio.to_thread(run, path)
    failed = [a for a in answers.values() if isinstance(a, str)]
    assert failed == []
    assert len(answers) == WORKERS
    counts = Counter(key for ids in answers.values() for key in ids)
    assert set(counts) == everything
    assert set(counts.values()) == {1}  # every entry claimed, and by exactly one worker
    store = SQLiteStore(path)
    try:
        assert await store.kept() == []
        assert [await store.letter(f"m{n}") for n in range(LETTERS)] == [None] * LETTERS
    finally:
        await store.aclose()
