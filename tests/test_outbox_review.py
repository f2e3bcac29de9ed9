"""An adversarial review of the outbox: each test names a defect and asserts the right behaviour.

Every test here fails on the code as reviewed (branch h4 at the review's start); each one's
docstring says what goes wrong and where.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any, NamedTuple

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
    SendGuardError,
    Stage,
    StoreError,
    WarmupSchedule,
)
from sendguard._framework_message import thaw
from sendguard._store import Outcome, Settled
from sendguard._store.outbox import Finish, Held
from sendguard.testing import FakeClock, RecordingAdapter

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

GREYLIST = Reply(451, "4.7.1 greylisted, try again later", Stage.RCPT)
OK = Reply(250, "2.0.0 ok", Stage.DATA_END)


def mail(to: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "App <app@s.example>"
    message["To"] = to
    message["Subject"] = "Your receipt"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Thank you.\n")
    return message


def handed(adapter: RecordingAdapter) -> list[str]:
    return [r for e in adapter.envelopes for r in e.recipients]


# -- a recipient sent twice ----------------------------------------------------------------------


class _HandsOverThenRaises(RecordingAdapter):
    """Greylists the first try; on the second, hands the message over, then raises.

    A provider client that fails after the request went out (its response could not be read,
    say) raises a SendGuardError through the Deliverer (``_call_adapter`` re-raises those).
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
        self.envelopes.append(envelope)
        self.calls += 1
        if self.calls == 1:
            return dict.fromkeys(envelope.recipients, GREYLIST)
        if self.calls == 2:
            raise SendGuardError("the provider's answer could not be read")
        return dict.fromkeys(envelope.recipients, OK)


async def test_worker_resend_that_raises_after_hand_over_is_not_sent_again() -> None:
    """A worker re-send that raises after handing the message over is re-sent by itself.

    ``Keeper._letter`` (sendguard/_guard/outbox.py) finishes every live entry with
    ``_later`` (WAITING) on any exception from ``_resend``, assuming "raised before anything
    was handed over"; but ``Guard._send`` also re-raises exceptions from ``transmit`` after
    ``_start`` marked the entries SENDING and the adapter had them.  The first-send path
    (``_keep_cut_off``) keeps in-flight recipients as uncertain; the worker path does not.
    """
    clock = FakeClock()
    adapter = _HandsOverThenRaises()
    guard = Guard(adapter=adapter, store=MemoryStore(), retry=RetryPolicy.never(), clock=clock)
    result = await guard.send(mail("a@x.example"))
    assert result.kept == ["a@x.example"]
    clock.advance(hours=1)
    await guard.deliver_outbox()  # hands it over, then raises
    assert handed(adapter) == ["a@x.example", "a@x.example"]
    [entry] = await guard.store.kept()
    assert entry.state is Held.UNCERTAIN  # it may have been delivered: a person decides
    clock.advance(days=1)
    await guard.deliver_outbox()
    assert handed(adapter) == ["a@x.example", "a@x.example"]  # not a third time
    await guard.aclose()


class _Slow(RecordingAdapter):
    """Holds every delivery until released (an SMTP server slow after the final dot)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.first = True

    async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
        self.envelopes.append(envelope)
        if self.first:
            self.first = False
            return dict.fromkeys(envelope.recipients, GREYLIST)
        await self.go.wait()
        return dict.fromkeys(envelope.recipients, OK)


async def test_a_delivery_longer_than_the_lease_is_not_reported_as_a_lost_worker() -> None:
    """A delivery still in progress when its first lease runs out keeps its worker's hold.

    The pass renews its claim every third of the lease, so another worker's ``claim`` does
    not end it (and call the recipient uncertain) while the first worker still delivers: the
    recipient is handed over once more than the greylisted try, never twice.  Real time, a
    lease of 0.3 s, a delivery of 1 s.
    """
    store = MemoryStore()
    adapter = _Slow()
    one = Guard(adapter=adapter, store=store, retry=RetryPolicy(attempts=1, defer_for=0.01))
    two = Guard(adapter=adapter, store=store, retry=RetryPolicy.never())
    await one.send(mail("a@x.example"))
    await asyncio.sleep(0.05)
    first = asyncio.create_task(one.deliver_outbox(lease=dt.timedelta(seconds=0.3)))
    await asyncio.sleep(1.0)  # handed to the provider, waiting for its reply: 3 leases
    assert (await two.deliver_outbox()).claimed == 0  # the hold was renewed
    [entry] = await store.kept()
    assert entry.state is Held.SENDING
    adapter.go.set()
    assert (await first).delivered == 1
    assert handed(adapter).count("a@x.example") == 2  # the greylisted try, then once
    assert await store.kept() == []


class _SlowSettle(MemoryStore):
    """A store whose ``settle`` takes a while (a busy SQLite file, a slow Redis)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    async def settle(self, outcome: Outcome) -> Settled:
        self.entered.set()
        await self.go.wait()
        return await super().settle(outcome)


