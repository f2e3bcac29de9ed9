"""Mail the outbox sends later keeps the bounce guarantees of a first send, and the outbox never
holds what a caller was told is not kept.

A signed copy's token binds its Message-ID and its one recipient, so a bounce can speak only for
an address that message was really sent to: the signature is the record of who got the message,
for mail sent at once and for mail a worker sends days later, with no store write per send.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path

import pytest
import redis.asyncio as aioredis

import sendguard._guard.outbox as outbox_module
from sendguard import (
    DeliveryStatus,
    Guard,
    MemoryStore,
    RedisStore,
    StoreError,
    WarmupSchedule,
)
from sendguard._store.outbox import Kept, Letter
from sendguard.testing import FakeClock, RecordingAdapter, make_dsn
from tests.conftest import spawn_redis

SECRET = "a secret of at least sixteen bytes"
DAY = dt.date(2026, 11, 1)
UNKNOWN = "550 5.1.1 User unknown"


def mail(to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "News <news@s.example>"
    message["To"] = to
    message["Subject"] = "Your weekly digest"
    message.set_content("Hello.\n")
    return message


def copies(adapter: RecordingAdapter) -> dict[str, bytes]:
    """Each recipient's copy as it was handed over (signed mail is one envelope each)."""
    out: dict[str, bytes] = {}
    for envelope in adapter.envelopes:
        (recipient,) = envelope.recipients
        out[recipient] = envelope.data
    return out


async def test_a_bounce_of_mail_the_outbox_sent_speaks_only_for_the_copy_it_returns() -> None:
    clock = FakeClock()
    adapter = RecordingAdapter()
    guard = Guard(
        adapter=adapter,
        store=MemoryStore(),
        warmup=WarmupSchedule([1, 2], started_on=DAY, counting="sending"),
        bounce_secret=SECRET,
        clock=clock,
    )
    to = ["a@x.example", "b@x.example", "c@x.example", "d@x.example"]
    result = await guard.send(mail(", ".join(to)))
    assert sorted(result.kept) == to[1:]  # one a day today, two tomorrow
    first = copies(adapter)
    assert list(first) == ["a@x.example"]

    clock.advance(days=1)
    await guard.deliver_outbox()
    sent = copies(adapter)
    assert sorted(sent) == to[:3]  # d waits for the day after
    ids = {mid for data in sent.values() for mid in _message_ids(data)}
    assert len(ids) == 1  # the worker's copies carry the first attempt's Message-ID
    assert len(set(sent.values())) == 3  # and each a token of its own

    # b's copy returned about c (sent the same message) or d (kept, never sent): untrusted.
    for named in ("c@x.example", "d@x.example", "stranger@x.example"):
        (report,) = await guard.ingest_bounce(make_dsn(sent["b@x.example"], {named: UNKNOWN}))
        assert (report.trusted, report.suppressed) == (False, False), named
    assert not any([await guard.is_suppressed(a) for a in to])
    assert [k.recipient for k in await guard.store.kept()] == ["d@x.example"]

    # b's own copy returned about b is trusted, whichever attempt sent it.
    (report,) = await guard.ingest_bounce(make_dsn(sent["b@x.example"], {"b@x.example": UNKNOWN}))
    assert (report.trusted, report.suppressed) == (True, True)
    (report,) = await guard.ingest_bounce(make_dsn(first["a@x.example"], {"a@x.example": UNKNOWN}))
    assert (report.trusted, report.suppressed) == (True, True)

    # The one still kept goes out on the third day with a token for itself.
    clock.advance(days=1)
    await guard.deliver_outbox()
    late = copies(adapter)["d@x.example"]
    (report,) = await guard.ingest_bounce(make_dsn(late, {"d@x.example": UNKNOWN}))
    assert (report.trusted, report.suppressed) == (True, True)
    assert not await guard.is_suppressed("c@x.example")
    await guard.aclose()


def _message_ids(data: bytes) -> list[bytes]:
    return [
        line.split(b":", 1)[1].strip()
        for line in data.split(b"\r\n")
        if line.lower().startswith(b"message-id:")
    ]


# -- a keep the store did not answer in time -------------------------------------------------


