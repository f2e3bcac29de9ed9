"""A real Celery worker (with its beat) on a Redis broker drives the outbox.

The test keeps two messages (a 451 that has to wait, then a warmup cap), starts ``celery
worker -B`` as a subprocess with the app of ``tests/celery_project``, and waits until beat's
periodic task has sent them, once each; a task called by hand answers with its counts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from sendguard import DeliveryStatus, RetryPolicy, SMTPAdapter, SQLiteStore, SyncGuard
from sendguard.testing import ScriptedSMTPServer

Celery = pytest.importorskip("celery").Celery
ROOT = Path(__file__).resolve().parent.parent


def mail(to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "shop@s.example"
    message["To"] = to
    message["Subject"] = "Your order"
    message.set_content("Thanks.\n")
    return message


def test_a_celery_beat_task_sends_what_the_outbox_keeps(redis_url: str, tmp_path: Path) -> None:
    store_path = tmp_path / "sendguard.db"
    with ScriptedSMTPServer().in_thread() as server:
        server.script("slow@x.example", "451 4.7.1 greylisted", "250 2.1.5 ok")
        with SyncGuard(
            adapter=SMTPAdapter("127.0.0.1", server.port),
            store=SQLiteStore(store_path),
            retry=RetryPolicy(attempts=1, defer_for=0),
        ) as guard:
            result = guard.send(mail("slow@x.example"))
            kept = result.recipients["slow@x.example"]
            assert kept.status is DeliveryStatus.DEFERRED
            assert kept.kept
        assert server.accepted == []
        env = {
            **os.environ,
            "TEST_BROKER": redis_url,
            "TEST_STORE": str(store_path),
            "TEST_SMTP_PORT": str(server.port),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        worker = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.celery_project.app",
                "worker",
                "-B",
                "--pool=solo",
                "--loglevel=INFO",
                f"--schedule={tmp_path / 'beat-schedule'}",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert worker.stdout is not None
        try:
            deadline = time.monotonic() + 60
            while server.accepted != ["slow@x.example"] and time.monotonic() < deadline:
                assert worker.poll() is None, worker.stdout.read().decode()
                time.sleep(0.2)
            assert server.accepted == ["slow@x.example"]
            # A task sent by hand through the broker: nothing left to do, and it says so.
            client = Celery("client", broker=redis_url, backend=redis_url)
            counts = client.send_task("sendguard.deliver_outbox").get(timeout=30)
            assert counts["claimed"] == 0
            assert set(counts) >= {"delivered", "waiting", "uncertain", "expired"}
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            worker.stdout.close()
    assert server.rcpt_log == ["slow@x.example", "slow@x.example"]  # once refused, once sent
    store = SQLiteStore(store_path)
    try:
        assert asyncio.run(store.kept()) == []
    finally:
        asyncio.run(store.aclose())