async def test_a_send_cancelled_while_its_outcome_is_recorded_keeps_what_it_held_back() -> None:
    """A send cancelled while ``settle`` runs keeps nothing of what it held back.

    ``Guard._send`` keeps held-back recipients only in ``_keep_held`` (after ``settle``) or in
    ``_keep_cut_off`` (in the ``except`` around ``transmit``).  ``settle`` sits between the
    two, outside the ``try``: a caller's timeout that strikes while the outcome is written
    (``asyncio.timeout`` around ``guard.send``, a request cancelled) skips both, and the
    greylisted recipient is neither sent nor kept, with no result to tell anyone.
    """
    store = _SlowSettle()
    adapter = RecordingAdapter(
        {"b@x.example": [GREYLIST], "c@x.example": [Reply(550, "5.1.1 no such user", Stage.RCPT)]}
    )
    guard = Guard(adapter=adapter, store=store, retry=RetryPolicy.never())
    task = asyncio.create_task(guard.send(mail("a@x.example, b@x.example, c@x.example")))
    await asyncio.wait_for(store.entered.wait(), 5)
    task.cancel()  # the caller's timeout
    with pytest.raises(asyncio.CancelledError):
        await task
    store.go.set()
    await guard._recorder.drain()
    kept = {e.recipient: e.state for e in await store.kept()}
    assert kept == {"b@x.example": Held.WAITING}
    await guard.aclose()


# -- lost, or left for a person, though nothing was uncertain ----------------------------------


class _FinishFailsOnce(MemoryStore):
    """A store that fails one ``finish`` call (a restart, a failover, a timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next_finish = False

    async def finish(self, token: str, finished: Sequence[Finish]) -> int:
        if self.fail_next_finish:
            self.fail_next_finish = False
            raise StoreError("the store is restarting")
        return await super().finish(token, finished)


class _StartFailsOnce(MemoryStore):
    """A store whose first ``start`` call fails (a timeout, a failover)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next_start = False

    async def start(self, token: str, ids: Sequence[str], now: dt.datetime) -> list[str]:
        if self.fail_next_start:
            self.fail_next_start = False
            raise StoreError("the store gave no answer to start")
        return await super().start(token, ids, now)


async def test_a_failed_start_gives_back_the_quota_its_resend_reserved() -> None:
    """A ``start`` that fails leaks the day's quota the re-send had reserved.

    In ``Guard._send`` the admission reserves quota for the admitted recipients, then
    ``_start`` runs *outside* the ``try`` whose ``except`` settles what was not spent; a
    StoreError from ``_start`` goes straight to ``Keeper._letter``, nothing is given back, and
    the day's warmup cap counts a send that never happened: here the only slot of the day is
    gone, and the next message is throttled though nothing went out.
    """
    clock = FakeClock(dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC))
    store = _StartFailsOnce()
    adapter = RecordingAdapter()
    guard = Guard(
        adapter=adapter,
        store=store,
        clock=clock,
        warmup=WarmupSchedule([1, 1, 1], started_on=dt.date(2026, 11, 1)),
    )
    await guard.send(mail("first@x.example"))  # today's one send
    assert (await guard.send(mail("a@x.example"))).kept == ["a@x.example"]
    clock.advance(days=1)
    store.fail_next_start = True
    await guard.deliver_outbox()  # a: admitted, quota reserved, start fails: not sent
    assert handed(adapter) == ["first@x.example"]
    status = await guard.status("s.example")
    assert status.sent_today == 0
    result = await guard.send(mail("b@x.example"))
    assert result.recipients["b@x.example"].status is DeliveryStatus.ACCEPTED
    await guard.aclose()


