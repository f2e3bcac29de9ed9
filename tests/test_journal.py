"""What a send learned is never lost: a store that fails, stalls or answers late, a caller that
gives up, a process killed while the store is down, a guard moved to a new event loop."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from sendguard import (
    Adapter,
    Admission,
    ConfigurationError,
    DeliveryStatus,
    Envelope,
    Guard,
    MemoryStore,
    Outcome,
    Pause,
    Quota,
    RedisStore,
    Reply,
    Reservation,
    RetryPolicy,
    Settled,
    SMTPAdapter,
    SQLiteStore,
    Stage,
    Store,
    StoreError,
    Suppression,
    WarmupSchedule,
)
from sendguard.testing import FakeClock, RecordingAdapter, ScriptedSMTPServer
from tests.conftest import message

pytestmark = pytest.mark.usefixtures("smtp_server")

FLAT = WarmupSchedule.linear(start=10, target=10, days=1, started_on=dt.date(2026, 1, 1))


class _Flaky(MemoryStore):
    """A MemoryStore whose settle (or reserve) fails or stalls while told to."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.stall_settle: asyncio.Event | None = None
        self.stall_reserve: asyncio.Event | None = None
        self.settles = 0

    async def settle(self, outcome: Outcome) -> Settled:
        if self.down:
            raise StoreError("settle failed: connection reset")
        if self.stall_settle is not None:
            await self.stall_settle.wait()
        self.settles += 1
        return await super().settle(outcome)

    async def reserve(self, request: Reservation) -> list[Admission]:
        if self.stall_reserve is not None:
            await self.stall_reserve.wait()
        return await super().reserve(request)


def _quota(clock: FakeClock) -> Quota:
    return Quota("sender.example", clock().date(), 10)


async def test_an_outcome_the_store_refused_holds_and_is_replayed(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer, tmp_path: Path
) -> None:
    smtp_server.script("gone@example.com", "550 5.1.1 no such user")
    store = _Flaky()
    guard = make_guard(store=store, journal=tmp_path / "journal")
    store.down = True
    result = await guard.send(message(["ok@example.com", "gone@example.com"]))
    assert not result.recorded
    assert result.accepted == ["ok@example.com"]
    assert len(list((tmp_path / "journal").glob("*.jsonl"))) == 1
    # Still down: the journal's suppression holds, the dead address is not mailed again.
    smtp_server.rcpt_log.clear()
    again = await guard.send(message("gone@example.com"))
    assert again.recipients["gone@example.com"].status is DeliveryStatus.SUPPRESSED
    assert smtp_server.rcpt_log == []
    # Back up: the next operation replays the journal into the store.
    store.down = False
    await guard.send(message("ok@example.com"))
    await guard.aclose()
    entry = await store.get("gone@example.com")
    assert entry is not None
    assert entry.reason == "userunknown"
    assert not list((tmp_path / "journal").glob("*.jsonl"))


async def test_a_stalled_store_does_not_hold_the_caller_and_a_late_write_counts_once(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer, clock: FakeClock
) -> None:
    smtp_server.script("full@example.com", "552 5.2.2 Mailbox full")
    store = _Flaky()
    guard = make_guard(store=store, warmup=FLAT, store_timeout=0.2, journal=False)
    store.stall_settle = asyncio.Event()
    result = await asyncio.wait_for(guard.send(message(["full@example.com"])), 5)
    assert not result.recorded
    # The stalled write lands after all, then the journal is replayed: counted once.
    store.stall_settle.set()
    store.stall_settle = None
    await guard.send(message("ok@example.com"))
    await guard.aclose()
    assert await store.soft_bounces("full@example.com") == 1
    assert await store.quota_used(_quota(clock)) == 1  # full's quota given back once


async def test_redis_stalled_after_delivery_loses_no_suppression(
    redis_url: str,
    prefix: str,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    tmp_path: Path,
) -> None:
    smtp_server.script("gone@example.com", "550 5.1.1 no such user")
    admin = aioredis.Redis.from_url(redis_url)

    class PauseRedisAfterDelivery(SMTPAdapter):
        async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
            replies = await super().deliver(envelope)
            await admin.client_pause(1500, all=False)
            return replies

    store = RedisStore.from_url(redis_url, prefix=prefix, server_clock=False)
    guard = make_guard(
        store=store,
        adapter=PauseRedisAfterDelivery("127.0.0.1", smtp_server.port),
        store_timeout=0.3,
        journal=tmp_path / "j",
    )
    try:
        result = await guard.send(message(["ok@example.com", "gone@example.com"]))
        assert (result.recorded, result.accepted) == (False, ["ok@example.com"])
        await asyncio.sleep(1.6)  # Redis answers again
        await guard.aclose()  # waits for what is in flight and replays the journal
        async with RedisStore.from_url(redis_url, prefix=prefix) as fresh:
            assert await fresh.get("gone@example.com") is not None
        assert not list((tmp_path / "j").glob("*.jsonl"))
    finally:
        await admin.client_unpause()
        await admin.aclose()


