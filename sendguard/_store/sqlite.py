"""A durable embedded store: SQLite, for one host without Redis.

The rules are :class:`MemoryStore`'s, run over tables instead of dicts: each operation is one
``BEGIN IMMEDIATE`` transaction, so several processes on the host share one file safely (the
busy timeout makes the others wait their turn), and a process killed mid-operation leaves the
file as it was before it.  The database is in WAL mode; work runs in a worker thread, never on
the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sendguard._errors import StoreError
from sendguard._models import Suppression
from sendguard._store import (
    Admission,
    Outcome,
    Pause,
    Quota,
    Ramp,
    Reservation,
    Settled,
    abandoned,
)
from sendguard._store.coalesce import Coalescer
from sendguard._store.memory import MemoryStore

__all__ = ["SQLiteStore"]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


def _pause_to(p: Pause) -> str:
    return json.dumps(
        [p.sender_domain, p.recipient_domain, p.until.isoformat(), p.reason, p.detail]
    )


def _pause_from(raw: str) -> Pause:
    sender, domain, until, reason, detail = json.loads(raw)
    return Pause(sender, domain, dt.datetime.fromisoformat(until), reason, detail)


class _Table(MutableMapping[Any, Any]):
    """One of MemoryStore's dicts, as a table of the open transaction."""

    def __init__(
        self,
        store: SQLiteStore,
        name: str,
        dump: Callable[[Any], str] = json.dumps,
        load: Callable[[str], Any] = json.loads,
        key_is_text: bool = True,
    ) -> None:
        self._store = store
        self._name = name
        self._dump = dump
        self._load = load
        self._text = key_is_text

    def _key(self, key: Any) -> str:  # noqa: ANN401
        return key if self._text else json.dumps(list(key))

    def _unkey(self, raw: str) -> Any:  # noqa: ANN401
        return raw if self._text else tuple(json.loads(raw))

    def __getitem__(self, key: Any) -> Any:  # noqa: ANN401
        row = self._store.db.execute(
            f"SELECT v FROM {self._name} WHERE k = ?",
            (self._key(key),),
        ).fetchone()
        if row is None:
            raise KeyError(key)
        return self._load(row[0])

    def __setitem__(self, key: Any, value: Any) -> None:  # noqa: ANN401
        self._store.db.execute(
            f"INSERT OR REPLACE INTO {self._name} (k, v) VALUES (?, ?)",
            (self._key(key), self._dump(value)),
        )

    def __delitem__(self, key: Any) -> None:  # noqa: ANN401
        cursor = self._store.db.execute(
            f"DELETE FROM {self._name} WHERE k = ?",
            (self._key(key),),
        )
        if cursor.rowcount == 0:
            raise KeyError(key)

    def __iter__(self) -> Iterator[Any]:
        rows = self._store.db.execute(f"SELECT k FROM {self._name}").fetchall()
        return iter([self._unkey(r[0]) for r in rows])

    def __len__(self) -> int:
        return int(self._store.db.execute(f"SELECT COUNT(*) FROM {self._name}").fetchone()[0])

    def __contains__(self, key: object) -> bool:
        row = self._store.db.execute(
            f"SELECT 1 FROM {self._name} WHERE k = ?",
            (self._key(key),),
        ).fetchone()
        return row is not None


SCHEMA_VERSION = 1
"""The layout of the tables, kept in the file's ``user_version``."""

_TABLES = ("suppressed", "used", "soft", "paused", "volume", "tat", "slow", "ramps", "events")