async def test_a_deferred_resend_whose_finish_failed_comes_back_waiting_not_uncertain() -> None:
    """One failed ``finish`` turns a recipient refused with 451 at RCPT into "uncertain".

    ``Keeper._letter`` logs the StoreError and relies on the lease ("what was sent becomes
    uncertain, the rest comes back"); but the entry was *started* (SENDING), so when the lease
    runs out the next claim makes it UNCERTAIN: a recipient the provider certainly does not
    have is never sent again without a person, and (uncertain entries are never claimed)
    never expires either.  The finish should be retried (or journalled) rather than dropped.
    """
    clock = FakeClock()
    store = _FinishFailsOnce()
    adapter = RecordingAdapter({"a@x.example": [GREYLIST, GREYLIST, OK]})
    guard = Guard(adapter=adapter, store=store, retry=RetryPolicy.never(), clock=clock)
    await guard.send(mail("a@x.example"))
    clock.advance(hours=1)
    store.fail_next_finish = True
    await guard.deliver_outbox()  # 451 again; its finish fails
    clock.advance(hours=3)
    await guard.deliver_outbox()
    clock.advance(hours=3)
    await guard.deliver_outbox()
    assert handed(adapter) == ["a@x.example"] * 3
    assert await store.kept() == []  # delivered on the third try
    await guard.aclose()


class _OneStalls(RecordingAdapter):
    """Answers at once, except for *slow*, whose delivery waits for ``go``."""

    def __init__(self, slow: str) -> None:
        super().__init__({"*": [GREYLIST]})
        self.slow = slow
        self.go = asyncio.Event()
        self.greylisted: set[str] = set()

    async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
        self.envelopes.append(envelope)
        [rcpt] = envelope.recipients
        if rcpt not in self.greylisted:  # the first send: kept for the worker
            self.greylisted.add(rcpt)
            return {rcpt: GREYLIST}
        if rcpt == self.slow:
            await self.go.wait()
        return {rcpt: OK}


async def test_a_cancelled_pass_finishes_the_recipients_it_delivered() -> None:
    """A pass cancelled while one copy is in flight leaves the delivered ones "uncertain".

    With a ``bounce_secret`` each recipient is its own envelope; cancel the pass (a Celery
    time limit, ``run_outbox`` cancelled as its docstring allows) while b's copy is in flight
    and a's was accepted: ``Guard._send`` re-raises without returning what it learned, and
    ``Keeper._letter`` never finishes a, which the lease then turns UNCERTAIN ("the worker
    sending it was lost").  a was delivered: it should be finished (deleted); only b is
    uncertain.
    """
    clock = FakeClock()
    adapter = _OneStalls("b@x.example")
    guard = Guard(
        adapter=adapter,
        store=MemoryStore(),
        retry=RetryPolicy.never(),
        clock=clock,
        bounce_secret="a-secret-of-32-characters-------",
    )
    result = await guard.send(mail("a@x.example, b@x.example"))
    assert sorted(result.kept) == ["a@x.example", "b@x.example"]
    clock.advance(hours=1)
    task = asyncio.create_task(guard.deliver_outbox())
    await asyncio.sleep(0.05)
    assert "a@x.example" in handed(adapter)[2:]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await guard._recorder.drain()
    clock.advance(minutes=10)
    await guard.deliver_outbox()  # the leases run out
    left = {e.recipient: e.state for e in await guard.store.kept()}
    assert left == {"b@x.example": Held.UNCERTAIN}
    await guard.aclose()


async def test_a_stopped_worker_gives_back_the_claims_it_had_not_started() -> None:
    """``run_outbox(stop=...)`` (SIGTERM) sends every letter of the pass before it stops.

    README: "SIGTERM or SIGINT stop a worker gracefully: deliveries in flight finish, claims
    not started are given back".  ``run_outbox`` only looks at *stop* between passes, and
    ``Keeper.deliver`` never does, so a stopped worker goes on sending up to ``limit``
    letters (with in-process retries and their sleeps) until a supervisor SIGKILLs it,
    leaving its copies in flight uncertain.  A stop should end the pass at its next letter.
    """
    clock = FakeClock()
    adapter = _OneStalls("a@x.example")
    guard = Guard(adapter=adapter, store=MemoryStore(), retry=RetryPolicy.never(), clock=clock)
    await guard.send(mail("a@x.example"))
    await guard.send(mail("b@x.example"))
    clock.advance(hours=1)
    stop = asyncio.Event()
    task = asyncio.create_task(guard.run_outbox(stop=stop, concurrency=1, poll=0.01))
    await asyncio.sleep(0.05)  # a's copy in flight; b claimed, not started
    stop.set()  # SIGTERM
    adapter.go.set()  # a's delivery finishes, as it should
    await asyncio.wait_for(task, 5)
    assert handed(adapter)[2:] == ["a@x.example"]
    left = {e.recipient: e.state for e in await guard.store.kept()}
    assert left == {"b@x.example": Held.WAITING}
    await guard.aclose()


