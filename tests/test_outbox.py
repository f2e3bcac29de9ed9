"""The guard keeps what it holds back, and a worker sends it when the guard allows."""

from __future__ import annotations

import asyncio
import datetime as dt
from email.message import EmailMessage
from pathlib import Path

import pytest

from sendguard import (
    ConfigurationError,
    DeliveryStatus,
    Envelope,
    Guard,
    MemoryStore,
    OutboxEvent,
    Reply,
    RetryPolicy,
    SQLiteStore,
    Stage,
    WarmupSchedule,
)
from sendguard._store.outbox import Held
from sendguard.testing import FakeClock, RecordingAdapter

DAY = dt.date(2026, 11, 1)


def mail(to: str, subject: str = "Reset your password", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "App <app@s.example>"
    message["To"] = to
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Follow the link.\n")
    return message


def ramp(*caps: int) -> WarmupSchedule:
    return WarmupSchedule(list(caps), started_on=DAY, counting="sending")


def received(adapter: RecordingAdapter) -> list[str]:
    return [r for e in adapter.envelopes for r in e.recipients]


async def test_mail_over_the_cap_is_kept_and_sent_the_next_day() -> None:
    clock = FakeClock()
    adapter = RecordingAdapter()
    guard = Guard(adapter=adapter, store=MemoryStore(), warmup=ramp(3, 10), clock=clock)
    results = [await guard.send(mail(f"u{n}@x.example")) for n in range(5)]
    assert [r.recipients[f"u{n}@x.example"].status for n, r in enumerate(results)] == [
        DeliveryStatus.ACCEPTED
    ] * 3 + [DeliveryStatus.THROTTLED] * 2
    late = results[3].recipients["u3@x.example"]
    assert late.kept
    assert late.retry_at == dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    assert results[3].kept == ["u3@x.example"]
    assert results[3].outbox_id
    assert results[0].outbox_id is None
    assert received(adapter) == ["u0@x.example", "u1@x.example", "u2@x.example"]
    # Nothing is due before midnight.
    assert (await guard.deliver_outbox()).claimed == 0
    clock.advance(days=1)
    run = await guard.deliver_outbox()
    assert (run.claimed, run.delivered, run.waiting) == (2, 2, 0)
    assert received(adapter)[3:] == ["u3@x.example", "u4@x.example"]
    # The message sent later is the one kept: same Message-ID and body.
    first = adapter.envelopes[3]
    assert first.message["Message-ID"] == results[3].message_id
    assert first.message["Subject"] == "Reset your password"
    assert b"Follow the link." in first.data
    assert await guard.store.kept() == []
    assert (await guard.status("s.example")).sent_today == 2
    await guard.aclose()


async def test_a_deferral_is_kept_with_backoff_and_a_rejection_ends_it() -> None:
    clock = FakeClock()
    greylist = Reply(451, "4.7.1 greylisted, try again later", Stage.RCPT)
    adapter = RecordingAdapter(
        {
            "slow@x.example": [greylist, greylist, Reply(250, "2.0.0 ok", Stage.DATA_END)],
            "gone@x.example": [greylist, Reply(550, "5.1.1 no such user", Stage.RCPT)],
        }
    )
    guard = Guard(adapter=adapter, store=MemoryStore(), retry=RetryPolicy.never(), clock=clock)
    message = mail("slow@x.example, gone@x.example")
    result = await guard.send(message)
    assert result.kept == ["slow@x.example", "gone@x.example"]
    assert clock.sleeps == []  # nothing slept in the send
    retry_at = result.recipients["slow@x.example"].retry_at
    assert retry_at == clock.now + dt.timedelta(seconds=900)
    clock.advance(seconds=900)
    run = await guard.deliver_outbox()
    assert (run.claimed, run.failed, run.waiting) == (2, 1, 1)
    assert await guard.is_suppressed("gone@x.example")
    [left] = await guard.store.kept()
    assert left.recipient == "slow@x.example"
    assert left.attempts == 2
    # The second deferral waits twice as long as the first.
    assert left.next_at == clock.now + dt.timedelta(seconds=1800)
    clock.advance(seconds=1800)
    run = await guard.deliver_outbox()
    assert run.delivered == 1
    assert [sorted(e.recipients) for e in adapter.envelopes] == [
        ["gone@x.example", "slow@x.example"],
        ["gone@x.example", "slow@x.example"],
        ["slow@x.example"],
    ]
    await guard.aclose()


async def test_uncertain_delivery_is_kept_for_a_person_and_never_resent() -> None:
    clock = FakeClock()
    lost = Reply(None, "connection lost after the final dot", Stage.DATA_END)
    adapter = RecordingAdapter({"a@x.example": [lost]})
    guard = Guard(adapter=adapter, store=MemoryStore(), clock=clock)
    result = await guard.send(mail("a@x.example"))
    rr = result.recipients["a@x.example"]
    assert rr.status is DeliveryStatus.DEFERRED
    assert rr.uncertain
    assert rr.kept
    [entry] = await guard.store.kept()
    assert entry.state is Held.UNCERTAIN
    clock.advance(days=2)
    assert (await guard.deliver_outbox()).claimed == 0
    assert len(adapter.envelopes) == 1
    await guard.aclose()


async def test_a_paused_sender_keeps_its_mail_until_the_pause_ends() -> None:
    clock = FakeClock()
    blocked = Reply(
        554, "5.7.1 Service unavailable; client host blocked using Spamhaus", Stage.RCPT
    )
    adapter = RecordingAdapter({"a@x.example": [blocked, Reply(250, "ok", Stage.DATA_END)]})
    guard = Guard(adapter=adapter, store=MemoryStore(), clock=clock)
    first = await guard.send(mail("a@x.example"))
    assert first.recipients["a@x.example"].status is DeliveryStatus.REJECTED
    assert not first.recipients["a@x.example"].kept  # a permanent refusal is final
    second = await guard.send(mail("b@x.example"))
    rr = second.recipients["b@x.example"]
    assert rr.status is DeliveryStatus.PAUSED
    assert rr.kept
    clock.advance(minutes=30)
    assert (await guard.deliver_outbox()).claimed == 0
    clock.advance(hours=1)
    assert (await guard.deliver_outbox()).delivered == 1
    assert received(adapter) == ["a@x.example", "b@x.example"]
    await guard.aclose()


async def test_mail_kept_longer_than_max_age_expires_as_a_soft_bounce() -> None:
    clock = FakeClock()
    events: list[OutboxEvent] = []
    guard = Guard(
        adapter=RecordingAdapter(),
        store=MemoryStore(),
        warmup=ramp(0, 0, 0, 0, 0, 0, 0),
        clock=clock,
        max_age=dt.timedelta(days=2),
        on_outbox=events.append,
    )
    await guard.send(mail("a@x.example"))
    assert [e.kind for e in events] == ["kept"]
    clock.advance(days=1)
    assert (await guard.deliver_outbox()).waiting == 1
    clock.advance(days=1)
    run = await guard.deliver_outbox()
    assert run.expired == 1
    assert [e.kind for e in events] == ["kept", "expired"]
    assert events[-1].result.status is DeliveryStatus.EXPIRED
    assert await guard.soft_bounces("a@x.example") == 1
    assert await guard.store.kept() == []
    await guard.aclose()


async def test_bulk_mail_leaves_part_of_the_cap_to_transactional_mail() -> None:
    clock = FakeClock()
    adapter = RecordingAdapter()
    guard = Guard(adapter=adapter, store=MemoryStore(), warmup=ramp(10), clock=clock)
    for n in range(10):
        await guard.send(mail(f"n{n}@x.example", "News"), stream="bulk")
    assert len(adapter.envelopes) == 8  # 0.8 of the cap
    reset = await guard.send(mail("r@x.example"))
    assert reset.recipients["r@x.example"].status is DeliveryStatus.ACCEPTED
    # The header names the stream too, and is not sent.
    await guard.send(mail("h@x.example", X_Sendguard_Stream="bulk"))
    assert adapter.envelopes[-1].recipients == ("r@x.example",)
    backlog = {b.stream: b.waiting for b in await guard.backlog()}
    assert backlog == {"bulk": 3}
    clock.advance(days=1)
    await guard.send(mail("r2@x.example"))
    await guard.deliver_outbox()
    assert b"X-Sendguard-Stream" not in b"".join(e.data for e in adapter.envelopes)
    with pytest.raises(ConfigurationError, match="unknown stream"):
        await guard.send(mail("a@x.example"), stream="newsletter")
    await guard.aclose()


async def test_keep_false_keeps_nothing() -> None:
    guard = Guard(adapter=RecordingAdapter(), store=MemoryStore(), warmup=ramp(0), keep=False)
    result = await guard.send(mail("a@x.example"))
    assert result.recipients["a@x.example"].status is DeliveryStatus.THROTTLED
    assert not result.kept
    assert await guard.store.kept() == []
    await guard.aclose()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_backlog_of_1000_drains_over_the_days_the_ramp_allows_transactional_first(
    kind: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    adapter = RecordingAdapter()
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "outbox.db")
    guard = Guard(
        adapter=adapter,
        store=store,
        warmup=ramp(20),
        clock=clock,
        max_age=dt.timedelta(days=90),  # the default 5 days would expire most of it
    )
    streams = {}
    for n in range(1000):
        stream = "transactional" if n % 5 == 0 else "bulk"  # 200 and 800
        streams[f"u{n}@x.example"] = stream
        await guard.send(mail(f"u{n}@x.example"), stream=stream)
    per_day = [len(adapter.envelopes)]
    assert per_day == [20]
    while sum(per_day) < 1000 and len(per_day) < 100:
        clock.advance(days=1)
        clock.now = clock.now.replace(hour=0, minute=1)
        before = len(adapter.envelopes)
        run = await guard.deliver_outbox(limit=100)
        while run.claimed and run.claimed != run.waiting:
            run = await guard.deliver_outbox(limit=100)
        per_day.append(len(adapter.envelopes) - before)
    sent = [e.recipients[0] for e in adapter.envelopes]
    assert sorted(sent) == sorted(streams)  # every one, once
    assert max(per_day) <= 20  # never over the day's cap
    # Day 0 in the order sent: bulk stops once 16 of the day (0.8 of the cap) are used,
    # transactional mail takes the rest.  After that the transactional backlog goes first,
    # 20 a day; bulk gets what it leaves of its 16, then 16 a day.
    first_day = [streams[a] for a in sent[:20]]
    assert first_day.count("bulk") == 12
    later = [streams[a] for a in sent[20:]]
    assert later[:192] == ["transactional"] * 192
    assert set(later[192:]) == {"bulk"}
    assert per_day[1:10] == [20] * 9  # 180 transactional
    assert per_day[10] == 16  # the last 12 transactional and 4 bulk
    assert per_day[11:] == [16] * 49  # 784 bulk
    assert sum(per_day) == 1000
    assert await guard.backlog() == []
    await guard.aclose()


async def test_a_deferred_message_goes_again_with_the_message_id_it_went_with_first() -> None:
    clock = FakeClock()
    greylist = Reply(451, "4.7.1 greylisted", Stage.RCPT)
    adapter = RecordingAdapter({"a@x.example": [greylist, Reply(250, "ok", Stage.DATA_END)]})
    guard = Guard(adapter=adapter, store=MemoryStore(), retry=RetryPolicy.never(), clock=clock)
    result = await guard.send(mail("a@x.example"))  # no Message-ID: the guard makes one
    assert result.kept == ["a@x.example"]
    first, kept_id = adapter.envelopes[0], result.message_id
    assert first.data.startswith(f"Message-ID: {kept_id}\r\n".encode())
    clock.advance(hours=1)
    assert (await guard.deliver_outbox()).delivered == 1
    again = adapter.envelopes[1]
    assert again.message["Message-ID"] == kept_id
    assert again.data.count(b"Message-ID:") == 1
    assert again.data == first.data
    await guard.aclose()


class _Stalling(RecordingAdapter):
    """Answers b@ at once; never answers a@ (the caller gives up first)."""

    async def deliver(self, envelope: Envelope) -> dict[str, Reply]:
        self.envelopes.append(envelope)
        if "a@x.example" in envelope.recipients:
            await asyncio.Event().wait()
        return {r: Reply(250, "ok", Stage.DATA_END) for r in envelope.recipients}


async def test_a_send_cut_off_keeps_what_it_held_back_and_what_was_in_flight_as_uncertain() -> None:
    guard = Guard(adapter=_Stalling(), store=MemoryStore(), warmup=ramp(1))
    task = asyncio.create_task(guard.send(mail("a@x.example, late@x.example")))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await guard._recorder.drain()
    kept = {e.recipient: e for e in await guard.store.kept()}
    assert set(kept) == {"a@x.example", "late@x.example"}
    assert kept["a@x.example"].state is Held.UNCERTAIN  # it may have the message
    assert kept["late@x.example"].state is Held.WAITING  # over the cap: not sent yet
    letter = await guard.store.letter(kept["late@x.example"].letter)
    assert letter is not None
    assert letter.data.count(b"Message-ID:") == 1
    await guard.aclose()
