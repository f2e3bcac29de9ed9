"""A process killed with SIGKILL mid-send loses no suppression it reported."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sendguard import open_store
from sendguard.testing import ScriptedSMTPServer
from tests.conftest import python_module, scratch_redis_store

COUNT = 3000  # far more than get done before the kill


@pytest.fixture
async def cleanup() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


@pytest.mark.parametrize("kill_after", [1, 40, 300])
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_sigkill_mid_send_loses_no_reported_suppression(
    kind: str,
    kill_after: int,
    *,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    prefix: str,
    smtp_server: ScriptedSMTPServer,
    cleanup: contextlib.AsyncExitStack,
) -> None:
    for i in range(COUNT):
        smtp_server.script(f"dead{i}@example.com", "550 5.1.1 User unknown")
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("redis_url")
        await cleanup.enter_async_context(scratch_redis_store(url, prefix))
    proc = await python_module("tests.crash_worker", url, prefix, str(smtp_server.port), str(COUNT))
    assert proc.stdout is not None
    reported: list[str] = []
    while len(reported) < kill_after:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line, (await proc.communicate())[1].decode()
        reported.append(line.decode().strip())
    proc.send_signal(signal.SIGKILL)
    rest, _ = await proc.communicate()  # what it reported before it died is reported too
    reported += rest.decode().split()
    assert proc.returncode == -signal.SIGKILL, "the process was killed, not finished"
    assert len(reported) < COUNT

    if kind == "sqlite":
        with sqlite3.connect(tmp_path / "store.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    async with open_store(url, prefix=prefix) as store:
        listed = {entry.address async for entry in store.scan()}
    assert set(reported) <= listed