async def test_outbox_retry_of_an_old_uncertain_entry_sends_it_rather_than_expiring_it() -> None:
    """``outbox retry`` of an uncertain entry older than ``max_age`` expires it unsent.

    Uncertain entries wait for a person with no time limit (they are never claimed, so never
    expire); a person who looks after the weekend and runs ``sendguard outbox retry ID``
    ("due now, uncertain ones included") makes it due, and the next pass's
    ``Keeper._letter`` sees ``now - created_at >= max_age`` and expires it at once: not sent,
    ``mail_expired`` told, and a soft bounce counted against the recipient.  A person's retry
    should get one real attempt (e.g. ``retry`` resets the age, or expiry spares retried ones).
    """
    clock = FakeClock()
    lost = Reply(None, "connection lost after the final dot", Stage.DATA_END)
    adapter = RecordingAdapter({"a@x.example": [lost, OK]})
    events: list[OutboxEvent] = []
    guard = Guard(adapter=adapter, store=MemoryStore(), clock=clock, on_outbox=events.append)
    await guard.send(mail("a@x.example"))
    [entry] = await guard.store.kept()
    assert entry.state is Held.UNCERTAIN
    clock.advance(days=6)  # a person looks at it after a long weekend
    assert await guard.store.retry([entry.id], clock()) == 1  # `sendguard outbox retry ID`
    run = await guard.deliver_outbox()
    assert run.delivered == 1
    assert handed(adapter) == ["a@x.example", "a@x.example"]
    assert [e.kind for e in events] == ["kept", "delivered"]
    await guard.aclose()


async def test_a_deferred_recipient_is_not_retried_every_poll_when_defer_for_is_zero() -> None:
    """With ``defer_for=0`` the outbox retries a greylisted recipient on every poll, for days.

    ``Keeper._backoff`` doubles ``retry.defer_for``: 0 doubled is 0, and ``MAX_BACKOFF`` is only
    a ceiling, so a deferred recipient is due again at once after every try; ``run_outbox``
    polls every 5 s and hits the refusing server about 17 000 times a day until ``max_age``.
    ``defer_for=0`` is accepted (``RetryPolicy`` allows 0; the Flask tests' own settings use
    it to mean "no wait in the call").  The outbox needs a floor (Postfix waits at least
    ``minimal_backoff_time``, 300 s).
    """
    clock = FakeClock()
    adapter = RecordingAdapter({"a@x.example": [GREYLIST]})
    guard = Guard(
        adapter=adapter,
        store=MemoryStore(),
        retry=RetryPolicy(attempts=1, defer_for=0),
        clock=clock,
    )
    await guard.send(mail("a@x.example"))
    for _ in range(60):  # five minutes of a worker polling every 5 s
        clock.advance(seconds=5)
        await guard.deliver_outbox()
    assert len(adapter.envelopes) <= 3
    await guard.aclose()


# -- streams -------------------------------------------------------------------------------------


async def test_mail_of_a_stream_removed_from_the_config_still_expires() -> None:
    """Kept mail of a stream no longer in ``Guard(streams=)`` is never claimed, never expires.

    ``Keeper.deliver`` claims only ``streams=list(self.streams)`` and expiry happens only to
    claimed entries (``Keeper._letter``), so the entries stay "waiting" forever: no
    ``mail_expired`` event, no soft bounce, nobody told.  They should at least expire after
    ``max_age`` (or the guard refuse to start while the store holds unknown streams).
    """
    clock = FakeClock()
    store = MemoryStore()
    before = Guard(
        adapter=RecordingAdapter({"a@x.example": [GREYLIST]}),
        store=store,
        retry=RetryPolicy.never(),
        clock=clock,
    )
    result = await before.send(mail("a@x.example"), stream="bulk")
    assert result.kept == ["a@x.example"]
    events: list[OutboxEvent] = []
    after = Guard(
        adapter=RecordingAdapter(),
        store=store,
        streams={"transactional": 1.0},
        clock=clock,
        on_outbox=events.append,
    )
    clock.advance(days=6)
    await after.deliver_outbox()
    assert [e.kind for e in events] == ["expired"]
    assert await store.kept() == []


