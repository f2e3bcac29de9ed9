"""Drive the outbox from Celery: a periodic task that sends what is due.

For an app that already runs Celery workers (and beat) instead of a ``sendguard worker``::

    from celery import Celery
    from sendguard.celery import outbox_task

    app = Celery("shop", broker="redis://localhost:6379/0")
    deliver = outbox_task(app, make_guard, every=30)  # make_guard() -> sendguard.Guard

Django projects pass ``sendguard_django.worker_guard`` (the project's guard, its backend and
store).  Each run builds the guard on the task's own event loop, claims and sends what is due
until nothing due is left (or ``max_passes``), closes the guard and returns the counts.  Runs
that overlap (several workers, a slow run and the next beat) share the work safely: claims
are atomic and leased, as for any worker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from sendguard._errors import ConfigurationError
from sendguard._guard import Guard
from sendguard._guard.outbox import drain

__all__ = ["drain", "outbox_task"]


def outbox_task(
    app: Any,  # noqa: ANN401 (a celery.Celery; Celery is untyped and optional)
    guard: Callable[[], Guard],
    *,
    every: float = 30.0,
    name: str = "sendguard.deliver_outbox",
    limit: int = 100,
    concurrency: int = 8,
    lease: dt.timedelta = dt.timedelta(minutes=5),
) -> Any:  # noqa: ANN401 (a celery Task)
    """Register the task *name* on the Celery *app*, run by beat every *every* seconds.

    *guard* makes the app's :class:`Guard` (called once per run, on the run's loop).  The
    task returns the run's counts (``OutboxRun.summary()``).  ``every=0`` registers the task
    without a beat entry (schedule it yourself).
    """
    if not callable(guard):
        raise ConfigurationError(f"outbox_task(guard=...) must make a Guard, not {guard!r}")

    async def run() -> dict[str, int]:
        made = guard()
        if not isinstance(made, Guard):
            raise ConfigurationError(f"outbox_task: guard() made {made!r}, not a sendguard.Guard")
        async with made:
            counts = await drain(made, limit=limit, lease=lease, concurrency=concurrency)
        return counts.summary()

    def deliver_outbox() -> dict[str, int]:
        return asyncio.run(run())

    deliver_outbox.__doc__ = "Send the mail of sendguard's outbox that is due now."
    task = app.task(name=name, ignore_result=False)(deliver_outbox)
    if every:
        app.conf.beat_schedule = {
            **(app.conf.beat_schedule or {}),
            name: {"task": name, "schedule": float(every)},
        }
    return task
