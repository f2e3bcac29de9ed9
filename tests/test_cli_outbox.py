"""``sendguard worker`` and ``sendguard outbox ...`` on a SQLite store, as a person uses them."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sendguard import (
    Guard,
    Held,
    Reply,
    RetryPolicy,
    SMTPAdapter,
    SQLiteStore,
    Stage,
    WarmupSchedule,
)
from sendguard.cli import app
from sendguard.testing import FakeClock, RecordingAdapter, ScriptedSMTPServer

ROOT = Path(__file__).resolve().parent.parent


def mail(to: str, subject: str = "Hello") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "app@s.example"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Body.\n")
    return message


def keep(path: Path, *recipients: str, lost: str = "") -> list[str]:
    """Keep one message per recipient (over a cap of 0); *lost* gets an uncertain delivery."""

    async def work() -> list[str]:
        replies = {lost: [Reply(None, "connection lost after the dot", Stage.DATA_END)]}
        schedule = WarmupSchedule([0], started_on=dt.date(2026, 1, 1))
        async with Guard(
            adapter=RecordingAdapter(replies), store=SQLiteStore(path), warmup=schedule
        ) as guard:
            ids = [(await guard.send(mail(r))).outbox_id or "" for r in recipients]
        if lost:
            async with Guard(adapter=RecordingAdapter(replies), store=SQLiteStore(path)) as guard:
                ids.append((await guard.send(mail(lost))).outbox_id or "")
        return ids

    return asyncio.run(work())


def cli(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"SENDGUARD_STORE": f"sqlite:///{path}"})
    return result.exit_code, result.stdout


def test_list_show_retry_drop_and_purge(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    first, second, uncertain = keep(db, "a@x.example", "b@x.example", lost="c@x.example")
    code, out = cli(db, "outbox", "list")
    assert code == 0
    assert "s.example transactional: 2 waiting (0 due), 0 being sent, 1 uncertain" in out
    assert f"{first}:a@x.example\ttransactional\twaiting\t" in out
    assert f"{uncertain}:c@x.example\ttransactional\tuncertain\t" in out
    code, out = cli(db, "outbox", "list", "--state", "uncertain")
    assert out.count(":c@x.example") == 1
    assert ":a@x.example" not in out
    code, out = cli(db, "outbox", "show", first)
    assert code == 0
    assert "sender      app@s.example" in out
    assert "a@x.example: waiting" in out
    code, out = cli(db, "outbox", "show", first, "--raw")
    assert "Subject: Hello" in out
    assert "Message-ID: <" in out
    assert cli(db, "outbox", "show", "nonesuch")[0] == 1
    # A person decides the uncertain one should go again: it is due now.
    code, out = cli(db, "outbox", "retry", uncertain)
    assert (code, out) == (0, "1 due now\n")
    code, out = cli(db, "outbox", "drop", f"{second}:b@x.example")
    assert (code, out) == (0, "dropped 1\n")
    assert cli(db, "outbox", "drop", f"{second}:b@x.example") == (1, "dropped 0\n")
    assert cli(db, "outbox", "purge") == (0, "would drop 2\n")
    assert cli(db, "outbox", "purge", "--yes") == (0, "dropped 2\n")
    assert cli(db, "outbox", "list")[1] == "the outbox is empty\n"


def test_status_shows_the_senders_backlog(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    keep(db, "a@x.example", "b@x.example")
    code, out = cli(db, "status", "s.example")
    assert code == 0
    assert "outbox      transactional: 2 waiting (0 due), 0 being sent, 0 uncertain" in out
    code, out = cli(db, "status", "other.example")
    assert "outbox      empty" in out


def test_worker_once_sends_what_is_due_with_the_apps_guard(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with ScriptedSMTPServer().in_thread() as server:
        server.script("slow@x.example", "451 4.7.1 later", "250 ok")

        async def first() -> None:
            async with Guard(
                adapter=SMTPAdapter("127.0.0.1", server.port),
                store=SQLiteStore(db),
                retry=RetryPolicy(attempts=1, defer_for=0),
            ) as guard:
                assert (await guard.send(mail("slow@x.example"))).kept

        asyncio.run(first())
        env = {"SENDGUARD_STORE": f"sqlite:///{db}", "TEST_STORE": str(db)}
        env["TEST_SMTP_PORT"] = str(server.port)
        result = CliRunner().invoke(
            app, ["worker", "--once", "--guard", "tests.outbox_guard:make_guard"], env=env
        )
        assert result.exit_code == 0, result.output
        assert "delivered 1" in result.stdout
        assert server.accepted == ["slow@x.example"]
    bad = CliRunner().invoke(app, ["worker", "--once", "--guard", "tests.outbox_guard:nothing"])
    assert bad.exit_code == 2
    assert "--guard tests.outbox_guard:nothing" in bad.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_stops_the_worker_gracefully_and_gives_back_its_claims(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with ScriptedSMTPServer().in_thread() as server:
        env = {
            **os.environ,
            "SENDGUARD_STORE": f"sqlite:///{db}",
            "TEST_STORE": str(db),
            "TEST_SMTP_PORT": str(server.port),
            "PYTHONPATH": str(ROOT),
        }
        SQLiteStore(db).db.close()
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sendguard",
                "worker",
                "--poll",
                "0.1",
                "--guard",
                "tests.outbox_guard:make_guard",
                "--summary-every",
                "0.2",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            # Mail kept while the worker runs is sent by it.
            clock = FakeClock(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))

            async def send() -> None:
                async with Guard(
                    adapter=RecordingAdapter(
                        {"a@x.example": [Reply(451, "4.7.1 later", Stage.RCPT)]}
                    ),
                    store=SQLiteStore(db),
                    retry=RetryPolicy(attempts=1, defer_for=0),
                    clock=clock,
                ) as guard:
                    assert (await guard.send(mail("a@x.example"))).kept

            asyncio.run(send())
            deadline = time.monotonic() + 30
            while server.accepted != ["a@x.example"] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.accepted == ["a@x.example"]
            time.sleep(0.3)
        finally:
            worker.send_signal(signal.SIGTERM)
            out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err.decode()
    assert b"delivered 1" in out
    assert b"sendguard.outbox_summary" in err
    assert b"sendguard.outbox_stopped" in err

    async def left() -> list[Held]:
        store = SQLiteStore(db)
        try:
            return [e.state for e in await store.kept()]
        finally:
            await store.aclose()

    assert asyncio.run(left()) == []