async def test_a_bulk_only_sender_on_a_ramp_counted_in_sending_days_gets_going() -> None:
    """Bulk mail on a ramp that starts at 1, counted in sending days, never goes out at all.

    ``Admitter.admit`` scales the day's cap by the stream's share with ``math.floor``: a cap
    of 1 times 0.8 is 0, so no bulk send is admitted; with ``counting="sending"`` the ramp
    only moves on after a day with sends, so it stays on day 1 forever: every bulk message
    is kept, throttled each midnight, and expires after ``max_age``.  A share should never
    round a positive cap down to nothing (``max(1, ...)``, or round up).
    """
    clock = FakeClock(dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC))
    adapter = RecordingAdapter()
    guard = Guard(
        adapter=adapter,
        store=MemoryStore(),
        clock=clock,
        stream="bulk",
        warmup=WarmupSchedule([1, 2, 4, 8], started_on=dt.date(2026, 11, 1), counting="sending"),
    )
    for day in range(6):
        await guard.send(mail(f"u{day}@x.example"))
        await guard.deliver_outbox()
        clock.advance(days=1)
    assert adapter.envelopes  # something went out in six days
    await guard.aclose()


def test_the_stream_header_never_reaches_a_framework_backend(tmp_path: Path) -> None:
    """``X-Sendguard-Stream`` given in Django's ``headers=`` is sent to the provider.

    README: the header is "taken off before sending"; ``Guard._stream_of`` removes it from the
    MIME copy only, but a ``BackendAdapter`` hands the backend a copy of the *framework*
    message (``message_for`` in sendguard/_backend_adapter.py), whose ``extra_headers`` still
    hold it: every ESP backend (anymail's) and locmem get the internal header.
    """
    from django.core import mail as django_mail  # noqa: PLC0415 (Django tests only)
    from django.core.mail import EmailMessage as DjangoMessage  # noqa: PLC0415
    from django.test import override_settings  # noqa: PLC0415
    from sendguard_django import reset_guard  # noqa: PLC0415

    reset_guard()
    conf = {
        "BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "STORE": f"sqlite:///{tmp_path / 'sendguard.db'}",
    }
    try:
        with override_settings(
            EMAIL_BACKEND="sendguard_django.EmailBackend", SENDGUARD=conf, BASE_DIR=tmp_path
        ):
            django_mail.outbox = []
            message = DjangoMessage(
                "News", "Body", "shop@s.example", ["a@x.example"],
                headers={"X-Sendguard-Stream": "bulk"},
            )  # fmt: skip
            assert message.send() == 1
            [sent] = django_mail.outbox
            assert sent.message()["X-Sendguard-Stream"] is None
    finally:
        reset_guard()