async def test_sqlite_full_disk_loses_no_suppression(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer, tmp_path: Path
) -> None:
    smtp_server.script("gone@example.com", "550 5.1.1 no such user")
    store = SQLiteStore(tmp_path / "sg.db")
    guard = make_guard(store=store)
    await guard.send(message("warm@example.com"))
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full: fill what is left
    _fill(store.db)
    result = await guard.send(
        message(["gone@example.com"] + [f"u{i}@example.com" for i in range(3)])
    )
    assert not result.recorded
    assert store.journal_directory is not None
    assert list(store.journal_directory.glob("*.jsonl"))
    store.db.execute("PRAGMA max_page_count = 1073741823")  # space again
    await guard.send(message("ok@example.com"))
    await guard.aclose()
    with sqlite3.connect(tmp_path / "sg.db") as db:
        assert db.execute("SELECT 1 FROM suppressed WHERE k = 'gone@example.com'").fetchone()


def _fill(db: sqlite3.Connection) -> None:
    """Use up every byte SQLite may still write, in every table (pages of its own each)."""
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        for size in (2000, 400, 80, 16, 1):
            with contextlib.suppress(sqlite3.OperationalError):
                for n in range(100_000):
                    insert = f"INSERT INTO {table} (k, v) VALUES (?, ?)"  # noqa: S608 (our tables)
                    db.execute(insert, (f"{size}-{n}", "x" * size))
    with pytest.raises(sqlite3.OperationalError, match="full"):
        db.execute("INSERT INTO suppressed (k, v) VALUES ('probe', 'x')")


_CRASH_CHILD = """
import asyncio, sys
from email.message import EmailMessage
from sendguard import Guard, SMTPAdapter, SQLiteStore, StoreError

class DiskFills(SQLiteStore):  # the disk fills between the reservation and the settle
    async def settle(self, outcome):
        raise StoreError("database or disk is full")

async def main():
    store = DiskFills(sys.argv[1])
    guard = Guard(adapter=SMTPAdapter("127.0.0.1", int(sys.argv[2])), store=store)
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "news@sender.example", "gone@example.com", "x"
    m.set_content("hi")
    result = await guard.send(m)
    print("journaled" if not result.recorded else "recorded", file=sys.stderr, flush=True)
    await asyncio.sleep(3600)  # killed here, before the store could take the outcome

asyncio.run(main())
"""


def test_a_process_killed_while_the_store_is_down_loses_no_suppression(tmp_path: Path) -> None:
    path = tmp_path / "sg.db"
    SQLiteStore(path).db.close()
    with ScriptedSMTPServer().in_thread() as server:
        server.script("gone@example.com", "550 5.1.1 no such user")
        script = tmp_path / "child.py"
        script.write_text(_CRASH_CHILD)

        async def crash() -> None:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                str(script),
                str(path),
                str(server.port),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
            )
            assert child.stderr is not None
            line = await asyncio.wait_for(child.stderr.readline(), 60)
            assert line.strip() == b"journaled"
            child.send_signal(signal.SIGKILL)
            await child.wait()

        asyncio.run(crash())

    async def after() -> None:
        store = SQLiteStore(path)
        assert await store.get("gone@example.com") is None
        async with Guard(adapter=RecordingAdapter(), store=store) as guard:
            # The first operation adopts the dead process's journal and replays it.
            with capture_logs() as logs:
                await guard.is_suppressed("x@example.com")
            assert any(e["event"] == "sendguard.journal_adopted" for e in logs)
        assert await SQLiteStore(path).get("gone@example.com") is not None

    asyncio.run(after())


# -- a caller that gives up ---------------------------------------------------------------


async def _forever(_: float) -> None:
    await asyncio.Event().wait()


