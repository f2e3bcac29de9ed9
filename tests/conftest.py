"""Fixtures: a real redis-server, a real scripted SMTP server, a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import redis

from sendguard import (
    Adapter,
    Guard,
    MemoryStore,
    RedisStore,
    RetryPolicy,
    SMTPAdapter,
    SQLiteStore,
    Store,
)
from sendguard.testing import FakeClock, ScriptedSMTPServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def in_forked_child(work: Callable[[], object], timeout: float = 30.0) -> None:
    """Run *work* in a child of a fork of this process; fail if it raises or hangs."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            work()
            code = 0
        except BaseException:  # noqa: BLE001 (reported on stderr, then the exit status says)
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, "the child failed (stderr has why)"
            return
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child hung for {timeout} s")


ROOT = Path(__file__).resolve().parent.parent


async def python_module(module: str, *args: str) -> asyncio.subprocess.Process:
    """``python -m module args...`` from the repository root, stdout and stderr piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def spawn_redis(directory: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.02)
    client.close()
    return proc, port


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_URL if set, else a redis-server of this test session's own."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    proc, port = spawn_redis(tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_CLUSTER_URL if set, else a 3-master Redis Cluster spawned on loopback ports."""
    if url := os.environ.get("REDIS_CLUSTER_URL"):
        yield url
        return
    nodes = []
    for n in range(3):
        directory = tmp_path_factory.mktemp(f"cluster{n}")
        nodes.append(
            spawn_redis(
                directory,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / "nodes.conf"),
                "--cluster-node-timeout",
                "5000",
                # The bus port defaults to port + 10000, past 65535 for a high free port.
                "--cluster-port",
                str(free_port()),
            )
        )
    ports = [port for _, port in nodes]
    cli = shutil.which("redis-cli") or "redis-cli"
    subprocess.run(  # noqa: S603 (fixed arguments)
        [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-yes"],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=30,
    )
    deadline = time.monotonic() + 20
    for port in ports:
        client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        while client.cluster("info").get("cluster_state") != "ok":
            if time.monotonic() > deadline:
                pytest.fail("the Redis Cluster did not become ready")
            time.sleep(0.05)
        client.close()
    yield f"redis://127.0.0.1:{ports[0]}/0"
    for proc, _ in nodes:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def scratch_redis_store(
    url: str, prefix: str, *, cluster: bool = False, server_clock: bool = False
) -> AsyncIterator[RedisStore]:
    """A RedisStore under *prefix*, whose keys are deleted afterwards.

    By default it follows the client's clock, which the tests drive with a FakeClock.
    """
    store = RedisStore.from_url(url, prefix=prefix, cluster=cluster, server_clock=server_clock)
    try:
        yield store
    finally:
        await store.aclose()
        client: redis.Redis | redis.RedisCluster = (
            redis.RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)
        )
        keys = list(client.scan_iter(match=f"{{{prefix}}}*"))
        for key in keys:
            client.delete(key)
        if isinstance(client, redis.RedisCluster):
            client.disconnect_connection_pools()  # type: ignore[no-untyped-call]  # close() leaves sockets
        client.close()


@pytest.fixture
async def redis_store(redis_url: str, prefix: str) -> AsyncIterator[RedisStore]:
    async with scratch_redis_store(redis_url, prefix) as store:
        yield store


@pytest.fixture(params=["memory", "sqlite", "redis", "cluster"])
async def store(
    request: pytest.FixtureRequest, prefix: str, tmp_path: Path
) -> AsyncIterator[Store]:
    """Each store implementation in turn: one test body, every store."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        sqlite = SQLiteStore(tmp_path / "sendguard.db")
        yield sqlite
        await sqlite.aclose()
        return
    cluster = request.param == "cluster"
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    async with scratch_redis_store(url, prefix, cluster=cluster) as redis_store:
        yield redis_store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def smtp_server() -> AsyncIterator[ScriptedSMTPServer]:
    async with ScriptedSMTPServer() as server:
        yield server


def guard_over(adapter: Adapter, clock: FakeClock) -> Guard:
    """A guard delivering through *adapter* on the fake clock, retrying once after a second."""
    return Guard(
        adapter=adapter,
        clock=clock,
        sleep=clock.sleep,
        retry=RetryPolicy(attempts=2, initial_wait=1, jitter=0),
    )


@pytest.fixture
async def make_guard(
    smtp_server: ScriptedSMTPServer, clock: FakeClock
) -> AsyncIterator[Callable[..., Guard]]:
    """Guards delivering to the scripted server, on the fake clock, closed after the test."""
    made: list[Guard] = []

    def make(**options: object) -> Guard:
        options.setdefault("adapter", SMTPAdapter("127.0.0.1", smtp_server.port, timeout=5))
        options.setdefault("retry", RetryPolicy(attempts=3, initial_wait=1, max_wait=10))
        options.setdefault("sleep", clock.sleep)
        guard = Guard(clock=clock, **options)  # type: ignore[arg-type]
        made.append(guard)
        return guard

    yield make
    for guard in made:
        await guard.aclose()


def message(
    to: str | list[str] = "alice@example.com",
    *,
    cc: str | list[str] | None = None,
    bcc: str | list[str] | None = None,
    sender: str = "news@sender.example",
    subject: str = "Hello",
    body: str = "Hi there.\n",
) -> EmailMessage:
    """A plain text message."""
    msg = EmailMessage()
    msg["From"] = sender
    for name, value in (("To", to), ("Cc", cc), ("Bcc", bcc)):
        if value:
            msg[name] = value if isinstance(value, str) else ", ".join(value)
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


@pytest.fixture(params=["sqlite", "redis", "cluster"])
async def reopen(
    request: pytest.FixtureRequest, prefix: str, tmp_path: Path
) -> AsyncIterator[Callable[[], Store]]:
    """Opens store objects on one shared backend, as other processes or a restart would.

    Each call is a new object with its own connection (the SQLite file, the Redis prefix).
    """
    opened: list[Store] = []
    if request.param == "sqlite":

        def sqlite() -> Store:
            opened.append(SQLiteStore(tmp_path / "shared.db"))
            return opened[-1]

        yield sqlite
        for store in opened:
            await store.aclose()
        return
    cluster = request.param == "cluster"
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    async with scratch_redis_store(url, prefix, cluster=cluster):

        def redis_store() -> Store:
            opened.append(
                RedisStore.from_url(url, prefix=prefix, cluster=cluster, server_clock=False)
            )
            return opened[-1]

        yield redis_store
        for store in opened:
            await store.aclose()