def test_a_kept_django_message_keeps_all_its_headers_when_one_value_is_not_json(
    tmp_path: Path,
) -> None:
    """One header value JSON cannot hold drops *every* header of a kept Django message.

    Django takes any value in ``headers=`` (it ``str()``s them): a ``uuid.UUID`` entity id is
    common.  ``freeze`` drops a whole attribute when one value inside it has no JSON form
    (``_encode`` raises for the UUID, ``freeze`` catches it per attribute), so the worker's
    re-send loses ``extra_headers`` altogether: here ``List-Unsubscribe`` (required of bulk
    senders by Gmail and Yahoo) and ``Reply-To``-like headers vanish, with one log line.
    ``freeze`` should keep what it can (``str()`` header values, as Django does) or refuse.
    """
    import uuid  # noqa: PLC0415

    from django.core import mail as django_mail  # noqa: PLC0415 (Django tests only)
    from django.core.mail import EmailMessage as DjangoMessage  # noqa: PLC0415
    from django.test import override_settings  # noqa: PLC0415
    from sendguard_django import reset_guard  # noqa: PLC0415
    from sendguard_django._config import _options, config  # noqa: PLC0415

    today = dt.datetime.now(dt.UTC).date()
    conf = {
        "BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "STORE": f"sqlite:///{tmp_path / 'sendguard.db'}",
        "WARMUP": {"table": {"1": 1}, "started_on": today.isoformat()},
    }
    unsubscribe = "<https://s.example/unsubscribe/42>"
    reset_guard()
    try:
        with override_settings(
            EMAIL_BACKEND="sendguard_django.EmailBackend", SENDGUARD=conf, BASE_DIR=tmp_path
        ):
            django_mail.outbox = []
            DjangoMessage("First", "Body", "shop@s.example", ["first@x.example"]).send()
            DjangoMessage(
                "News", "Body", "shop@s.example", ["a@x.example"],
                headers={"List-Unsubscribe": unsubscribe, "X-Entity-Ref-ID": uuid.uuid4()},
            ).send()  # fmt: skip
            assert len(django_mail.outbox) == 1  # the second is kept: over the cap

            async def work() -> int:
                tomorrow = dt.datetime.combine(
                    today + dt.timedelta(days=1), dt.time(0, 5), tzinfo=dt.UTC
                )
                async with Guard(**{**_options(config()), "clock": FakeClock(tomorrow)}) as g:
                    return (await g.deliver_outbox()).delivered

            assert asyncio.run(work()) == 1
            later = django_mail.outbox[-1]
            assert later.to == ["a@x.example"]
            assert later.message()["List-Unsubscribe"] == unsubscribe
    finally:
        reset_guard()


def test_django_mail_kept_is_sent_on_the_thread_that_sent_the_mail(tmp_path: Path) -> None:
    """Django's ``mail_kept`` receivers run on the guard's background thread.

    ``SyncGuard`` runs the guard on its own loop thread and ``Keeper._tell`` calls
    ``send_outbox_signal`` there, so a receiver is outside the request's thread: its ORM
    queries use another connection, outside the request's transaction (``ATOMIC_REQUESTS``,
    ``transaction.atomic()`` around the view): it cannot see the rows the request has not
    committed, and on SQLite it waits for the write lock the blocked request thread holds.
    Django signals run in the sender's thread; the guard should hand the kept events back to
    the calling thread (e.g. send them from the backend after ``guard.send`` returns).
    """
    import threading  # noqa: PLC0415

    from django.core.mail import EmailMessage as DjangoMessage  # noqa: PLC0415 (Django only)
    from django.test import override_settings  # noqa: PLC0415
    from sendguard_django import reset_guard  # noqa: PLC0415
    from sendguard_django.signals import mail_kept  # noqa: PLC0415

    conf = {
        "BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "STORE": f"sqlite:///{tmp_path / 'sendguard.db'}",
        "WARMUP": {"table": {"1": 0}, "started_on": dt.date.today().isoformat()},
    }
    threads: list[int] = []

    def on_kept(**_: object) -> None:
        threads.append(threading.get_ident())

    mail_kept.connect(on_kept)
    reset_guard()
    try:
        with override_settings(
            EMAIL_BACKEND="sendguard_django.EmailBackend", SENDGUARD=conf, BASE_DIR=tmp_path
        ):
            assert DjangoMessage("Hi", "Body", "shop@s.example", ["a@x.example"]).send() == 1
        assert threads == [threading.get_ident()]
    finally:
        mail_kept.disconnect(on_kept)
        reset_guard()