async def test_cancelled_during_backoff_records_what_was_learned(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer, clock: FakeClock
) -> None:
    smtp_server.script("gone@example.com", "550 5.1.1 no such user")
    smtp_server.script("grey@example.com", "451 4.7.1 Greylisted, try later")
    store = MemoryStore()
    guard = make_guard(store=store, warmup=FLAT, sleep=_forever, journal=False)
    send = guard.send(message(["ok@example.com", "gone@example.com", "grey@example.com"]))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(send, 0.5)  # the retry's backoff never ends
    await guard.aclose()
    entry = await store.get("gone@example.com")
    assert entry is not None
    assert entry.reason == "userunknown"
    assert await store.quota_used(_quota(clock)) == 1  # only ok's; gone's and grey's back


async def test_cancelled_in_flight_keeps_the_quota_spent(clock: FakeClock) -> None:
    class Hangs(Adapter):
        async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
            await asyncio.Event().wait()
            raise AssertionError

    store = MemoryStore()
    guard = Guard(adapter=Hangs(), store=store, warmup=FLAT, clock=clock, journal=False)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(guard.send(message(["a@example.com", "b@example.com"])), 0.3)
    await guard.aclose()
    # Cut off mid-delivery, the message may have arrived: its quota stays spent.
    assert await store.quota_used(_quota(clock)) == 2


async def test_cancelled_while_reserving_gives_the_quota_back(clock: FakeClock) -> None:
    store = _Flaky()
    store.stall_reserve = asyncio.Event()
    guard = Guard(adapter=RecordingAdapter(), store=store, warmup=FLAT, clock=clock)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(guard.send(message(["a@example.com", "b@example.com"])), 0.3)
    store.stall_reserve.set()  # the reservation is made after the caller left
    await asyncio.sleep(0.05)
    await guard.aclose()
    assert await store.quota_used(_quota(clock)) == 0


async def test_a_store_that_stalls_before_the_send_times_out_and_sends_nothing(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer, clock: FakeClock
) -> None:
    store = _Flaky()
    store.stall_reserve = asyncio.Event()
    guard = make_guard(store=store, warmup=FLAT, store_timeout=0.2)
    with pytest.raises(StoreError, match="no answer"):
        await guard.send(message("a@example.com"))
    assert smtp_server.connections == 0
    store.stall_reserve.set()
    await asyncio.sleep(0.05)
    await guard.aclose()
    assert await store.quota_used(_quota(clock)) == 0


# -- hostile or broken replies, adapters that raise ---------------------------------------


