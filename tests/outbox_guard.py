"""A ``--guard`` function as an application writes one, for the CLI worker's tests."""

from __future__ import annotations

import os

from sendguard import Guard, RetryPolicy, SMTPAdapter, SQLiteStore


def make_guard() -> Guard:
    """The app's guard: SMTP to the test's server, the test's store, no in-call retries."""
    return Guard(
        adapter=SMTPAdapter("127.0.0.1", int(os.environ["TEST_SMTP_PORT"])),
        store=SQLiteStore(os.environ["TEST_STORE"]),
        retry=RetryPolicy.never(),
    )
