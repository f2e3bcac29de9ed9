"""The ``--guard`` of the chaos test's workers: its store, sink and cap from the environment."""

from __future__ import annotations

import datetime as dt
import os

from sendguard import Guard, RetryPolicy, SMTPAdapter, WarmupSchedule, open_store


def make_guard() -> Guard:
    """A worker's guard: short pauses and deferrals, so a test sees them end."""
    today = dt.datetime.now(dt.UTC).date()
    return Guard(
        adapter=SMTPAdapter("127.0.0.1", int(os.environ["TEST_SMTP_PORT"]), pool_size=4),
        store=open_store(
            os.environ["TEST_STORE"], prefix=os.environ.get("TEST_PREFIX", "sendguard")
        ),
        retry=RetryPolicy(attempts=1, defer_for=0.5),
        warmup=WarmupSchedule.from_table({1: int(os.environ["TEST_CAP"])}, started_on=today),
        pause_for=dt.timedelta(seconds=1),
        transient_pause_for=dt.timedelta(seconds=1),
        journal=False,
    )
