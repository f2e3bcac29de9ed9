"""Recording: every outcome reaches the store once, even when the store stalls or the caller leaves.

The recorder owns the guard's event-loop binding, its background tasks and the journal.  A
send's outcome is written ahead to the journal, then settled in one store call that a cancelled
caller does not cancel; one the store did not take in time stays in the journal and is replayed
(oldest first) before the next operation.  The breaker's verdict on the volume the store returns
is logged (and handed to ``Breaker.on_warn``) here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, TypeVar

from sendguard._errors import ConfigurationError, StoreError
from sendguard._guard._common import log, newly_suppressed
from sendguard._pacing.breaker import BreakerEvent
from sendguard._store import Outcome, Pause, Settled
from sendguard._store.journal import Journal, with_event_id

if TYPE_CHECKING:
    from sendguard._guard.facade import Guard

__all__ = ["Recorder"]

_T = TypeVar("_T")


class Recorder:
    """Binds the guard to its loop, bounds store calls, and records outcomes durably."""

    def __init__(self, guard: Guard, journal: Journal) -> None:
        self._guard = guard
        self.journal = journal
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[object]] = set()
        self._replaying: asyncio.Task[None] | None = None

    # -- the event loop ----------------------------------------------------------------------

    def enter(self) -> None:
        """Before any work: make sure the guard works on this loop; replay the journal."""
        self._bind_loop()
        if self.journal.adopt():  # once per journal file (again after aclose)
            log.warning(
                "sendguard.journal_adopted",
                entries=len(self.journal),
                directory=str(self.journal.directory),
            )
        if self.journal and self._replaying is None:
            self._replaying = self.spawn(self._replay())

    def _bind_loop(self) -> None:
        """Work on the running loop; on a new one, drop what belonged to the old (ended) one."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            old = self._loop
            if old is not None and not old.is_closed() and old.is_running():
                raise ConfigurationError(
                    "this Guard is in use on another running event loop: make one Guard per "
                    "loop, or use SyncGuard from threads"
                )
            if old is not None:
                # asyncio.run() per job: the old loop's connections are gone with it.
                self._guard.adapter.on_new_loop()
                self._guard.store.on_new_loop()
                self._background.clear()
                self._replaying = None
            self._loop = loop

    def spawn(self, work: Coroutine[object, object, _T]) -> asyncio.Task[_T]:
        """Run *work* in the background, kept until it is done (``drain`` waits for it)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self) -> None:
        """Wait (``store_timeout`` at most) for background writes, then replay the journal."""
        if self._loop is None:
            return
        self._bind_loop()  # closed from a later asyncio.run(): drop the old connections
        if self._background:
            await asyncio.wait(list(self._background), timeout=self._guard.store_timeout)
        if self.journal:
            await self._replay()

    # -- store calls -------------------------------------------------------------------------

    async def bounded(self, work: Awaitable[_T], operation: str) -> _T:
        """Await a store call, at most ``store_timeout`` seconds (a StoreError after that)."""
        timeout = self._guard.store_timeout
        try:
            async with asyncio.timeout(timeout):
                return await work
        except TimeoutError as exc:
            raise StoreError(
                f"the store gave no answer to {operation} within {timeout:g} s"
            ) from exc

    async def settle(self, outcome: Outcome) -> list[str] | None:
        """Record a send's outcome in one store call; the keys it newly suppressed.

        ``None`` when the store did not record it in time: the outcome is then kept in the
        journal (with an event id of its own, so a late or repeated write counts once) and
        replayed when the store answers.  A cancelled caller does not cancel the write.
        """
        if outcome.empty:
            return []  # the common case: everything accepted, nothing to record
        outcome = with_event_id(outcome)
        try:
            # Written ahead: a process killed while the store call is in flight loses nothing.
            await self.journal.ahead(outcome)
        except asyncio.CancelledError:
            self._keep(outcome)  # the store call was never made: the replay makes it
            raise
        pending = asyncio.ensure_future(self.record(outcome))
        pending.add_done_callback(lambda done: self._landed(outcome, done))
        try:
            settled = await self.bounded(asyncio.shield(pending), "settle")
        except StoreError as exc:
            log.error("sendguard.store_error", operation="settle", error=str(exc))
            self._keep(outcome)
            return None
        except asyncio.CancelledError:
            self._keep(outcome)
            raise
        return newly_suppressed(outcome, settled)

    async def record(self, outcome: Outcome) -> Settled:
        """Settle *outcome* and act on what the breaker says of the sender's volume."""
        settled = await self._guard.store.settle(outcome)
        breaker = self._guard.breaker
        if breaker is None or settled.volume is None:
            return settled
        verdict = breaker.verdict(settled.volume)
        if verdict is None:
            return settled
        level, why = verdict
        if level == "pause" and not settled.tripped:
            return settled  # already paused by an earlier trip: said then
        event = BreakerEvent(outcome.sender_domain, settled.volume, level, why)
        say = log.error if level == "pause" else log.warning
        say(
            "sendguard.breaker",
            sender_domain=outcome.sender_domain,
            level=level,
            why=why,
            sends=settled.volume.sends,
            bounces=settled.volume.bounces,
            complaints=settled.volume.complaints,
        )
        if breaker.on_warn is not None:
            breaker.on_warn(event)
        return settled

    # -- the journal -------------------------------------------------------------------------

    async def _replay(self) -> None:
        """Record the journal's outcomes, oldest first, until the store fails again."""
        redact = self._guard._redact
        try:
            while self.journal:
                outcome = self.journal.entries[0]
                try:
                    settled = await self.bounded(self.record(outcome), "replay")
                except StoreError:
                    return  # still down: the next operation tries again
                self.journal.done(outcome)
                log.warning(
                    "sendguard.journal_replayed",
                    suppressed=[redact(k) for k in newly_suppressed(outcome, settled)],
                    duplicate=settled.duplicate,
                    left=len(self.journal),
                )
        finally:
            self._replaying = None

    def _keep(self, outcome: Outcome) -> None:
        """*outcome* was not recorded in time: keep it for the replay (unless it landed)."""
        if not self.journal.kept(outcome):
            return
        log.error(
            "sendguard.journaled",
            suppressions=[self._guard._redact(e.address) for e in outcome.suppressions],
            give_back=outcome.give_back,
            pauses=len(outcome.pauses),
            durable=self.journal.durable,
            action="kept in the journal; replayed when the store answers",
        )

    def _landed(self, outcome: Outcome, done: asyncio.Future[Settled]) -> None:
        """The store call of *outcome* ended: if it recorded it, the journal forgets it."""
        if not done.cancelled() and done.exception() is None:
            self.journal.done(outcome)


def log_pause(pause: Pause) -> None:
    """Say that a sender is paused toward a domain (or everywhere)."""
    log.warning(
        "sendguard.sender_paused",
        sender_domain=pause.sender_domain,
        recipient_domain=pause.recipient_domain,
        reason=pause.reason,
        until=pause.until.isoformat(),
        detail=pause.detail,
    )
