"""SQLiteStore: typed errors at start-up, and several processes sharing one file exactly."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sendguard import Admit, Quota, Reservation, SQLiteStore, StoreError, Suppression
from sendguard.testing import ScriptedSMTPServer
from tests.race_worker import race

ROOT = Path(__file__).resolve().parent.parent


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "store.db"
    junk.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StoreError, match="cannot use"):
        SQLiteStore(junk)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """*path* cannot be written while inside, even by root (whom modes do not stop)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root without chattr: nothing makes a file read-only")
    made = subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False)  # noqa: S603
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {made.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)  # noqa: S603


@pytest.mark.parametrize("what", ["file", "directory"])
def test_a_store_that_cannot_be_written_is_a_clear_error_at_start_up(
    tmp_path: Path, what: str
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "store.db"
    SQLiteStore(path).db.close()
    (folder / "store.db-wal").unlink(missing_ok=True)
    (folder / "store.db-shm").unlink(missing_ok=True)
    with read_only(path if what == "file" else folder), pytest.raises(StoreError) as raised:
        SQLiteStore(path)
    assert f"cannot use {path} as a sendguard store" in str(raised.value)
    assert "readonly" in str(raised.value) or "unable to open" in str(raised.value)


def test_a_file_of_a_newer_sendguard_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(path).db.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer sendguard"):
        SQLiteStore(path)


async def test_suppressions_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = SQLiteStore(path)
    await first.add([Suppression("gone@example.com", "userunknown", detail="550 5.1.1")])
    await first.aclose()
    again = SQLiteStore(path)
    entry = await again.get("gone@example.com")
    await again.aclose()
    assert entry is not None
    assert (entry.reason, entry.detail) == ("userunknown", "550 5.1.1")


async def test_four_processes_spend_a_daily_cap_on_one_file_exactly(
    tmp_path: Path, smtp_server: ScriptedSMTPServer
) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(path).db.close()
    workers, per_worker, cap = 4, 60, 100
    totals = await race(
        f"sqlite:///{path}",
        "-",
        smtp_server.port,
        workers=workers,
        per_worker=per_worker,
        cap=cap,
        kind="quota",
    )
    assert totals == {"accepted": cap, "throttled": workers * per_worker - cap}
    assert len(smtp_server.accepted) == cap
    store = SQLiteStore(path)
    used = await store.quota_used(Quota("sender.example", dt.datetime.now(dt.UTC).date(), cap))
    await store.aclose()
    assert used == cap


async def test_the_event_loop_is_not_blocked(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    now = dt.datetime.now(dt.UTC)
    for i in range(50):
        await store.reserve(Reservation([f"r{i}@example.com"], now))
    task.cancel()
    await store.aclose()
    assert ticks >= 50  # the loop kept turning while SQLite worked in a thread


async def test_concurrent_reservations_share_transactions(tmp_path: Path) -> None:
    class Counting(SQLiteStore):
        transactions = 0

        def _transaction(self, work: Any) -> Any:
            Counting.transactions += 1
            return super()._transaction(work)

    store = Counting(tmp_path / "store.db")
    await store.add([Suppression("r3@example.com", "userunknown")])
    before = Counting.transactions
    now = dt.datetime.now(dt.UTC)
    quota = Quota("sender.example", now.date(), 10)
    results = await asyncio.gather(
        *(store.reserve(Reservation([f"r{i}@example.com"], now, quota=quota)) for i in range(20))
    )
    used = await store.quota_used(quota)
    await store.aclose()
    assert Counting.transactions - before < 20
    verdicts = [a.verdict for (a,) in results]
    assert verdicts[3] is Admit.SUPPRESSED
    assert verdicts.count(Admit.CLEAR) == 10
    assert verdicts.count(Admit.THROTTLED) == 9
    assert used == 10