@pytest.mark.parametrize(
    "garbage",
    ["this is not smtp", "2x0 half a code", "99 short", "", "x" * 9000, "\xff\xfe binary"],
)
async def test_a_malformed_rcpt_reply_is_an_answer_not_a_crash(
    garbage: str, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("gone@example.com", "550 5.1.1 no such user")
    smtp_server.script("odd@example.com", garbage)
    guard = make_guard(retry=RetryPolicy.never())
    result = await guard.send(message(["gone@example.com", "odd@example.com"]))
    gone = result.recipients["gone@example.com"]
    assert (gone.status, gone.suppressed) == (DeliveryStatus.REJECTED, True)
    odd = result.recipients["odd@example.com"]
    assert odd.status is DeliveryStatus.DEFERRED  # nobody got the message: try again later
    assert not await guard.is_suppressed("odd@example.com")


async def test_a_malformed_reply_to_the_final_dot_is_uncertain(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script_data("250 ok\r\ngarbage")
    smtp_server.script_data("not a reply")
    guard = make_guard()
    result = await guard.send(message("a@example.com"))
    assert result.recipients["a@example.com"].status in (
        DeliveryStatus.ACCEPTED,
        DeliveryStatus.DEFERRED,
    )
    result = await guard.send(message("b@example.com"))
    rr = result.recipients["b@example.com"]
    assert rr.status is DeliveryStatus.DEFERRED
    assert "uncertain" in rr.detail
    assert rr.attempts == 1  # never re-sent automatically: it may have arrived


async def test_an_adapter_that_raises_keeps_what_earlier_attempts_learned(
    clock: FakeClock,
) -> None:
    class BreaksOnRetry(RecordingAdapter):
        async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
            if self.envelopes:
                raise RuntimeError("the adapter has a bug")
            return await super().deliver(envelope)

    adapter = BreaksOnRetry(
        {
            "gone@example.com": [Reply(550, "5.1.1 no such user", Stage.RCPT, "5.1.1")],
            "grey@example.com": [Reply(451, "4.7.1 try later", Stage.RCPT, "4.7.1")],
        }
    )
    store = MemoryStore()
    guard = Guard(adapter=adapter, store=store, clock=clock, sleep=clock.sleep)
    result = await guard.send(message(["gone@example.com", "grey@example.com"]))
    assert result.recipients["gone@example.com"].suppressed
    grey = result.recipients["grey@example.com"]
    assert (grey.status, "uncertain" in grey.detail) == (DeliveryStatus.DEFERRED, True)
    assert await store.get("gone@example.com") is not None


# -- one guard, several event loops -------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_a_guard_works_across_asyncio_run_calls(kind: str, redis_url: str, tmp_path: Path) -> None:
    with ScriptedSMTPServer().in_thread() as server:
        server.script("gone@example.com", "550 5.1.1 no such user")
        makers: dict[str, Callable[[], Store]] = {
            "memory": MemoryStore,
            "sqlite": lambda: SQLiteStore(tmp_path / "s.db"),
            "redis": lambda: RedisStore.from_url(
                redis_url, prefix=f"loops-{os.getpid()}-{id(tmp_path)}"
            ),
        }
        store = makers[kind]()
        guard = Guard(adapter=SMTPAdapter("127.0.0.1", server.port), store=store, warmup=FLAT)
        for to in ("a@example.com", "gone@example.com", "b@example.com"):
            result = asyncio.run(guard.send(message(to)))
            assert result.recipients[to].status in (
                DeliveryStatus.ACCEPTED,
                DeliveryStatus.REJECTED,
            )
        assert asyncio.run(guard.is_suppressed("gone@example.com"))
        assert len(server.received) == 2

        async def sent_today() -> int | None:
            return (await guard.status("sender.example")).sent_today

        assert asyncio.run(sent_today()) == 2
        asyncio.run(guard.send(message("c@example.com")))
        asyncio.run(guard.aclose())  # on a loop of its own, with the last one's pool left


def test_a_guard_in_use_on_another_running_loop_is_refused_before_reserving() -> None:
    store = MemoryStore()
    guard = Guard(adapter=RecordingAdapter(), store=store, warmup=FLAT)
    started, release = threading.Event(), threading.Event()

    def other_loop() -> None:
        async def hold() -> None:
            await guard.is_suppressed("x@example.com")
            started.set()
            await asyncio.to_thread(release.wait)

        asyncio.run(hold())

    thread = threading.Thread(target=other_loop)
    thread.start()
    started.wait(10)
    try:
        with pytest.raises(ConfigurationError, match="another running event loop"):
            asyncio.run(guard.send(message("a@example.com")))
    finally:
        release.set()
        thread.join()
    today = dt.datetime.now(dt.UTC).date()
    assert asyncio.run(store.quota_used(Quota("sender.example", today, 10))) == 0


def test_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="store_timeout"):
        Guard(store_timeout=0)


# -- found by a review: each failed before its fix ----------------------------------------


async def test_cancelling_a_signed_send_keeps_what_the_copies_that_came_back_said(
    clock: FakeClock,
) -> None:
    class Split(Adapter):
        async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
            (rcpt,) = envelope.recipients
            if rcpt.startswith("gone"):
                return {rcpt: Reply(550, "5.1.1 no such user", Stage.RCPT, "5.1.1")}
            await asyncio.Event().wait()  # a slow MX for the other copy
            raise AssertionError

    store = MemoryStore()
    guard = Guard(adapter=Split(), store=store, clock=clock, journal=False, bounce_secret="s" * 32)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(guard.send(message(["gone@example.com", "slow@example.com"])), 0.3)
    await guard.aclose()
    assert await store.get("gone@example.com") is not None


@pytest.mark.parametrize("give_up", ["store_timeout", "cancel"])
async def test_a_reservation_that_lands_after_its_caller_left_gives_its_quota_back(
    give_up: str, redis_url: str, prefix: str, clock: FakeClock
) -> None:
    admin = aioredis.Redis.from_url(redis_url)
    store = RedisStore.from_url(redis_url, prefix=prefix, server_clock=False)
    guard = Guard(
        adapter=RecordingAdapter(), store=store, warmup=FLAT, clock=clock, store_timeout=0.3
    )
    await store.quota_used(_quota(clock))  # connected before Redis stops answering
    try:
        await admin.client_pause(1000, all=False)  # the reservation script waits a second
        send = guard.send(message(["a@example.com", "b@example.com"]))
        if give_up == "cancel":
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(send, 0.2)
        else:
            with pytest.raises(StoreError, match="no answer"):
                await send
        await asyncio.sleep(1.3)  # the script ran after all, then its quota went back
        assert await store.quota_used(_quota(clock)) == 0
    finally:
        await admin.client_unpause()
        await admin.aclose()
        await guard.aclose()


async def test_the_outcome_is_on_disk_while_its_store_call_is_in_flight(
    clock: FakeClock, tmp_path: Path
) -> None:
    store = _Flaky()
    store.stall_settle = asyncio.Event()
    adapter = RecordingAdapter({"gone@example.com": [Reply(550, "5.1.1 no", Stage.RCPT, "5.1.1")]})
    guard = Guard(
        adapter=adapter, store=store, clock=clock, journal=tmp_path / "j", store_timeout=5
    )
    task = asyncio.ensure_future(guard.send(message("gone@example.com")))
    await asyncio.sleep(0.3)  # delivered, the settle stalled: a SIGKILL now must lose nothing
    assert adapter.envelopes
    (written,) = (tmp_path / "j").glob("*.jsonl")
    assert "gone@example.com" in written.read_text()
    store.stall_settle.set()
    store.stall_settle = None
    assert (await task).recorded
    await guard.aclose()
    assert not list((tmp_path / "j").glob("*.jsonl"))


def test_a_guard_used_again_after_aclose_leaves_no_replayed_entry_behind(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _Flaky()
    store.down = True
    adapter = RecordingAdapter({"gone@example.com": [Reply(550, "5.1.1 no", Stage.RCPT, "5.1.1")]})
    guard = Guard(adapter=adapter, store=store, clock=clock, journal=tmp_path / "j")

    async def down() -> None:
        async with guard:
            assert not (await guard.send(message("gone@example.com"))).recorded

    async def up() -> None:
        async with guard:
            await guard.send(message("ok@example.com"))
        assert await store.get("gone@example.com") is not None
        await store.remove("gone@example.com")  # an operator lifts it again

    asyncio.run(down())
    store.down = False
    asyncio.run(up())
    assert not list((tmp_path / "j").glob("*.jsonl"))
    clock.advance(days=31)  # the store has forgotten the event id by now

    async def later() -> None:
        async with Guard(adapter=adapter, store=store, clock=clock, journal=tmp_path / "j") as g:
            await g.is_suppressed("x@example.com")
            await asyncio.sleep(0.05)
            assert not await g.is_suppressed("gone@example.com")

    asyncio.run(later())


# -- the guard's other calls, while the store stalls --------------------------------------


class _Stalled(MemoryStore):
    """Every call waits until ``unblock`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.unblock = asyncio.Event()
        self.unblock.set()

    async def get(self, key: str) -> Suppression | None:
        await self.unblock.wait()
        return await super().get(key)

    async def add(self, suppressions: Sequence[Suppression], *, replace: bool = False) -> int:
        await self.unblock.wait()
        return await super().add(suppressions, replace=replace)

    async def quota_used(self, quota: Quota) -> int:
        await self.unblock.wait()
        return await super().quota_used(quota)

    async def pauses(self, sender_domain: str, now: dt.datetime) -> list[Pause]:
        await self.unblock.wait()
        return await super().pauses(sender_domain, now)


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.is_suppressed("a@example.com"),
        lambda g: g.suppress("a@example.com"),
        lambda g: g.pauses("sender.example"),
        lambda g: g.status("sender.example"),
    ],
)
async def test_every_store_call_of_the_guard_is_bounded_by_store_timeout(
    call: Callable[[Guard], Awaitable[object]], clock: FakeClock
) -> None:
    store = _Stalled()
    store.unblock.clear()
    guard = Guard(
        adapter=RecordingAdapter(), store=store, warmup=FLAT, clock=clock, store_timeout=0.2
    )
    started = asyncio.get_running_loop().time()
    with pytest.raises(StoreError, match="no answer"):
        await call(guard)
    assert asyncio.get_running_loop().time() - started < 2
    store.unblock.set()
    await guard.aclose()


async def test_a_suppression_held_in_the_journal_is_visible_and_unsuppress_drops_it(
    clock: FakeClock, tmp_path: Path
) -> None:
    store = _Flaky()
    store.down = True
    adapter = RecordingAdapter({"gone@example.com": [Reply(550, "5.1.1 no", Stage.RCPT, "5.1.1")]})
    guard = Guard(adapter=adapter, store=store, clock=clock, journal=tmp_path / "j")
    assert not (await guard.send(message("gone@example.com"))).recorded
    assert await guard.is_suppressed("gone@example.com")  # the store has not got it yet
    assert await guard.unsuppress("gone@example.com")
    assert not await guard.is_suppressed("gone@example.com")
    store.down = False
    await guard.aclose()  # replays the journal: the lifted suppression is not put back
    assert await store.get("gone@example.com") is None