def test_flask_mail_kept_through_a_mailman_backend_can_be_sent_by_the_worker(
    tmp_path: Path,
) -> None:
    """Flask-Mail mail kept with ``SENDGUARD_BACKEND`` can never be rebuilt by a worker.

    Flask-Mail messages reach the guard as ``sendguard_flask._flask_mail.RawMail`` (the
    ``original``), which ``freeze`` writes down; but the Flask-Mailman ``BackendAdapter`` is
    made with ``message_base=flask_mailman.EmailMessage`` (sendguard_flask/mailman.py) and
    ``RawMail`` is no subclass of it, so ``thaw`` raises ConfigurationError on every pass:
    each kept Flask-Mail message is retried with backoff for ``max_age`` and then expires,
    counted as a soft bounce against a recipient that never bounced.
    """
    import flask_mail  # noqa: PLC0415 (Flask tests only)
    import flask_mailman  # noqa: PLC0415
    from flask import Flask  # noqa: PLC0415
    from sendguard_flask import SendGuard, current_guard  # noqa: PLC0415

    app = Flask("review", instance_path=str(tmp_path / "instance"))
    app.config.update(
        MAIL_DEFAULT_SENDER="news@shop.example",
        SENDGUARD_STORE=f"sqlite:///{tmp_path / 'sendguard.db'}",
        SENDGUARD_BACKEND="locmem",
        SENDGUARD_WARMUP=WarmupSchedule.from_table(
            {1: 1}, started_on=dt.datetime.now(dt.UTC).date()
        ),
    )
    SendGuard(app)
    flask_mailman.Mail(app)
    mail = flask_mail.Mail(app)
    guard = current_guard(app)
    try:
        with app.app_context():
            mail.send(flask_mail.Message("Hi", recipients=["a@x.example"], body="one"))
            mail.send(flask_mail.Message("Hi", recipients=["b@x.example"], body="two"))
            [entry] = guard._call(guard.guard.store.kept())  # b: over the cap, kept
            letter = guard._call(guard.guard.store.letter(entry.letter))
            assert letter is not None
            rebuilt: Any = guard.guard.adapter.restore(letter.original)
            assert rebuilt.to == ["b@x.example"]
    finally:
        guard.close()


# -- the CLI -------------------------------------------------------------------------------------


def test_outbox_list_and_show_print_no_terminal_control_characters(tmp_path: Path) -> None:
    """``outbox list`` / ``show`` write a remote server's reply text raw to the terminal.

    An entry's ``detail`` is the last SMTP reply (text the recipient's MX chooses) and
    ``outbox_list``/``outbox_show`` (sendguard/cli.py) echo it as is: an escape sequence in a
    451 reply retitles, clears or rewrites the operator's terminal (the CSV export already
    defends against formula injection; this output does not).  Control characters should be
    shown escaped.
    """
    from typer.testing import CliRunner  # noqa: PLC0415

    from sendguard import SQLiteStore  # noqa: PLC0415
    from sendguard.cli import app  # noqa: PLC0415

    db = tmp_path / "app.db"
    hostile = Reply(451, "4.7.1 try later\x1b]0;pwned\x07\x1b[2J", Stage.RCPT)

    async def work() -> str:
        async with Guard(
            adapter=RecordingAdapter({"a@x.example": [hostile]}),
            store=SQLiteStore(db),
            retry=RetryPolicy.never(),
        ) as guard:
            return (await guard.send(mail("a@x.example"))).outbox_id or ""

    letter = asyncio.run(work())
    env = {"SENDGUARD_STORE": f"sqlite:///{db}"}
    listed = CliRunner().invoke(app, ["outbox", "list"], env=env)
    shown = CliRunner().invoke(app, ["outbox", "show", letter], env=env)
    assert listed.exit_code == 0
    assert shown.exit_code == 0
    assert "try later" in listed.stdout
    assert "\x1b" not in listed.stdout
    assert "\x1b" not in shown.stdout


# -- SMTPUTF8 letters ----------------------------------------------------------------------------


async def test_an_smtputf8_letter_resent_to_an_ascii_recipient_keeps_its_text() -> None:
    """A UTF-8 letter re-sent to an ASCII recipient goes out as ``=?unknown-8bit?...?=``.

    The letter is kept as UTF-8 bytes (a recipient of the first send needed SMTPUTF8).  The
    worker parses them back with ``email.message_from_bytes`` (``Keeper._resend``), which holds
    8-bit header text as surrogate escapes; ``Deliverer.transmit`` then re-serializes that for
    plain SMTP, and the stdlib writes the escapes as the pseudo-charset ``unknown-8bit``: the
    Subject is no longer readable UTF-8 and ``To`` gets an encoded word inside an address
    (RFC 2047 section 5 forbids it).  The first send's own 7-bit fallback (from the app's
    message) encodes UTF-8 properly; the letter should be parsed as UTF-8 text (or sent as
    kept, with SMTPUTF8).
    """
    clock = FakeClock()
    adapter = RecordingAdapter({"a@x.example": [GREYLIST, OK]})
    guard = Guard(adapter=adapter, store=MemoryStore(), retry=RetryPolicy.never(), clock=clock)
    message = EmailMessage()
    message["From"] = "app@s.example"
    message["To"] = "jürgen@x.example, a@x.example"
    message["Subject"] = "Grüße aus Köln"
    message.set_content("Grüße\n")
    result = await guard.send(message)
    assert result.kept == ["a@x.example"]
    clock.advance(hours=1)
    assert (await guard.deliver_outbox()).delivered == 1
    again = adapter.envelopes[-1]
    head = again.data.partition(b"\r\n\r\n")[0]
    assert b"unknown-8bit" not in head, head
    await guard.aclose()


