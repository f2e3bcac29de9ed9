"""SyncGuard: the guard for code that does not use asyncio (Django, Flask, scripts, threads).

One event loop runs in a background thread for the guard's lifetime; the pooled SMTP and Redis
connections live on it.  Every method hands its work to that loop and blocks until it is done,
so a SyncGuard is safe to call from many threads at once, and from code that has an event loop
of its own running (that loop is blocked for the call, as with any blocking call).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import Future
from datetime import timedelta
from email.message import Message
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from sendguard._adapter import Adapter
from sendguard._bounces.classify import Rules
from sendguard._bounces.dsn import BounceReport
from sendguard._bounces.events import DeliveryEvent
from sendguard._errors import ConfigurationError
from sendguard._guard import Clock, Guard, Sleep, utcnow
from sendguard._guard.outbox import OutboxEvent, OutboxRun
from sendguard._models import SendResult, Suppression
from sendguard._options import check_seconds
from sendguard._pacing.breaker import Breaker, SenderStatus
from sendguard._pacing.retry import RetryPolicy
from sendguard._pacing.shaping import Shaping
from sendguard._pacing.warmup import WarmupSchedule
from sendguard._store import Pause, SoftBouncePolicy, Store
from sendguard._store.outbox import Backlog

__all__ = ["SyncGuard"]

T = TypeVar("T")


class SyncGuard:
    """A :class:`Guard` with blocking methods; takes the same (typed) options as ``Guard``.

    Unlike ``Guard``, it does not retry inside a call by default: with the outbox on
    (``keep=True``) a send makes one attempt and keeps what is still failing for a worker
    (``sendguard worker``), so a web request never sleeps through a greylisting server's
    wait.  Give ``retry=`` to retry in the call anyway.

    ``timeout`` (seconds, default none) bounds each call; a call that runs out raises
    :class:`TimeoutError` (the work itself goes on in the background).  Call :meth:`close`
    when done (or use ``with``), which waits for calls in flight and closes the connections.
    """

    def __init__(
        self,
        *,
        adapter: Adapter | None = None,
        store: Store | None = None,
        retry: RetryPolicy | None = None,
        warmup: WarmupSchedule | None = None,
        rules: Rules | None = None,
        pause_for: timedelta = timedelta(hours=1),
        transient_pause_for: timedelta = timedelta(minutes=15),
        soft_bounce: SoftBouncePolicy | None = None,
        bounce_secret: str | bytes | None = None,
        breaker: Breaker | None = None,
        shaping: Shaping | None = None,
        spread_over: timedelta | None = None,
        spread_burst: float = 0.05,
        on_store_error: Literal["raise", "send"] = "raise",
        store_timeout: float = 10.0,
        journal: str | os.PathLike[str] | Literal[False] | None = None,
        redact_addresses: bool = True,
        keep: bool = True,
        streams: Mapping[str, float] | None = None,
        stream: str | None = None,
        max_age: timedelta = timedelta(days=5),
        on_outbox: Callable[[OutboxEvent], object] | None = None,
        clock: Clock = utcnow,
        sleep: Sleep = asyncio.sleep,
        timeout: float | None = None,
    ) -> None:
        # Guard's options, spelled out so that type checkers see them (a test keeps the two
        # signatures in step); the guard itself is built on the loop, below.
        if timeout is not None:
            check_seconds("SyncGuard", "timeout", timeout)
        self.timeout = timeout
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sendguard-loop", daemon=True
        )
        self._thread.start()
        self._closed = False
        self._idle = threading.Condition()
        self._inflight = 0

        if retry is None and keep:
            # No sleeping in the caller's thread (a web request): one attempt, and what is
            # still failing waits in the outbox for a worker.
            retry = RetryPolicy.never()

        async def build() -> Guard:
            return Guard(
                adapter=adapter,
                store=store,
                retry=retry,
                warmup=warmup,
                rules=rules,
                pause_for=pause_for,
                transient_pause_for=transient_pause_for,
                soft_bounce=soft_bounce,
                bounce_secret=bounce_secret,
                breaker=breaker,
                shaping=shaping,
                spread_over=spread_over,
                spread_burst=spread_burst,
                on_store_error=on_store_error,
                store_timeout=store_timeout,
                journal=journal,
                redact_addresses=redact_addresses,
                keep=keep,
                streams=streams,
                stream=stream,
                max_age=max_age,
                on_outbox=on_outbox,
                clock=clock,
                sleep=sleep,
            )

        try:
            self.guard: Guard = self._call(build())
        except BaseException:
            self._stop()
            raise

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            work.close()
            raise ConfigurationError(
                "SyncGuard called from its own event loop: use the async Guard"
            )
        if self.forked:
            work.close()
            raise ConfigurationError(
                f"this SyncGuard was made in process {self._pid}, before a fork: its thread and "
                "connections stayed there; make one in each process (the Django and Flask "
                "integrations do)"
            )
        with self._idle:
            if self._closed:
                work.close()
                raise ConfigurationError("this SyncGuard is closed")
            self._inflight += 1
        try:
            future: Future[T] = asyncio.run_coroutine_threadsafe(work, self._loop)
            return future.result(self.timeout)
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    @property
    def forked(self) -> bool:
        """Whether this is a child of a fork of the process that made the guard: unusable."""
        return os.getpid() != self._pid

    def close(self) -> None:
        """Wait for calls in flight, close the connections and stop the thread.

        Calls made after ``close`` raise :class:`ConfigurationError`.  In a child of a fork
        it only marks the guard closed: the thread and connections are the parent's.
        """
        if self.forked:
            self._closed = True
            return
        with self._idle:
            if self._closed:
                return
            self._closed = True
            self._idle.wait_for(lambda: self._inflight == 0)

        async def finish() -> None:
            await self.guard.aclose()
            # Closed transports give their sockets back on the loop's next turns.
            for _ in range(3):
                await asyncio.sleep(0)

        try:
            asyncio.run_coroutine_threadsafe(finish(), self._loop).result(self.timeout)
        finally:
            self._stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the Guard's methods, blocking ---------------------------------------------------------

    def send(
        self,
        message: Message,
        /,
        *,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
        original: object = None,
        stream: str | None = None,
    ) -> SendResult:
        """See :meth:`Guard.send`."""
        return self._call(
            self.guard.send(
                message, sender=sender, recipients=recipients, original=original, stream=stream
            )
        )

    def deliver_outbox(
        self,
        *,
        limit: int = 100,
        lease: timedelta = timedelta(minutes=5),
        concurrency: int = 8,
    ) -> OutboxRun:
        """See :meth:`Guard.deliver_outbox`."""
        return self._call(
            self.guard.deliver_outbox(limit=limit, lease=lease, concurrency=concurrency)
        )

    def backlog(self) -> list[Backlog]:
        """See :meth:`Guard.backlog`."""
        return self._call(self.guard.backlog())

    def suppress(
        self, address: str, *, reason: str = "manual", detail: str = "", source: str = "manual"
    ) -> Suppression:
        """See :meth:`Guard.suppress`."""
        return self._call(self.guard.suppress(address, reason=reason, detail=detail, source=source))

    def unsuppress(self, address: str) -> bool:
        """See :meth:`Guard.unsuppress`."""
        return self._call(self.guard.unsuppress(address))

    def is_suppressed(self, address: str) -> bool:
        """See :meth:`Guard.is_suppressed`."""
        return self._call(self.guard.is_suppressed(address))

    def suppression(self, address: str) -> Suppression | None:
        """See :meth:`Guard.suppression`."""
        return self._call(self.guard.suppression(address))

    def soft_bounces(self, address: str) -> int:
        """See :meth:`Guard.soft_bounces`."""
        return self._call(self.guard.soft_bounces(address))

    def pauses(self, sender_domain: str) -> list[Pause]:
        """See :meth:`Guard.pauses`."""
        return self._call(self.guard.pauses(sender_domain))

    def resume(self, sender_domain: str) -> int:
        """See :meth:`Guard.resume`."""
        return self._call(self.guard.resume(sender_domain))

    def status(self, sender_domain: str) -> SenderStatus:
        """See :meth:`Guard.status`."""
        return self._call(self.guard.status(sender_domain))

    def ingest_bounce(self, raw: bytes | str | Message, /) -> list[BounceReport]:
        """See :meth:`Guard.ingest_bounce`."""
        return self._call(self.guard.ingest_bounce(raw))

    def ingest_events(self, events: Iterable[DeliveryEvent], /) -> list[DeliveryEvent]:
        """See :meth:`Guard.ingest_events`."""
        return self._call(self.guard.ingest_events(list(events)))
