"""The Celery app: its broker, store and SMTP server come from the environment of the test."""

from __future__ import annotations

import os

from celery import Celery

from sendguard import Guard, RetryPolicy, SMTPAdapter, SQLiteStore
from sendguard.celery import outbox_task

app = Celery("shop", broker=os.environ["TEST_BROKER"], backend=os.environ["TEST_BROKER"])
app.conf.broker_connection_retry_on_startup = True


def make_guard() -> Guard:
    return Guard(
        adapter=SMTPAdapter("127.0.0.1", int(os.environ["TEST_SMTP_PORT"])),
        store=SQLiteStore(os.environ["TEST_STORE"]),
        retry=RetryPolicy.never(),
    )


deliver = outbox_task(app, make_guard, every=float(os.environ.get("TEST_EVERY", "1")))
