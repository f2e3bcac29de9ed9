"""A durable embedded store: SQLite, for one host without Redis.

The rules are :class:`MemoryStore`'s, run over tables instead of dicts (the outbox's in SQL of
its own, over tables shaped for its queries): each operation is one ``BEGIN IMMEDIATE``
transaction (a read, one deferred transaction), so several processes on the host share one
file safely (the busy timeout makes the others wait their turn), and a process killed
mid-operation leaves the file as it was before it.  The database is in WAL mode; work runs in
a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, MutableMapping, Sequence
from dataclasses import replace
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
from sendguard._store.outbox import LOST, Backlog, Claim, Finish, Held, Kept, Letter

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


SCHEMA_VERSION = 2
"""The layout of the tables, kept in the file's ``user_version``.

1: MemoryStore's dicts as key-value tables; 2: and the outbox (a version-1 file gains its
tables when it is opened, its data untouched).
"""

_TABLES = ("suppressed", "used", "soft", "paused", "volume", "tat", "slow", "ramps", "events")

# Times are whole microseconds since the epoch: exact for any datetime (text would need one
# offset and one format to sort right), and compared and ordered as integers.
_OUTBOX = (
    """CREATE TABLE IF NOT EXISTS outbox_letters (
        id TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        data BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        stream TEXT NOT NULL,
        smtputf8 INTEGER NOT NULL,
        original TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox (
        id TEXT PRIMARY KEY,
        letter TEXT NOT NULL,
        recipient TEXT NOT NULL,
        sender_domain TEXT NOT NULL,
        stream TEXT NOT NULL,
        next_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL,
        token TEXT NOT NULL,
        lease_until INTEGER
    )""",
    # A claim reads one stream's due entries in order straight off this index.
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (stream, state, next_at, id)",
    # Only entries under a lease are in it: ending the leases that ran out reads just those.
    "CREATE INDEX IF NOT EXISTS outbox_lease ON outbox (lease_until) WHERE lease_until IS NOT NULL",
    # Whether a letter has entries left, when one goes.
    "CREATE INDEX IF NOT EXISTS outbox_letter ON outbox (letter)",
)


class SQLiteStore(MemoryStore):
    """Suppressions, counters, soft bounces, pauses and the outbox in a SQLite file (``path``).

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
        for statement in _OUTBOX:
            self.db.execute(statement)
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

    def _atomic(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run *work* in one transaction: ``BEGIN IMMEDIATE``, or a deferred one to read."""
        self._fork_check()
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                value = work(self.db)
                self.db.execute("COMMIT")
            except BaseException as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"SQLite {self.path}: {exc}") from exc
                raise
            return value

    def _transaction(self, work: Coroutine[Any, Any, T]) -> T:
        """Run one of MemoryStore's operations (they never await) in one transaction."""
        try:
            return self._atomic(lambda _: _finish(work))
        except BaseException:
            work.close()
            raise

    async def _sql(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """:meth:`_atomic` in a worker thread."""
        return await asyncio.to_thread(self._atomic, work, write=write)

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

    # -- the outbox, in SQL of its own (MemoryStore's rules, not its dicts) -------------------

    async def keep(self, letter: Letter, entries: Sequence[Kept]) -> int:
        """See :meth:`Store.keep`: one transaction."""
        made = _letter_row(letter)
        rows = [_kept_row(e) for e in entries]

        def work(db: sqlite3.Connection) -> int:
            db.execute(
                f"INSERT INTO outbox_letters ({_LETTER}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                made,
            )
            written = 0
            for row in rows:
                written += db.execute(
                    f"INSERT INTO outbox (id, {_KEPT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO NOTHING",
                    row,
                ).rowcount
            return written

        return await self._sql(work)

    async def claim(
        self,
        now: dt.datetime,
        *,
        token: str,
        lease: dt.timedelta,
        limit: int,
        streams: Sequence[str],
    ) -> Claim:
        """See :meth:`Store.claim`: one transaction, the due entries read off an index."""
        at, until = _us(now), _us(now + lease)

        def work(db: sqlite3.Connection) -> Claim:
            _expire_leases(db, at)
            taken: list[Kept] = []
            for stream in streams:
                left = limit - len(taken)
                if left <= 0:
                    break
                rows = db.execute(
                    f"SELECT {_KEPT} FROM outbox"
                    " WHERE stream = ? AND state = ? AND next_at <= ?"
                    " ORDER BY next_at, id LIMIT ?",
                    (stream, Held.WAITING.value, at, left),
                ).fetchall()
                due = [_kept_from(row) for row in rows]
                db.executemany(
                    "UPDATE outbox SET state = ?, token = ?, lease_until = ? WHERE id = ?",
                    [(Held.CLAIMED.value, token, until, e.id) for e in due],
                )
                taken += [
                    replace(e, state=Held.CLAIMED, token=token, lease_until=_time(until))
                    for e in due
                ]
            letters = {}
            for name in dict.fromkeys(e.letter for e in taken):
                found = _letter(db, name)
                if found is not None:
                    letters[name] = found
            return Claim(token, taken, letters)

        return await self._sql(work)

    async def start(self, token: str, ids: Sequence[str], now: dt.datetime) -> list[str]:
        """See :meth:`Store.start`: one transaction."""
        at = _us(now)

        def work(db: sqlite3.Connection) -> list[str]:
            return [
                key
                for key in ids
                if db.execute(
                    "UPDATE outbox SET state = ?"
                    " WHERE id = ? AND state = ? AND token = ? AND lease_until > ?",
                    (Held.SENDING.value, key, Held.CLAIMED.value, token, at),
                ).rowcount
            ]

        return await self._sql(work)

    async def renew(self, token: str, ids: Sequence[str], until: dt.datetime) -> int:
        """See :meth:`Store.renew`: one transaction."""
        if not token:
            return 0
        at = _us(until)

        def work(db: sqlite3.Connection) -> int:
            return sum(
                db.execute(
                    "UPDATE outbox SET lease_until = ?"
                    " WHERE id = ? AND token = ? AND state IN (?, ?)",
                    (at, key, token, Held.CLAIMED.value, Held.SENDING.value),
                ).rowcount
                for key in dict.fromkeys(ids)
            )

        return await self._sql(work)

    async def finish(self, token: str, finished: Sequence[Finish]) -> int:
        """See :meth:`Store.finish`: one transaction."""
        if not token:
            return 0  # an entry nobody holds has the empty token: it is no one's to finish
        changes = [
            (
                done.id,
                None
                if done.state is None
                else (
                    done.state.value,
                    None if done.next_at is None else _us(done.next_at),
                    done.attempts,
                    done.detail,
                    token if done.state is Held.UNCERTAIN else "",
                    done.id,
                ),
            )
            for done in finished
        ]

        def work(db: sqlite3.Connection) -> int:
            applied = 0
            for key, change in changes:
                row = db.execute(
                    "SELECT letter FROM outbox WHERE id = ? AND token = ?", (key, token)
                ).fetchone()
                if row is None:
                    continue
                applied += 1
                if change is None:
                    _delete(db, key, row[0])
                else:
                    db.execute(
                        "UPDATE outbox SET state = ?, next_at = COALESCE(?, next_at),"
                        " attempts = ?, detail = ?, token = ?, lease_until = NULL WHERE id = ?",
                        change,
                    )
            return applied

        return await self._sql(work)

    async def release(self, token: str) -> int:
        """See :meth:`Store.release`: one transaction."""
        if not token:
            return 0

        def work(db: sqlite3.Connection) -> int:
            return db.execute(
                "UPDATE outbox SET state = ?, token = '', lease_until = NULL"
                " WHERE token = ? AND state = ?",
                (Held.WAITING.value, token, Held.CLAIMED.value),
            ).rowcount

        return await self._sql(work)

    async def kept(
        self,
        *,
        after: str = "",
        limit: int = 100,
        stream: str | None = None,
        state: Held | None = None,
    ) -> list[Kept]:
        """See :meth:`Store.kept`: one read, in the order of the primary key."""
        where, args = ["id > ?"], [after]
        if stream is not None:
            where.append("stream = ?")
            args.append(stream)
        if state is not None:
            where.append("state = ?")
            args.append(state.value)

        def work(db: sqlite3.Connection) -> list[Kept]:
            rows = db.execute(
                f"SELECT {_KEPT} FROM outbox WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
                (*args, max(limit, 0)),  # a negative LIMIT is none at all in SQLite
            ).fetchall()
            return [_kept_from(row) for row in rows]

        return await self._sql(work, write=False)

    async def letter(self, letter_id: str) -> Letter | None:
        """See :meth:`Store.letter`: one read."""
        return await self._sql(lambda db: _letter(db, letter_id), write=False)

    async def retry(self, ids: Sequence[str], now: dt.datetime) -> int:
        """See :meth:`Store.retry`: one transaction."""
        at = _us(now)

        def work(db: sqlite3.Connection) -> int:
            made = 0
            for key in ids:
                made += db.execute(
                    "UPDATE outbox SET state = ?, next_at = ?, created_at = ?, token = '',"
                    " lease_until = NULL WHERE id = ? AND state IN (?, ?)",
                    (Held.WAITING.value, at, at, key, Held.WAITING.value, Held.UNCERTAIN.value),
                ).rowcount
            return made

        return await self._sql(work)

    async def drop(self, ids: Sequence[str]) -> int:
        """See :meth:`Store.drop`: one transaction."""

        def work(db: sqlite3.Connection) -> int:
            dropped = 0
            for key in dict.fromkeys(ids):
                row = db.execute(
                    "SELECT letter FROM outbox WHERE id = ? AND state != ?",
                    (key, Held.SENDING.value),
                ).fetchone()
                if row is not None:
                    _delete(db, key, row[0])
                    dropped += 1
            return dropped

        return await self._sql(work)

    async def backlog(self, now: dt.datetime) -> list[Backlog]:
        """See :meth:`Store.backlog`: one read, counted by SQLite."""
        at = _us(now)
        waiting, uncertain = Held.WAITING.value, Held.UNCERTAIN.value

        def work(db: sqlite3.Connection) -> list[Backlog]:
            rows = db.execute(
                "SELECT sender_domain, stream, SUM(state = ?), SUM(state = ? AND next_at <= ?),"
                " SUM(state NOT IN (?, ?)), SUM(state = ?), MIN(created_at)"
                " FROM outbox GROUP BY sender_domain, stream ORDER BY sender_domain, stream",
                (waiting, waiting, at, waiting, uncertain, uncertain),
            ).fetchall()
            return [
                Backlog(domain, stream, waiting, due, claimed, uncertain, _time(oldest))
                for domain, stream, waiting, due, claimed, uncertain, oldest in rows
            ]

        return await self._sql(work, write=False)

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


# -- the outbox's rows -----------------------------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TICK = dt.timedelta(microseconds=1)

_LETTER = "id, sender, data, created_at, message_id, stream, smtputf8, original"
_KEPT = (
    "letter, recipient, sender_domain, stream, next_at, created_at, attempts, state, detail,"
    " token, lease_until"
)
"""The detail of an entry whose lease ran out while it was being sent (MemoryStore's words)."""


def _us(at: dt.datetime) -> int:
    """*at* in whole microseconds since the epoch (a datetime's own resolution: exact)."""
    if at.utcoffset() is None:
        raise ValueError(f"the outbox's times are timezone-aware, not {at!r}")
    return (at - _EPOCH) // _TICK


def _time(us: int) -> dt.datetime:
    """The UTC datetime of :func:`_us`'s microseconds."""
    return _EPOCH + dt.timedelta(microseconds=us)


def _letter_row(letter: Letter) -> tuple[Any, ...]:
    return (
        letter.id,
        letter.sender,
        letter.data,
        _us(letter.created_at),
        letter.message_id,
        letter.stream,
        int(letter.smtputf8),
        letter.original,
    )


def _kept_row(entry: Kept) -> tuple[Any, ...]:
    """The id, then the columns of :data:`_KEPT`."""
    return (
        entry.id,
        entry.letter,
        entry.recipient,
        entry.sender_domain,
        entry.stream,
        _us(entry.next_at),
        _us(entry.created_at),
        entry.attempts,
        entry.state.value,
        entry.detail,
        entry.token,
        None if entry.lease_until is None else _us(entry.lease_until),
    )


def _kept_from(row: Sequence[Any]) -> Kept:
    """The entry of a row of :data:`_KEPT`."""
    letter, recipient, domain, stream, next_at, created, attempts, state, detail, token, lease = row
    return Kept(
        letter,
        recipient,
        domain,
        stream,
        _time(next_at),
        _time(created),
        attempts,
        Held(state),
        detail,
        token,
        None if lease is None else _time(lease),
    )


def _letter(db: sqlite3.Connection, letter_id: str) -> Letter | None:
    row = db.execute(f"SELECT {_LETTER} FROM outbox_letters WHERE id = ?", (letter_id,)).fetchone()
    if row is None:
        return None
    name, sender, data, created, message_id, stream, smtputf8, original = row
    return Letter(name, sender, data, _time(created), message_id, stream, bool(smtputf8), original)


def _expire_leases(db: sqlite3.Connection, at: int) -> None:
    """End the leases run out by *at*: a claim goes back to waiting, a send becomes uncertain."""
    db.execute(
        "UPDATE outbox SET state = ?, token = '', lease_until = NULL"
        " WHERE lease_until <= ? AND state = ?",
        (Held.WAITING.value, at, Held.CLAIMED.value),
    )
    db.execute(
        "UPDATE outbox SET state = ?, lease_until = NULL, detail = ?"
        " WHERE lease_until <= ? AND state = ?",
        (Held.UNCERTAIN.value, LOST, at, Held.SENDING.value),
    )


def _delete(db: sqlite3.Connection, key: str, letter: str) -> None:
    """Delete entry *key*, and its *letter* if that was its last entry."""
    db.execute("DELETE FROM outbox WHERE id = ?", (key,))
    db.execute(
        "DELETE FROM outbox_letters WHERE id = ?"
        " AND NOT EXISTS (SELECT 1 FROM outbox WHERE letter = ?)",
        (letter, letter),
    )


class _Suppressions(_Table):
    """Suppressions keep their JSON (the address is the key)."""

    def __getitem__(self, key: Any) -> Any:  # noqa: ANN401
        return Suppression.from_json(key, super().__getitem__(key))
