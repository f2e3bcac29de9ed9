"""Delivery events from ESP webhooks: what they record, once, and a provider's own verdict."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from sendguard import (
    Breaker,
    DeliveryStatus,
    Envelope,
    Guard,
    Reply,
    SoftBouncePolicy,
    Stage,
    Store,
    event_from,
)
from sendguard.testing import FakeClock, RecordingAdapter
from tests.conftest import message

WHEN = dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)


def event(**fields: Any) -> Any:
    fields.setdefault("provider", "postmark")
    fields.setdefault("timestamp", WHEN)
    fields.setdefault("sender", "news@sender.example")
    return event_from(**fields)


def test_events_are_classified() -> None:
    hard = event(
        event_id="1",
        type="bounced",
        recipient="a@example.com",
        diagnostic="550 5.1.1 The email account that you tried to reach does not exist",
        permanent=True,
    )
    assert (hard.reason, hard.hard) == ("userunknown", True)
    blocked = event(
        event_id="2",
        type="bounced",
        recipient="b@example.com",
        diagnostic="554 5.7.1 Client host blocked using zen.spamhaus.org",
        permanent=True,
    )
    assert (blocked.reason, blocked.hard) == ("blocked", False)  # the provider's word is not enough
    full = event(
        event_id="3", type="bounced", recipient="c@example.com", diagnostic="552 5.2.2 Mailbox full"
    )
    assert (full.reason, full.hard) == ("mailboxfull", False)
    complaint = event(event_id="4", type="complained", recipient="d@example.com")
    assert (complaint.reason, complaint.hard) == ("feedback", False)


async def test_hard_bounces_and_complaints_suppress_once(
    store: Store, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(store=store)
    batch = [
        event(
            event_id="b1",
            type="bounced",
            recipient="dead@example.com",
            diagnostic="550 5.1.1 user unknown",
            permanent=True,
        ),
        event(event_id="c1", type="complained", recipient="angry@example.com"),
        event(
            event_id="d1",
            type="deferred",
            recipient="slow@example.com",
            diagnostic="451 4.7.1 try later",
        ),
        event(event_id="u1", type="unsubscribed", recipient="bye@example.com"),
    ]
    first = await guard.ingest_events(batch)
    assert [(e.ingested, e.suppressed) for e in first] == [
        (True, True),
        (True, True),
        (True, False),
        (True, False),
    ]
    dead = await guard.suppression("dead@example.com")
    angry = await guard.suppression("angry@example.com")
    assert dead is not None
    assert angry is not None
    assert (dead.reason, dead.source) == ("userunknown", "postmark:webhook")
    assert angry.reason == "feedback"
    assert not await guard.is_suppressed("slow@example.com")
    assert not await guard.is_suppressed("bye@example.com")
    # The provider re-sends the same events: nothing changes, nothing counts twice.
    again = await guard.ingest_events(batch)
    assert [e.ingested for e in again] == [False] * 4


def mailbox_full(event_id: str) -> Any:
    """A soft bounce event of full@example.com."""
    return event(
        event_id=event_id,
        type="bounced",
        recipient="full@example.com",
        diagnostic="552 5.2.2 Mailbox full",
    )


TWO_SOFT_BOUNCES = SoftBouncePolicy(threshold=2, span=dt.timedelta(0))


async def test_resent_soft_bounces_are_counted_once(
    store: Store, make_guard: Callable[..., Guard], clock: FakeClock
) -> None:
    guard = make_guard(store=store, soft_bounce=TWO_SOFT_BOUNCES)
    full = mailbox_full("s1")
    for _ in range(3):
        await guard.ingest_events([full])
    assert await guard.soft_bounces("full@example.com") == 1
    assert not await guard.is_suppressed("full@example.com")
    second = mailbox_full("s2")
    (done,) = await guard.ingest_events([second])
    assert done.suppressed


async def test_an_event_id_is_forgotten_after_30_days(
    store: Store, make_guard: Callable[..., Guard], clock: FakeClock
) -> None:
    guard = make_guard(store=store, soft_bounce=TWO_SOFT_BOUNCES)
    full = mailbox_full("s1")
    await guard.ingest_events([full])
    clock.advance(days=29)
    assert [e.ingested for e in await guard.ingest_events([full])] == [False]
    clock.advance(days=2)  # 31 days after it was first seen: a new event, for all we know
    (again,) = await guard.ingest_events([full])
    assert again.ingested
    assert again.suppressed


async def test_events_count_for_the_breaker(store: Store, make_guard: Callable[..., Guard]) -> None:
    guard = make_guard(store=store, breaker=Breaker(min_volume=1))
    await guard.ingest_events(
        [
            event(event_id=f"x{i}", type="complained", recipient=f"r{i}@example.com")
            for i in range(3)
        ]
    )
    assert (await guard.status("sender.example")).volume.complaints == 3


async def test_a_providers_verdict_wins_over_the_text(clock: FakeClock) -> None:
    class Listed(RecordingAdapter):
        async def deliver(self, envelope: Envelope) -> dict[str, Reply]:
            await super().deliver(envelope)
            return {
                r: Reply(550, "406 Inactive recipient", Stage.RCPT, reason="suppressed")
                for r in envelope.recipients
            }

    guard = Guard(adapter=Listed(), clock=clock, sleep=clock.sleep)
    result = await guard.send(message("listed@example.com"))
    rr = result.recipients["listed@example.com"]
    assert (rr.status, rr.reason, rr.suppressed) == (DeliveryStatus.REJECTED, "suppressed", True)
    entry = await guard.suppression("listed@example.com")
    assert entry is not None
    assert entry.reason == "suppressed"


@pytest.mark.parametrize(
    ("code", "status"), [(451, DeliveryStatus.DEFERRED), (550, DeliveryStatus.REJECTED)]
)
async def test_a_sender_side_verdict_never_suppresses(
    code: int, status: DeliveryStatus, clock: FakeClock
) -> None:
    class Throttled(RecordingAdapter):
        async def deliver(self, envelope: Envelope) -> dict[str, Reply]:
            return {
                r: Reply(code, "HTTP 429", Stage.RCPT, reason="ratelimited")
                for r in envelope.recipients
            }

    guard = Guard(adapter=Throttled(), clock=clock, sleep=clock.sleep)
    result = await guard.send(message("a@example.com"))
    rr = result.recipients["a@example.com"]
    assert not rr.suppressed
    assert rr.status in (status, DeliveryStatus.PAUSED)
    assert not await guard.is_suppressed("a@example.com")


@pytest.mark.parametrize(
    "first_type", ["bounced", "complained", "delivered", "deferred", "unsubscribed", "other"]
)
async def test_a_spent_nonce_changes_nothing_in_any_guard_on_the_store(
    reopen: Callable[[], Store], make_guard: Callable[..., Guard], first_type: str
) -> None:
    """A signed request's nonce is single-use across guards, whatever the event it came with."""
    one, two = make_guard(store=reopen()), make_guard(store=reopen())
    genuine = event(
        provider="mailgun",
        event_id="ev-1",
        type=first_type,
        recipient="someone@example.com",
        diagnostic="452 4.2.2 Mailbox full",
        nonce="mailgun-token:tok-1",
    )
    (done,) = await one.ingest_events([genuine])
    assert done.ingested
    for event_id in ("ev-2", "ev-1", "EV-3"):
        for kind in ("bounced", "complained"):
            forged = event(
                provider="mailgun",
                event_id=event_id,
                type=kind,
                recipient="victim@example.com",
                diagnostic="550 5.1.1 no such user",
                permanent=True,
                nonce="mailgun-token:tok-1",
            )
            (replayed,) = await two.ingest_events([forged])
            assert (replayed.ingested, replayed.suppressed) == (False, False)
    assert not await two.is_suppressed("victim@example.com")
    assert (await two.status("sender.example")).volume.complaints == 0
    # Another token is another request: it takes effect.
    fresh = event(
        provider="mailgun",
        event_id="ev-4",
        type="complained",
        recipient="victim@example.com",
        nonce="mailgun-token:tok-2",
    )
    assert (await two.ingest_events([fresh]))[0].suppressed
