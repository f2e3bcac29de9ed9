"""SyncGuard: the blocking guard, from many threads, with or without an event loop of one's own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sendguard import (
    ConfigurationError,
    DeliveryStatus,
    RedisStore,
    RetryPolicy,
    SMTPAdapter,
    SQLiteStore,
    Suppression,
    SyncGuard,
)
from sendguard.testing import ScriptedSMTPServer
from tests.conftest import in_forked_child, message


@pytest.fixture
def server() -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer().in_thread() as running:
        yield running


def make(server: ScriptedSMTPServer, **options: Any) -> SyncGuard:
    return SyncGuard(
        adapter=SMTPAdapter("127.0.0.1", server.port, pool_size=4),
        retry=RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02, jitter=0),
        **options,
    )


def test_send_suppress_and_the_rest_block_and_answer(server: ScriptedSMTPServer) -> None:
    server.script("gone@example.com", "550 5.1.1 User unknown")
    with make(server) as guard:
        result = guard.send(message(["alice@example.com", "gone@example.com"]))
        assert result.accepted == ["alice@example.com"]
        assert result.recipients["gone@example.com"].suppressed
        assert guard.is_suppressed("gone@example.com")
        entry = guard.suppression("gone@example.com")
        assert entry is not None
        assert entry.reason == "userunknown"
        assert guard.unsuppress("gone@example.com")
        assert guard.suppress("x@example.com").reason == "manual"
        assert guard.soft_bounces("x@example.com") == 0
        assert guard.pauses("sender.example") == []
        assert guard.status("sender.example").sender_domain == "sender.example"
    assert server.accepted == ["alice@example.com"]


def test_many_threads_share_one_guard(server: ScriptedSMTPServer) -> None:
    with make(server) as guard, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: guard.send(message(f"user{i}@example.com")), range(80)))
    assert all(len(r.accepted) == 1 for r in results)
    assert sorted(server.accepted) == sorted(f"user{i}@example.com" for i in range(80))


def test_works_from_code_with_its_own_running_loop(server: ScriptedSMTPServer) -> None:
    guard = make(server)

    async def inside_a_loop() -> DeliveryStatus:
        # A blocking call inside a coroutine, as a sync framework under ASGI would make it.
        return guard.send(message("loop@example.com")).recipients["loop@example.com"].status

    try:
        assert asyncio.run(inside_a_loop()) is DeliveryStatus.ACCEPTED
    finally:
        guard.close()


def test_a_shared_redis_store_lives_on_the_guards_loop(
    server: ScriptedSMTPServer, redis_url: str, prefix: str
) -> None:
    store = RedisStore.from_url(redis_url, prefix=prefix)
    with make(server, store=store) as guard, ThreadPoolExecutor(4) as pool:
        guard.suppress("gone@example.com")
        results = list(
            pool.map(
                lambda i: guard.send(message([f"u{i}@example.com", "gone@example.com"])),
                range(20),
            )
        )
        assert all(
            r.recipients["gone@example.com"].status is DeliveryStatus.SUPPRESSED for r in results
        )
        assert guard.unsuppress("gone@example.com")


def test_close_waits_for_calls_in_flight_and_refuses_later_ones(
    server: ScriptedSMTPServer,
) -> None:
    server.script("slow@example.com", "451 4.3.0 try again", "250 OK")
    guard = make(server)
    done: list[DeliveryStatus | str] = []
    started = threading.Event()

    def send() -> None:
        started.set()
        try:
            result = guard.send(message("slow@example.com"))
        except ConfigurationError:
            done.append("refused")
        else:
            done.append(result.recipients["slow@example.com"].status)

    sending = threading.Thread(target=send)
    sending.start()
    started.wait()
    guard.close()
    sending.join()
    # Either it finished (close waited for it) or it came after close began and was refused.
    assert done in ([DeliveryStatus.ACCEPTED], ["refused"])
    with pytest.raises(ConfigurationError, match="closed"):
        guard.send(message("late@example.com"))
    guard.close()  # a second close is harmless


def test_bad_options_raise_at_construction_and_leave_no_thread() -> None:
    before = threading.active_count()
    with pytest.raises(ConfigurationError):
        SyncGuard(on_store_error="ignore")  # type: ignore[arg-type]
    assert threading.active_count() == before


def test_in_a_forked_child_a_clear_error_instead_of_a_hang(server: ScriptedSMTPServer) -> None:
    guard = make(server)
    guard.suppress("gone@example.com")

    def child() -> None:
        assert guard.forked
        with pytest.raises(ConfigurationError, match="before a fork"):
            guard.is_suppressed("gone@example.com")
        guard.close()  # returns at once: the thread it would wait for is the parent's

    in_forked_child(child, timeout=10)
    assert not guard.forked
    assert guard.is_suppressed("gone@example.com")
    guard.close()


async def test_a_sqlite_store_reopens_its_file_in_a_forked_child(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    await store.add([Suppression("a@example.com", "userunknown")])

    def child() -> None:
        async def work() -> None:
            assert await store.get("a@example.com") is not None
            await store.add([Suppression("b@example.com", "userunknown")])
            await store.aclose()

        asyncio.run(work())

    in_forked_child(child, timeout=10)
    assert await store.get("b@example.com") is not None
    await store.aclose()