# -- freeze / thaw -------------------------------------------------------------------------------


def _frozen(state: object, cls: str = "django.core.mail.message:EmailMessage") -> str:
    return json.dumps({"class": cls, "bases": [], "state": {"body": state}, "status": False})


@pytest.mark.parametrize(
    "hostile",
    [
        {"$b": "not base64!"},  # binascii.Error
        {"$dt": "yesterday"},  # ValueError from fromisoformat
        {"$d": 5},  # TypeError
        {"$t": 5},  # TypeError: not iterable
        {"$m": [1, 2]},  # AttributeError: a list has no items()
        {"$mime": 7},  # TypeError
    ],
    ids=["bytes", "datetime", "date", "tuple", "mapping", "mime"],
)
def test_thaw_of_a_hostile_value_raises_a_typed_error(hostile: object) -> None:
    """``thaw`` lets raw ValueError/TypeError/AttributeError out of ``_decode``.

    Only ``json.loads`` and the top-level keys are in thaw's try; ``_decode`` runs outside it,
    so a damaged or hostile stored value raises binascii.Error, TypeError... instead of the
    ConfigurationError thaw promises ("a kept message cannot be read back").
    """
    from django.core.mail import EmailMessage as DjangoMessage  # noqa: PLC0415

    with pytest.raises(ConfigurationError):
        thaw(_frozen(hostile), base=DjangoMessage)


def test_thaw_of_deeply_nested_json_raises_a_typed_error() -> None:
    """100 000 nested lists make ``thaw`` raise RecursionError, not ConfigurationError.

    ``json.loads`` raises RecursionError (not a ValueError) on deep nesting, and thaw's
    ``except`` does not list it; ``_decode`` recurses too.  A worker gets an untyped error.
    """
    from django.core.mail import EmailMessage as DjangoMessage  # noqa: PLC0415

    deep = '{"class":"django.core.mail.message:EmailMessage","bases":[],"state":{"body":'
    deep += "[" * 100_000 + "]" * 100_000 + "}}"
    with pytest.raises(ConfigurationError):
        thaw(deep, base=DjangoMessage)


_CALLED: list[object] = []


class _NotAMessagePart(tuple[object, ...]):
    """A tuple subclass some imported module has: its constructor does something."""

    __slots__ = ()

    def __new__(cls, *items: object) -> _NotAMessagePart:
        _CALLED.append(items)  # stands for any side effect: a file opened, a request made
        return super().__new__(cls, items)


class _Attachment(NamedTuple):
    filename: str
    content: str
    mimetype: str


def test_thaw_calls_no_class_a_stored_letter_names_but_the_known_named_tuples() -> None:
    """A stored letter makes the worker call the constructor of any imported tuple subclass.

    ``_decode`` resolves ``{"$t": [...], "cls": "module:Name"}`` to whatever tuple subclass
    an imported module holds and calls it with the stored items (``named(*items)``), with no
    check that it is a named tuple of a message (Django's EmailAttachment/EmailAlternative).
    The module docstring promises a store's content cannot make the process run code; it
    should only rebuild named tuples (``_fields``, ``_make``), of the message's own modules.
    """
    from django.core.mail import EmailMessage as DjangoMessage  # noqa: PLC0415

    _CALLED.clear()
    text = _frozen({"$t": ["x"], "cls": f"{__name__}:_NotAMessagePart"})
    with contextlib.suppress(ConfigurationError):
        thaw(text, base=DjangoMessage)
    assert _CALLED == []
    # A real named tuple still comes back.
    good = _frozen({"$t": ["a.txt", "hi", "text/plain"], "cls": f"{__name__}:_Attachment"})
    made: Any = thaw(good, base=DjangoMessage)
    assert made.body == _Attachment("a.txt", "hi", "text/plain")