class _LandsLate(MemoryStore):
    """A store whose ``keep`` writes, then answers only after the guard stopped waiting."""

    def __init__(self, *, drops_fail: int = 0, writes: bool = True) -> None:
        super().__init__()
        self.drops_fail = drops_fail
        self.writes = writes
        self.drops = 0

    async def keep(self, letter: Letter, entries: Sequence[Kept]) -> int:
        kept = await super().keep(letter, entries) if self.writes else 0
        await asyncio.sleep(0.5)
        return kept

    async def drop(self, ids: Sequence[str]) -> int:
        self.drops += 1
        if self.drops_fail:
            self.drops_fail -= 1
            raise StoreError("the store is failing over")
        return await super().drop(ids)


@pytest.fixture(autouse=True)
def _quick_unkeep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "UNKEEP_PAUSE", 0.01)


@pytest.mark.parametrize(
    ("drops_fail", "writes"),
    [(0, True), (3, True), (0, False)],
    ids=["lands", "drop-fails", "lost"],
)
async def test_a_keep_that_timed_out_is_never_sent_by_a_worker(
    drops_fail: int, writes: bool
) -> None:
    clock = FakeClock()
    adapter = RecordingAdapter()
    store = _LandsLate(drops_fail=drops_fail, writes=writes)
    guard = Guard(
        adapter=adapter,
        store=store,
        warmup=WarmupSchedule([1, 10], started_on=DAY, counting="sending"),
        store_timeout=0.1,
        clock=clock,
    )
    result = await guard.send(mail("a@x.example, b@x.example"))
    late = result.recipients["b@x.example"]
    assert late.status is DeliveryStatus.THROTTLED
    assert not late.kept  # the caller is told nothing will send it ...
    assert result.kept == []
    for _ in range(200):  # ... and the background drop makes that true
        await asyncio.sleep(0.02)
        if store.drops > drops_fail + 1:  # the drop, then the one after a store_timeout
            break
    assert store.drops == drops_fail + 2
    assert await store.kept() == []
    clock.advance(days=1)
    await guard.deliver_outbox()
    assert [r for e in adapter.envelopes for r in e.recipients] == ["a@x.example"]
    await guard.aclose()


async def test_a_keep_that_failed_leaves_nothing_to_drop_after_it() -> None:
    """The drop after a failed keep removes only that keep's entries, never other mail."""
    clock = FakeClock()
    store = _LandsLate()
    guard = Guard(
        adapter=RecordingAdapter(),
        store=store,
        warmup=WarmupSchedule([0, 10], started_on=DAY, counting="sending"),
        clock=clock,
    )
    kept = await guard.send(mail("early@x.example"))  # answered in time: kept
    assert kept.kept == ["early@x.example"]
    guard.store_timeout = 0.1
    failed = await guard.send(mail("late@x.example"))
    assert failed.kept == []
    for _ in range(200):
        await asyncio.sleep(0.02)
        if store.drops >= 2:
            break
    assert [k.recipient for k in await store.kept()] == ["early@x.example"]
    await guard.aclose()


async def test_a_keep_a_stalled_redis_runs_late_is_dropped_again(tmp_path: Path) -> None:
    """Redis stops (SIGSTOP) just as the keep is sent, and works its backlog off later."""
    proc, port = spawn_redis(tmp_path)
    stopped = asyncio.Event()

    class _StallsAtKeep(RedisStore):
        stall = False

        async def keep(self, letter: Letter, entries: Sequence[Kept]) -> int:
            if self.stall:
                os.kill(proc.pid, signal.SIGSTOP)
                asyncio.get_running_loop().call_later(0.4, os.kill, proc.pid, signal.SIGCONT)
                stopped.set()
            return await super().keep(letter, entries)

    clock = FakeClock()
    adapter = RecordingAdapter()
    store = _StallsAtKeep(
        aioredis.Redis(port=port), prefix="late", owns_client=True, server_clock=False
    )
    guard = Guard(
        adapter=adapter,
        store=store,
        warmup=WarmupSchedule([1, 10], started_on=DAY, counting="sending"),
        store_timeout=0.1,
        clock=clock,
    )
    try:
        first = await guard.send(mail("a@x.example, b@x.example"))
        assert first.kept == ["b@x.example"]  # the keep script is loaded: the next runs late
        store.stall = True
        result = await guard.send(mail("c@x.example, d@x.example"))
        assert stopped.is_set()
        assert result.kept == []
        await asyncio.sleep(1.5)  # the store answers again; the drops have run
        assert [k.recipient for k in await store.kept()] == ["b@x.example"]
        clock.advance(days=1)
        await guard.deliver_outbox()
        assert [r for e in adapter.envelopes for r in e.recipients] == [
            "a@x.example",
            "b@x.example",
        ]
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        await guard.aclose()
        proc.terminate()
        proc.wait(10)
