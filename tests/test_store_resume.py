"""Store.resume counts only the pauses in force at its now; past days' quota counters agree.

Regression tests for divergences the differential test found: Redis's ``resume`` lifted 3
where MemoryStore lifted 2 after expired and zero-length pauses (each store counted the
expired pauses it had not pruned yet, and they prune differently), and MemoryStore forgot
yesterday's counter (and every other sender's) as soon as a new day began, where Redis keeps it.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from sendguard import Outcome, Pause, Quota, Reservation, Store, Suppression
from sendguard._store import Admit
from tests.conftest import scratch_redis_store

NOW = dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC)
SENDER = "sender.example"


def pause(domain: str, seconds: float, at: dt.datetime = NOW, sender: str = SENDER) -> Pause:
    return Pause(sender, domain, at + dt.timedelta(seconds=seconds), "blocked", "554 5.7.1")


async def paused_three_ways(store: Store) -> dt.datetime:
    """One pause in force, one zero-length, one expired; a suppressed recipient checked later."""
    pauses = [pause("a.example", 86400), pause("b.example", 0), pause("c.example", 0.5)]
    await store.settle(
        Outcome(NOW, pauses=[*pauses, pause("a.example", 60, sender="other.example")])
    )
    gone = Suppression("x@b.example", "userunknown", 550, "5.1.1", "gone", "smtp", NOW)
    await store.add([gone])
    later = NOW + dt.timedelta(seconds=1)
    # MemoryStore prunes b.example's pause here (the key is suppressed), reserve.lua did not.
    held = await store.reserve(Reservation(["x@b.example"], later, sender_domain=SENDER))
    assert held[0].verdict is Admit.SUPPRESSED
    assert [p.recipient_domain for p in await store.pauses(SENDER, later)] == ["a.example"]
    return later


async def test_resume_counts_only_the_pauses_in_force_at_now(store: Store) -> None:
    later = await paused_three_ways(store)
    assert await store.resume(SENDER, later) == 1
    assert await store.pauses(SENDER, NOW) == []  # the expired ones are gone too
    assert await store.resume(SENDER, later) == 0
    assert len(await store.pauses("other.example", later)) == 1  # another sender's stays


async def test_resume_without_now_judges_by_this_hosts_clock(store: Store) -> None:
    real = dt.datetime.now(dt.UTC)
    await store.settle(
        Outcome(real, pauses=[pause("a.example", 3600, real), pause("b.example", -1, real)])
    )
    assert await store.resume(SENDER) == 1
    assert await store.resume(SENDER) == 0
    await paused_three_ways(store)  # pauses of a month ago: all run out by now
    assert await store.resume(SENDER) == 0
    assert await store.pauses(SENDER, NOW) == []


async def test_resume_at_a_later_now_counts_nothing_that_has_run_out(store: Store) -> None:
    await store.settle(Outcome(NOW, pauses=[pause("a.example", 60), pause("*", 0)]))
    assert await store.resume(SENDER, NOW + dt.timedelta(minutes=2)) == 0
    assert await store.pauses(SENDER, NOW) == []


async def test_on_the_server_clock_resume_judges_by_redis_time(redis_url: str, prefix: str) -> None:
    real = dt.datetime.now(dt.UTC)
    async with scratch_redis_store(redis_url, prefix, server_clock=True) as store:
        # On the server clock a pause lasts its length from the server's now.
        await store.settle(Outcome(real, pauses=[pause("a.example", 3600, real)]))
        await store.settle(Outcome(real, pauses=[pause("b.example", 0.001, real)]))
        await asyncio.sleep(0.05)
        assert await store.resume(SENDER) == 1


async def test_yesterdays_counter_survives_a_new_day_on_every_store(store: Store) -> None:
    yesterday = Quota(SENDER, NOW.date(), 3)
    other = Quota("other.example", NOW.date(), 3)
    keys = ["a@x.example", "b@x.example"]
    await store.reserve(Reservation(keys, NOW, quota=yesterday, sender_domain=SENDER))
    await store.reserve(Reservation(keys[:1], NOW, quota=other, sender_domain="other.example"))
    midnight = NOW + dt.timedelta(days=1)
    today = Quota(SENDER, midnight.date(), 3)
    taken = await store.reserve(Reservation(keys[:1], midnight, quota=today, sender_domain=SENDER))
    assert [a.verdict for a in taken] == [Admit.CLEAR]
    assert await store.quota_used(today) == 1
    assert await store.quota_used(yesterday) == 2  # MemoryStore said 0
    assert await store.quota_used(other) == 1  # and forgot the other sender's day too
    # A reservation just after midnight made with yesterday's quota goes on from its count.
    late = await store.reserve(Reservation(keys, midnight, quota=yesterday, sender_domain=SENDER))
    assert [a.verdict for a in late] == [Admit.CLEAR, Admit.THROTTLED]
