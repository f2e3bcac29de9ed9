"""Concurrent reservations share one store call; a lone one goes out at once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence

import pytest

from sendguard import Guard, RedisStore, WarmupSchedule
from sendguard._store.coalesce import Coalescer
from tests.conftest import message


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, requests: Sequence[int]) -> list[int]:
        self.batches.append(list(requests))
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("store down")
        return [r * 10 for r in requests]


async def test_a_lone_request_goes_out_alone_and_at_once() -> None:
    call = Recorder()
    coalescer = Coalescer(call)
    assert await coalescer.submit(1) == 10
    assert await coalescer.submit(2) == 20
    assert call.batches == [[1], [2]]


async def test_requests_made_while_one_is_in_flight_share_the_next_call() -> None:
    call = Recorder()
    call.gate.clear()
    coalescer = Coalescer(call)
    first = asyncio.create_task(coalescer.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(coalescer.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    call.gate.set()
    assert await asyncio.gather(first, *rest) == [10, 20, 30, 40]
    assert call.batches == [[1], [2, 3, 4]]


async def test_a_failed_call_fails_every_request_of_its_batch_only() -> None:
    call = Recorder(fail=True)
    coalescer = Coalescer(call)
    results = await asyncio.gather(coalescer.submit(1), coalescer.submit(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    call.fail = False
    assert await coalescer.submit(3) == 30


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    call = Recorder()
    call.gate.clear()
    coalescer = Coalescer(call)
    first = asyncio.create_task(coalescer.submit(1))
    await asyncio.sleep(0)
    doomed = asyncio.create_task(coalescer.submit(2))
    kept = asyncio.create_task(coalescer.submit(3))
    await asyncio.sleep(0)
    doomed.cancel()
    call.gate.set()
    assert await first == 10
    assert await kept == 30
    with pytest.raises(asyncio.CancelledError):
        await doomed


async def test_concurrent_sends_through_redis_share_round_trips_and_keep_the_cap(
    redis_store: RedisStore, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(
        store=redis_store,
        warmup=WarmupSchedule.from_table({1: 30}, started_on=dt.date(2026, 11, 1)),
    )
    await guard.suppress("gone@example.com")
    results = await asyncio.gather(
        *(guard.send(message([f"u{i}@example.com", "gone@example.com"])) for i in range(40))
    )
    accepted = sum(len(r.accepted) for r in results)
    assert accepted == 30
    assert all(r.recipients["gone@example.com"].status == "suppressed" for r in results)
