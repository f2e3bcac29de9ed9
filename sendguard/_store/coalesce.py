"""Coalescing concurrent requests into one call: fewer round trips under load, none added."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

Req = TypeVar("Req")
Res = TypeVar("Res")


class Coalescer(Generic[Req, Res]):
    """Runs ``call`` on batches of requests, one batch in flight at a time.

    A request made while nothing is in flight goes out at once, alone; requests made while a
    batch is in flight wait for it and then go out together in the next one.  So a lone
    caller pays no extra latency, and N concurrent callers share far fewer round trips.
    ``call`` gets the requests in order and returns one result per request; if it raises,
    every request of that batch gets the exception.  The result of a request whose caller
    stopped waiting (cancelled) goes to ``orphaned``, so that what it did can be undone.
    """

    def __init__(
        self,
        call: Callable[[Sequence[Req]], Awaitable[Sequence[Res]]],
        *,
        orphaned: Callable[[Req, Res], None] | None = None,
    ) -> None:
        self._call = call
        self._orphaned = orphaned
        self._queue: list[tuple[Req, asyncio.Future[Res]]] = []
        self._drain: asyncio.Task[None] | None = None

    async def submit(self, request: Req) -> Res:
        """Queue *request* and wait for its result."""
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._drain is None:
            self._drain = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self._call([request for request, _ in batch])
                except Exception as exc:  # noqa: BLE001 (handed to every waiting caller)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (request, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                    elif self._orphaned is not None:  # its caller stopped waiting
                        self._orphaned(request, result)
        finally:
            self._drain = None
            for _, future in self._queue:  # only when this task itself was cancelled
                future.cancel()
            self._queue = []

    async def aclose(self) -> None:
        """Wait for the batch in flight, if any."""
        if self._drain is not None:
            await asyncio.shield(self._drain)
