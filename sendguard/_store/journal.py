"""The journal: outcomes the store could not record, kept until it can.

A delivery's outcome (a suppression the server's reply earned, quota to give back, a pause)
is recorded in the store right after the send.  When the store does not answer then (Redis
stalled, a full disk under SQLite), the mail has left and the outcome must not be lost, nor
the caller told that nothing was sent.  The guard keeps such an outcome here, returns the
send's result, and replays the journal into the store at its next operations.

Every outcome is written here before its store call (so a process killed while the call is in
flight loses nothing) and forgotten when the call returns; only those whose call failed or
timed out are replayed.  Each entry carries a unique event id, so a replay of an outcome that
the store did record after all (it stalled after the write, or answered after the guard
stopped waiting) changes nothing: the store remembers event ids.

On disk the journal is a directory of JSON-lines files, one per guard, each locked (``flock``)
for as long as its guard lives.  A file whose lock can be taken belongs to a process that is
gone (killed mid-send, say); the next guard on the same directory adopts its entries.  Until
an entry is recorded its suppressions and pauses also hold in this process: the next send
does not mail an address the journal says is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from sendguard._models import Suppression
from sendguard._pacing.breaker import Breaker
from sendguard._store import Outcome, Pause, Quota, SoftBouncePolicy

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: files are kept but never adopted
    fcntl = None  # type: ignore[assignment]

__all__ = ["Journal", "outcome_from_json", "outcome_to_json"]


def _pause_json(pause: Pause) -> dict[str, str]:
    return {
        "sender_domain": pause.sender_domain,
        "recipient_domain": pause.recipient_domain,
        "until": pause.until.isoformat(),
        "reason": pause.reason,
        "detail": pause.detail,
    }


def outcome_to_json(outcome: Outcome) -> str:
    """One line of JSON that :func:`outcome_from_json` reads back (the breaker as a flag)."""
    quota = outcome.quota
    data: dict[str, Any] = {
        "now": outcome.now.isoformat(),
        "quota": [quota.sender_domain, quota.day.isoformat(), quota.cap] if quota else None,
        "give_back": outcome.give_back,
        "suppressions": [[e.address, e.to_json()] for e in outcome.suppressions],
        "soft_failures": [[e.address, e.to_json()] for e in outcome.soft_failures],
        "soft_resets": list(outcome.soft_resets),
        "pauses": [_pause_json(p) for p in outcome.pauses],
        "soft_policy": [outcome.soft_policy.threshold, outcome.soft_policy.span.total_seconds()],
        "sender_domain": outcome.sender_domain,
        "breaker": outcome.breaker is not None,
        "bounces": outcome.bounces,
        "complaints": outcome.complaints,
        "slowdowns": list(outcome.slowdowns),
        "event_id": outcome.event_id,
        "remember": outcome.remember.total_seconds(),
        "slow_max": outcome.slow_max,
        "recover": outcome.recover.total_seconds(),
    }
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def outcome_from_json(line: str, *, breaker: Breaker | None) -> Outcome:
    """The outcome of a journal line, counted for *breaker* if it was counted for one."""
    data: dict[str, Any] = json.loads(line)
    quota = data["quota"]
    threshold, span = data["soft_policy"]
    return Outcome(
        now=dt.datetime.fromisoformat(data["now"]),
        quota=Quota(quota[0], dt.date.fromisoformat(quota[1]), int(quota[2])) if quota else None,
        give_back=int(data["give_back"]),
        suppressions=[Suppression.from_json(a, j) for a, j in data["suppressions"]],
        soft_failures=[Suppression.from_json(a, j) for a, j in data["soft_failures"]],
        soft_resets=[str(k) for k in data["soft_resets"]],
        pauses=[
            Pause(
                p["sender_domain"],
                p["recipient_domain"],
                dt.datetime.fromisoformat(p["until"]),
                p["reason"],
                p["detail"],
            )
            for p in data["pauses"]
        ],
        soft_policy=SoftBouncePolicy(int(threshold), dt.timedelta(seconds=float(span))),
        sender_domain=str(data["sender_domain"]),
        breaker=breaker if data["breaker"] else None,
        bounces=int(data["bounces"]),
        complaints=int(data["complaints"]),
        slowdowns=[str(s) for s in data["slowdowns"]],
        event_id=str(data["event_id"]),
        remember=dt.timedelta(seconds=float(data["remember"])),
        slow_max=int(data["slow_max"]),
        recover=dt.timedelta(seconds=float(data["recover"])),
    )


class Journal:
    """Unrecorded outcomes, in memory and (with a *directory*) in a file of this guard's."""

    def __init__(self, directory: Path | None, *, breaker: Breaker | None = None) -> None:
        self.directory = directory
        self._breaker = breaker
        self.entries: list[Outcome] = []
        """Outcomes to replay: their store call failed, or their guard is gone."""
        self._ahead: dict[str, Outcome] = {}
        """Outcomes whose store call is in flight."""
        self._file: IO[str] | None = None
        self._path: Path | None = None
        self._adopted = False
        self._lock = threading.Lock()
        self.durable = True
        """False once an entry could be kept in memory only (its file could not be written)."""

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def _held(self) -> list[Outcome]:
        return [*self.entries, *self._ahead.values()]

    def suppression(self, key: str) -> Suppression | None:
        """A suppression of *key* the journal holds that the store may not have yet."""
        for outcome in self._held():
            for entry in outcome.suppressions:
                if entry.address == key:
                    return entry
        return None

    def forget(self, key: str) -> bool:
        """Drop the suppressions of *key* (unsuppressed) from what is held; were there any."""

        def without(outcome: Outcome) -> Outcome:
            kept = [e for e in outcome.suppressions if e.address != key]
            return replace(outcome, suppressions=kept)

        if self.suppression(key) is None:
            return False
        self.entries = [without(o) for o in self.entries]
        self._ahead = {k: without(o) for k, o in self._ahead.items()}
        if self.directory is not None:
            left = "".join(outcome_to_json(e) + "\n" for e in self._held())
            self._write(left, append=False, sync=True)
        return True

    def pause(self, sender_domain: str, recipient_domain: str, now: dt.datetime) -> Pause | None:
        """A pause the journal holds for this sender toward this domain (or all), in force."""
        for outcome in self._held():
            for pause in outcome.pauses:
                if (
                    pause.sender_domain == sender_domain
                    and pause.recipient_domain in (recipient_domain, "*")
                    and pause.until > now
                ):
                    return pause
        return None

    def _register(self, outcome: Outcome) -> str:
        if not outcome.event_id:
            raise ValueError("a journaled outcome needs an event id, so replays are idempotent")
        self._ahead[outcome.event_id] = outcome
        return outcome_to_json(outcome) + "\n"

    async def ahead(self, outcome: Outcome) -> None:
        """Write *outcome* (with an event id) down before its store call is made.

        It holds in memory at once; the write and its fsync run in a worker thread, so the
        event loop goes on serving other sends meanwhile.
        """
        line = self._register(outcome)
        if self.directory is not None:
            await asyncio.to_thread(self._write, line, append=True, sync=True)

    def kept(self, outcome: Outcome) -> bool:
        """The store call of *outcome* failed: replay it.  False if it has landed meanwhile."""
        held = self._ahead.pop(outcome.event_id, None)
        if held is None:
            return False
        self.entries.append(held)  # as held: an unsuppress may have changed it since
        return True

    def add(self, outcome: Outcome) -> None:
        """Keep *outcome* (with an event id) for the replay."""
        line = self._register(outcome)
        if self.directory is not None:
            self._write(line, append=True, sync=True)
        self.kept(outcome)

    def done(self, outcome: Outcome) -> None:
        """*outcome* is in the store now: forget it."""
        before = len(self.entries) + len(self._ahead)
        self._ahead.pop(outcome.event_id, None)
        self.entries = [e for e in self.entries if e.event_id != outcome.event_id]
        if len(self.entries) + len(self._ahead) != before and self.directory is not None:
            # Not synced: should this rewrite be lost, the entry is replayed and, recorded
            # already, changes nothing (its event id).
            left = "".join(outcome_to_json(e) + "\n" for e in self._held())
            self._write(left, append=False, sync=False)

    def adopt(self) -> int:
        """Take over the entries of journal files whose guard is gone; how many were taken.

        Done once per journal; a file that is still locked belongs to a live guard.
        """
        if self._adopted or self.directory is None or fcntl is None:
            return 0
        self._adopted = True
        taken: list[Outcome] = []
        try:
            candidates = sorted(self.directory.glob("*.jsonl"))
        except OSError:
            return 0
        for path in candidates:
            if path == self._path:
                continue
            with contextlib.suppress(OSError), path.open("r+", encoding="utf-8") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its guard is alive and replays it itself
                found = list(self._read(handle.read()))
                for outcome in found:
                    self.add(outcome)  # written to this guard's own file before the old goes
                path.unlink()
                taken.extend(found)
        return len(taken)

    def _read(self, text: str) -> Iterator[Outcome]:
        seen: set[str] = set()
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                outcome = outcome_from_json(line, breaker=self._breaker)
            except (ValueError, KeyError, TypeError, IndexError):
                continue  # a line cut short when its process was killed mid-write
            if outcome.event_id not in seen:  # written twice (an append beside a rewrite)
                seen.add(outcome.event_id)
                yield outcome

    def _write(self, text: str, *, append: bool, sync: bool) -> None:
        with self._lock:  # appends run in worker threads, rewrites on the loop
            self._write_locked(text, append=append, sync=sync)

    def _write_locked(self, text: str, *, append: bool, sync: bool) -> None:
        try:
            handle = self._open()
            if not append:
                handle.seek(0)
                handle.truncate()
            handle.write(text)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        except OSError:
            self.durable = False  # a full disk: the entry is still kept in memory

    def _open(self) -> IO[str]:
        if self._file is None:
            assert self.directory is not None  # noqa: S101 (checked by the caller)
            self.directory.mkdir(parents=True, exist_ok=True)
            self._path = self.directory / f"{os.getpid()}-{secrets.token_hex(6)}.jsonl"
            handle = self._path.open("a+", encoding="utf-8")
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            self._file = handle
        return self._file

    def close(self) -> None:
        """Release this guard's file; it is removed when nothing is left in it.

        What is left is the file's from now on: the next guard on the directory (this one
        too, used again) adopts it, so no entry lives on in two places.
        """
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._file is None:
            return
        handle, self._file, path, self._path = self._file, None, self._path, None
        if self._held():
            self.entries, self._ahead, self._adopted = [], {}, False
        elif path is not None:
            with contextlib.suppress(OSError):
                path.unlink()
        handle.close()


def with_event_id(outcome: Outcome) -> Outcome:
    """*outcome* with an event id of its own, if it has none, so that it is recorded once."""
    if outcome.event_id:
        return outcome
    return replace(outcome, event_id=f"sendguard\t{secrets.token_hex(16)}")