class SQLiteStore(MemoryStore):
    """Suppressions, counters, soft bounces and pauses in a SQLite file (``path``).

    Safe for several processes on one host.  A file that is not a sendguard database, or
    cannot be written, raises :class:`StoreError` here, at start-up.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.db = self._connect()
        try:
            self._create()
        except (sqlite3.Error, StoreError) as exc:
            self.db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot use {self.path} as a sendguard store: {exc}") from exc
        self._suppressed = _Suppressions(  # type: ignore[assignment]
            self, "suppressed", dump=lambda e: e.to_json(), load=lambda raw: raw
        )
        self._used = _Table(self, "used", key_is_text=False)  # type: ignore[assignment]
        self._soft = _Table(self, "soft", load=lambda raw: tuple(json.loads(raw)))  # type: ignore[assignment]
        self._paused = _Table(self, "paused", _pause_to, _pause_from, key_is_text=False)  # type: ignore[assignment]
        self._volume = _Table(self, "volume", key_is_text=False)  # type: ignore[assignment]
        self._tat = _Table(self, "tat")  # type: ignore[assignment]
        self._slow = _Table(self, "slow", load=lambda raw: tuple(json.loads(raw)))  # type: ignore[assignment]
        self._ramps = _Table(self, "ramps", load=lambda raw: tuple(json.loads(raw)))  # type: ignore[assignment]
        self._events = _Table(self, "events")  # type: ignore[assignment]
        self._reservations = Coalescer(self._reserve_batch, orphaned=abandoned)
        self.journal_directory = self.path.with_name(self.path.name + ".sendguard-journal")

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def on_new_loop(self) -> None:
        """See :meth:`Store.on_new_loop`: the connection is the loop's to share, not its own."""
        self._reservations = Coalescer(self._reserve_batch, orphaned=abandoned)

    def _connect(self) -> sqlite3.Connection:
        try:
            return sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot use {self.path} as a sendguard store: {exc}") from exc

    def _fork_check(self) -> None:
        """In a child of a fork, start over: a connection must not cross a fork.

        The parent's connection is left alone (closing it here could drop the parent's
        locks), and so are a lock some parent thread may have held and a batch of
        reservations in flight on the parent's event loop.
        """
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._reservations = Coalescer(self._reserve_batch, orphaned=abandoned)
        self.db = self._connect()

    def _create(self) -> None:
        """Make or check the tables, in one write: a file that cannot be written fails here.

        (SQLite opens a file it may not write read-only, without a word; the first write is
        where that shows, and it had better be now rather than at the first suppression.)
        """
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("BEGIN IMMEDIATE")
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            self.db.execute("ROLLBACK")
            raise StoreError(
                f"{self.path} was written by a newer sendguard (schema {version}, "
                f"this one knows {SCHEMA_VERSION})"
            )
        for name in _TABLES:
            self.db.execute(
                f"CREATE TABLE IF NOT EXISTS {name} (k TEXT PRIMARY KEY, v TEXT NOT NULL)"
            )
        # Event ids are forgotten by age: found by an index, not by reading the whole table.
        self.db.execute("CREATE INDEX IF NOT EXISTS events_at ON events (CAST(v AS REAL))")
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # the write that proves we may
        self.db.execute("COMMIT")

    def _seen(self, outcome: Outcome) -> bool:
        """:meth:`MemoryStore._seen` in SQL: one insert per id, only the expired ids are read."""
        now = outcome.now.timestamp()
        horizon = now - outcome.remember.total_seconds()
        self.db.execute("DELETE FROM events WHERE CAST(v AS REAL) <= ?", (horizon,))
        seen = False
        for key in outcome.once:
            written = self.db.execute(
                "INSERT INTO events (k, v) VALUES (?, ?) ON CONFLICT (k) DO NOTHING",
                (key, repr(now)),
            )
            seen |= written.rowcount == 0
        return seen

    def _transaction(self, work: Coroutine[Any, Any, T]) -> T:
        """Run one of MemoryStore's operations (they never await) in one transaction."""
        self._fork_check()
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                value = _finish(work)
                self.db.execute("COMMIT")
            except BaseException as exc:
                work.close()
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"SQLite {self.path}: {exc}") from exc
                raise
            return value

    async def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return await asyncio.to_thread(self._transaction, work)

    async def reserve(self, request: Reservation) -> list[Admission]:
        """See :meth:`Store.reserve`: one transaction, shared with concurrent sends."""
        self._fork_check()
        return await self._reservations.submit(request)

    async def _reserve_batch(self, requests: Sequence[Reservation]) -> list[list[Admission]]:
        async def each() -> list[list[Admission]]:
            return [await MemoryStore.reserve(self, request) for request in requests]

        return await self._run(each())

    async def settle(self, outcome: Outcome) -> Settled:
        """See :meth:`Store.settle`: one transaction."""
        return await self._run(super().settle(outcome))

    async def add(self, suppressions: Sequence[Suppression], *, replace: bool = False) -> int:
        """See :meth:`Store.add`."""
        return await self._run(super().add(suppressions, replace=replace))

    async def remove(self, key: str) -> bool:
        """See :meth:`Store.remove`."""
        return await self._run(super().remove(key))

    async def get(self, key: str) -> Suppression | None:
        """See :meth:`Store.get`."""
        return await self._run(super().get(key))

    async def scan(self) -> AsyncIterator[Suppression]:
        """See :meth:`Store.scan`: in pages, not one huge read."""
        last = ""
        while True:

            def page(after: str) -> list[tuple[str, str]]:
                self._fork_check()
                with self._lock:
                    return self.db.execute(
                        "SELECT k, v FROM suppressed WHERE k > ? ORDER BY k LIMIT 500", (after,)
                    ).fetchall()

            rows = await asyncio.to_thread(page, last)
            if not rows:
                return
            for key, raw in rows:
                yield Suppression.from_json(key, raw)
            last = rows[-1][0]

    async def quota_used(self, quota: Quota) -> int:
        """See :meth:`Store.quota_used`."""
        return await self._run(super().quota_used(quota))

    async def soft_bounces(self, key: str) -> int:
        """See :meth:`Store.soft_bounces`."""
        return await self._run(super().soft_bounces(key))

    async def pauses(self, sender_domain: str, now: dt.datetime) -> list[Pause]:
        """See :meth:`Store.pauses`."""
        return await self._run(super().pauses(sender_domain, now))

    async def resume(self, sender_domain: str, now: dt.datetime | None = None) -> int:
        """See :meth:`Store.resume`."""
        return await self._run(super().resume(sender_domain, now))

    async def ramp_day(self, sender_domain: str, ramp: Ramp) -> int:
        """See :meth:`Store.ramp_day`."""
        return await self._run(super().ramp_day(sender_domain, ramp))

    async def volume(self, sender_domain: str, bucket: int) -> Any:  # noqa: ANN401
        """See :meth:`Store.volume`."""
        return await self._run(super().volume(sender_domain, bucket))

    async def aclose(self) -> None:
        """Close the database (after the reservations in flight)."""
        self._fork_check()
        await self._reservations.aclose()
        with self._lock:
            self.db.close()


def _finish(work: Coroutine[Any, Any, T]) -> T:
    """The value of a coroutine that never awaits, run to its end here."""
    try:
        work.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise RuntimeError("a store operation awaited inside its transaction")


class _Suppressions(_Table):
    """Suppressions keep their JSON (the address is the key)."""

    def __getitem__(self, key: Any) -> Any:  # noqa: ANN401
        return Suppression.from_json(key, super().__getitem__(key))
