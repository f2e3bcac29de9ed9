"""The guard's facade: its options, its admin API, and one send from admission to record.

A send runs through three stages, each in a module of its own: :mod:`.admission` (one store
call reserves what may be delivered now), :mod:`.delivery` (the adapter, the verdict on every
reply, retries) and :mod:`.recording` (the outcome written once, durably, even if the caller
leaves or the store stalls).  Bounces and provider events that arrive later go through
:mod:`.ingestion`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from sendguard._adapter import Adapter
from sendguard._address import Address, normalize_address, redact
from sendguard._bounces.classify import Rules
from sendguard._bounces.dsn import BounceReport
from sendguard._bounces.events import DeliveryEvent
from sendguard._bounces.token import BounceSigner
from sendguard._errors import ConfigurationError, NoRecipientsError, StoreError
from sendguard._guard._common import ACCEPTED, Clock, SendState, Sleep, log, utcnow
from sendguard._guard.admission import Admitter, validate
from sendguard._guard.delivery import Deliverer
from sendguard._guard.ingestion import Ingester
from sendguard._guard.outbox import Claimed, Keeper, OutboxEvent, OutboxRun, Unsent, unsent_of
from sendguard._guard.recording import Recorder, log_pause
from sendguard._message import check_headers, envelope_recipients, envelope_sender, serialize
from sendguard._models import DeliveryStatus, RecipientResult, SendResult, Suppression
from sendguard._options import check_flag, check_instance, check_seconds
from sendguard._pacing.breaker import Breaker, SenderStatus
from sendguard._pacing.retry import RetryPolicy
from sendguard._pacing.shaping import Shaping
from sendguard._pacing.warmup import WarmupSchedule
from sendguard._smtp import SMTPAdapter
from sendguard._store import Pause, SoftBouncePolicy, Store
from sendguard._store.journal import Journal
from sendguard._store.memory import MemoryStore
from sendguard._store.outbox import Backlog, entry_id

__all__ = ["STREAMS", "STREAM_HEADER", "Guard"]

STREAMS: Mapping[str, float] = {"transactional": 1.0, "bulk": 0.8}
"""The default streams, highest priority first, each with the share of the day's warmup cap
its mail may take (the rest is kept for the streams before it)."""
STREAM_HEADER = "X-Sendguard-Stream"
"""A message header naming the send's stream (taken off before the message is sent)."""


_GUARD_OPTION_TYPES: dict[str, tuple[type, str]] = {
    "adapter": (Adapter, "an Adapter such as SMTPAdapter(...)"),
    "store": (Store, "a Store such as SQLiteStore(path) or open_store(url)"),
    "retry": (RetryPolicy, "a RetryPolicy(...)"),
    "warmup": (WarmupSchedule, "a WarmupSchedule, e.g. WarmupSchedule.preset('new-domain')"),
    "rules": (Rules, "Rules([Rule(...), ...])"),
    "soft_bounce": (SoftBouncePolicy, "a SoftBouncePolicy(...)"),
    "breaker": (Breaker, "a Breaker(...)"),
    "shaping": (Shaping, "a Shaping({...})"),
    "spread_over": (timedelta, "a datetime.timedelta"),
}


def _check_options(
    *,
    pause_for: object,
    transient_pause_for: object,
    bounce_secret: object,
    spread_burst: object,
    store_timeout: object,
    journal: object,
    redact_addresses: object,
    clock: object,
    sleep: object,
    **optional: object,
) -> None:
    """The types of Guard's options; a wrong one is a ConfigurationError naming it."""
    for name, value in optional.items():
        kind, what = _GUARD_OPTION_TYPES[name]
        if value is not None:
            check_instance("Guard", name, value, kind, f"{what} or None")
    for name, value in (("pause_for", pause_for), ("transient_pause_for", transient_pause_for)):
        check_instance("Guard", name, value, timedelta, "a datetime.timedelta")
    if bounce_secret is not None and not isinstance(bounce_secret, str | bytes):
        raise ConfigurationError(
            f"Guard(bounce_secret=...) must be a str or bytes of 16 bytes or more, "
            f"not {type(bounce_secret).__name__}"
        )
    if not isinstance(spread_burst, int | float) or isinstance(spread_burst, bool):
        raise ConfigurationError(
            f"Guard(spread_burst=...) must be a fraction in (0, 1], not {spread_burst!r}"
        )
    check_seconds("Guard", "store_timeout", store_timeout)
    if journal is not None and journal is not False and not isinstance(journal, str | os.PathLike):
        raise ConfigurationError(
            f"Guard(journal=...) must be a directory (str or Path), False or None, not {journal!r}"
        )
    check_flag("Guard", "redact_addresses", redact_addresses)
    for name, value in (("clock", clock), ("sleep", sleep)):
        if not callable(value):
            raise ConfigurationError(f"Guard({name}=...) must be a function, not {value!r}")
    now = clock()  # type: ignore[operator]
    if not isinstance(now, datetime):
        raise ConfigurationError(f"Guard(clock=...) must return datetimes, not {now!r}")


def _check_streams(streams: object) -> dict[str, float]:
    """Guard(streams=...): names (highest priority first) to a share of the day's cap."""
    if not isinstance(streams, Mapping) or not streams:
        raise ConfigurationError(
            "Guard(streams=...) must map stream names (highest priority first) to the share "
            "of the day's warmup cap each may take, e.g. {'transactional': 1.0, 'bulk': 0.8}"
        )
    checked: dict[str, float] = {}
    for name, share in streams.items():
        if not isinstance(name, str) or not name or not name.isprintable() or ":" in name:
            raise ConfigurationError(f"Guard(streams=...): {name!r} is no stream name")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise ConfigurationError(
                f"Guard(streams=...): the share of {name!r} must be in (0, 1], not {share!r}"
            )
        checked[name] = float(share)
    return checked


class Guard:
    """Stands between an application and its mail provider and keeps the sender's name clean.

    ``send`` validates every recipient, drops those on the suppression list, holds back those
    over today's warmup quota or toward a domain that refused the sender, delivers to the rest
    through the adapter, retries temporary failures with backoff, and classifies every refusal
    (:func:`sendguard.classify`): a dead address is suppressed, a refused sender is paused
    toward that recipient domain for ``pause_for`` (``transient_pause_for`` when the refusal
    was a 4xx, such as a rate limit), and soft bounces are counted until ``soft_bounce`` says
    the address is as good as dead.

    Bounces that arrive later go to :meth:`ingest_bounce`.  With a ``bounce_secret`` each
    recipient's copy carries a signed token of its own (header ``X-Sendguard-Token``), and a
    bounce report changes the suppression list only if it brings back the token of its own
    recipient; without it every bounce is trusted.

    Once mail has left, what the send learned is recorded even if the store fails or stalls
    (it waits in a journal, replayed when the store answers) or the caller cancels.
    """

    def __init__(
        self,
        *,
        adapter: Adapter | None = None,
        store: Store | None = None,
        retry: RetryPolicy | None = None,
        warmup: WarmupSchedule | None = None,
        rules: Rules | None = None,
        pause_for: timedelta = timedelta(hours=1),
        transient_pause_for: timedelta = timedelta(minutes=15),
        soft_bounce: SoftBouncePolicy | None = None,
        bounce_secret: str | bytes | None = None,
        breaker: Breaker | None = None,
        shaping: Shaping | None = None,
        spread_over: timedelta | None = None,
        spread_burst: float = 0.05,
        on_store_error: Literal["raise", "send"] = "raise",
        store_timeout: float = 10.0,
        journal: str | os.PathLike[str] | Literal[False] | None = None,
        redact_addresses: bool = True,
        keep: bool = True,
        streams: Mapping[str, float] | None = None,
        stream: str | None = None,
        max_age: timedelta = timedelta(days=5),
        on_outbox: Callable[[OutboxEvent], object] | None = None,
        clock: Clock = utcnow,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        check_flag("Guard", "keep", keep)
        self.streams = _check_streams(streams if streams is not None else STREAMS)
        self.stream = stream if stream is not None else next(iter(self.streams))
        if self.stream not in self.streams:
            raise ConfigurationError(
                f"Guard(stream={stream!r}) must be one of the streams: {', '.join(self.streams)}"
            )
        check_instance("Guard", "max_age", max_age, timedelta, "a datetime.timedelta")
        if max_age <= timedelta(0):
            raise ConfigurationError("Guard(max_age=...) must be a positive timedelta")
        if on_outbox is not None and not callable(on_outbox):
            raise ConfigurationError(f"Guard(on_outbox=...) must be a function, not {on_outbox!r}")
        self.keep = keep
        self.max_age = max_age
        _check_options(
            adapter=adapter,
            store=store,
            retry=retry,
            warmup=warmup,
            rules=rules,
            pause_for=pause_for,
            transient_pause_for=transient_pause_for,
            soft_bounce=soft_bounce,
            bounce_secret=bounce_secret,
            breaker=breaker,
            shaping=shaping,
            spread_over=spread_over,
            spread_burst=spread_burst,
            store_timeout=store_timeout,
            journal=journal,
            redact_addresses=redact_addresses,
            clock=clock,
            sleep=sleep,
        )
        if on_store_error not in ("raise", "send"):
            raise ConfigurationError(
                f"on_store_error must be 'raise' or 'send', not {on_store_error!r}"
            )
        if clock().utcoffset() is None:
            raise ConfigurationError("clock must return timezone-aware datetimes")
        if min(pause_for, transient_pause_for) <= timedelta(0):
            raise ConfigurationError("pause_for and transient_pause_for must be positive")
        self.adapter = adapter if adapter is not None else SMTPAdapter()
        self.store = store if store is not None else MemoryStore()
        self.retry = retry if retry is not None else RetryPolicy()
        self.warmup = warmup
        self.rules = rules if rules is not None else Rules()
        self.pause_for = pause_for
        self.transient_pause_for = transient_pause_for
        self.soft_bounce = soft_bounce if soft_bounce is not None else SoftBouncePolicy()
        self._signer = BounceSigner.from_secret(bounce_secret) if bounce_secret else None
        self.breaker = breaker
        self.shaping = shaping
        if spread_over is not None and spread_over <= timedelta(0):
            raise ConfigurationError("spread_over must be a positive timedelta")
        if not 0 < spread_burst <= 1:
            raise ConfigurationError("spread_burst must be a fraction of the day's cap in (0, 1]")
        self.spread_over = spread_over
        self.spread_burst = spread_burst
        self.on_store_error = on_store_error
        if not store_timeout > 0:
            raise ConfigurationError("store_timeout must be a positive number of seconds")
        self.store_timeout = store_timeout
        directory = (
            None
            if journal is False
            else Path(journal)
            if journal is not None
            else self.store.journal_directory
        )
        self._redact = redact if redact_addresses else str
        self._clock = clock
        self._sleep = sleep
        self._recorder = Recorder(self, Journal(directory, breaker=breaker))
        self._admission = Admitter(self, self._recorder)
        self._delivery = Deliverer(self)
        self._ingestion = Ingester(self, self._recorder)
        self._keeper = Keeper(self, streams=self.streams, max_age=max_age, on_event=on_outbox)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Finish recording what is in flight, then close the adapter's and store's connections.

        Outcomes the store still cannot record stay in the journal for the next guard.
        """
        try:
            await self._recorder.drain()
            await self.adapter.aclose()
        finally:
            self._recorder.journal.close()
            await self.store.aclose()

    # -- the suppression list ------------------------------------------------------------------

    async def suppress(
        self, address: str, *, reason: str = "manual", detail: str = "", source: str = "manual"
    ) -> Suppression:
        """Put *address* on the suppression list (replacing any entry it had)."""
        self._recorder.enter()
        entry = Suppression(
            address=normalize_address(address).key,
            reason=reason,
            detail=detail,
            source=source,
            created_at=self._clock(),
        )
        await self._recorder.bounded(self.store.add([entry], replace=True), "add")
        log.info(
            "sendguard.suppressed",
            recipient=self._redact(entry.address),
            reason=reason,
            source=source,
        )
        return entry

    async def unsuppress(self, address: str) -> bool:
        """Take *address* off the suppression list (and forget its soft bounces)."""
        self._recorder.enter()
        key = normalize_address(address).key
        removed = await self._recorder.bounded(self.store.remove(key), "remove")
        # Nor may an outcome still in the journal put it back when it is replayed.
        removed = self._recorder.journal.forget(key) or removed
        log.info("sendguard.unsuppressed", recipient=self._redact(key), removed=removed)
        return removed

    async def is_suppressed(self, address: str) -> bool:
        """Whether *address* is on the suppression list."""
        return await self.suppression(address) is not None

    async def suppression(self, address: str) -> Suppression | None:
        """The suppression entry of *address*, if it is on the list (or held in the journal)."""
        self._recorder.enter()
        key = normalize_address(address).key
        held = self._recorder.journal.suppression(key)
        if held is not None:
            return held
        return await self._recorder.bounded(self.store.get(key), "get")

    async def soft_bounces(self, address: str) -> int:
        """How many soft bounces *address* has on record since its last delivery."""
        self._recorder.enter()
        key = normalize_address(address).key
        return await self._recorder.bounded(self.store.soft_bounces(key), "soft_bounces")

    # -- pauses --------------------------------------------------------------------------------

    async def pauses(self, sender_domain: str) -> list[Pause]:
        """The pauses of *sender_domain* (one per recipient domain) in force now."""
        self._recorder.enter()
        return await self._recorder.bounded(
            self.store.pauses(sender_domain.lower(), self._clock()), "pauses"
        )

    async def status(self, sender_domain: str) -> SenderStatus:
        """Where *sender_domain* stands: ramp day, sent and cap today, rates, pauses."""
        self._recorder.enter()
        return await self._recorder.bounded(self._admission.status(sender_domain.lower()), "status")

    async def resume(self, sender_domain: str) -> int:
        """Lift every pause of *sender_domain* now; how many were in force."""
        self._recorder.enter()
        lifted = await self._recorder.bounded(
            self.store.resume(sender_domain.lower(), self._clock()), "resume"
        )
        log.info("sendguard.resumed", sender_domain=sender_domain.lower(), lifted=lifted)
        return lifted

    # -- sending -------------------------------------------------------------------------------

    async def send(
        self,
        message: Message,
        /,
        *,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
        original: object = None,
        stream: str | None = None,
    ) -> SendResult:
        """Send *message* to every recipient that may receive it; one result per recipient.

        Recipients are To, Cc and Bcc unless *recipients* is given; Bcc is never transmitted.
        The envelope sender is *sender*, else the message's Sender, else its first From.
        *original* is handed to the adapter untouched (``Envelope.original``): a framework's
        own message object, for an adapter that delivers through that framework's backend.
        *stream* (else the message's ``X-Sendguard-Stream`` header, which is not sent, else the
        guard's default stream) is one of the guard's ``streams``.

        Recipients held back (throttled, paused, deferred) are kept in the outbox, unless the
        guard was made with ``keep=False``: their results say ``kept`` and ``retry_at``, and
        a worker (:meth:`run_outbox`) sends them then.

        Raises :class:`MessageError` (a line break in a header, an invalid sender, no
        recipients, a message that cannot be encoded) before anything is reserved, and
        :class:`StoreError` when the store gives no verdict before the send.  After the send
        it raises nothing for the store: ``result.recorded`` is False when the outcome waits
        in the journal.
        """
        self._recorder.enter()
        check_headers(message)
        message, stream = self._stream_of(message, stream)
        envelope_from = normalize_address(
            sender if sender is not None else envelope_sender(message)
        )
        wanted = list(recipients) if recipients is not None else envelope_recipients(message)
        if not wanted:
            raise NoRecipientsError("the message has no recipients (To, Cc, Bcc or recipients=)")
        return await self._send(
            message, envelope_from=envelope_from, wanted=wanted, original=original, stream=stream
        )

    def _stream_of(self, message: Message, stream: str | None) -> tuple[Message, str]:
        """The send's stream, and the message without the header that named it."""
        named = message.get(STREAM_HEADER)
        if named is not None:
            message = copy.copy(message)  # the caller's message keeps its header
            del message[STREAM_HEADER]  # (a new header list: the copy's alone)
        chosen = stream if stream is not None else str(named).strip() if named else self.stream
        if chosen not in self._keeper.streams:
            raise ConfigurationError(
                f"unknown stream {chosen!r}: the guard's streams are "
                f"{', '.join(self._keeper.streams)} (Guard(streams=...))"
            )
        return message, chosen

    async def _send(
        self,
        message: Message,
        *,
        envelope_from: Address,
        wanted: list[str],
        original: object,
        stream: str,
        serialized: tuple[bytes, bool] | None = None,
        claimed: Claimed | None = None,
    ) -> SendResult:
        """One send, first (kept if held back) or by a worker for its *claimed* entries."""
        now = self._clock()
        results, valid = validate(wanted)
        if serialized is None:
            # Serialized before anything is reserved: a message that cannot be encoded raises
            # MessageEncodingError now.  SMTPUTF8 if any address needs it (the delivery drops
            # it when the recipients that needed it were held back).
            utf8 = envelope_from.needs_smtputf8 or any(a.needs_smtputf8 for a in valid.values())
            serialized = serialize(message, message_id=None, utf8=utf8), utf8
        state = SendState(sender=envelope_from, pending={}, original=original)
        results.update(
            await self._admission.admit(state, valid, now, share=self._keeper.streams[stream])
        )
        message_id: str | None = None
        try:
            if claimed is not None and state.pending:
                await self._start(claimed, state)
            if state.pending:
                message_id = await self._delivery.transmit(state, message, serialized, now)
        except BaseException:
            # The caller gave up (a timeout, a cancelled task) or the send failed half-way:
            # what it learned (a dead address, quota not spent) is recorded all the same.
            outcome = self._delivery.outcome(state)
            if not outcome.empty:
                self._recorder.spawn(self._recorder.settle(outcome))
            self._cut_off(claimed, message, state, results, valid, serialized, (stream, original))
            raise
        results.update(state.results)

        try:
            newly = await self._recorder.settle(self._delivery.outcome(state))
        except BaseException:
            # Cut off while the outcome is written (which goes on): every recipient is
            # answered by now; what is held back is kept all the same.
            self._cut_off(claimed, message, state, results, valid, serialized, (stream, original))
            raise
        for key in newly or ():
            results[key] = replace(results[key], suppressed=True)
        letter = None
        if self.keep and claimed is None:
            letter, message_id = await self._keep_held(
                message, state, results, valid, serialized, (stream, original)
            )
        result = SendResult(
            sender=envelope_from.key,
            message_id=message_id,
            recipients=results,
            recorded=newly is not None,
            outbox_id=letter,
            stream=stream,
        )
        for pause in state.pauses.values():
            log_pause(pause)
        for rr in results.values():
            self._log_result(rr, message_id)
        return result

    def _unsent(
        self,
        message: Message,
        state: SendState,
        held: dict[str, RecipientResult],
        valid: dict[str, Address],
        serialized: tuple[bytes, bool],
    ) -> Unsent | None:
        """What of a send to keep, with the message as it goes out (its Message-ID in it)."""
        # The message's own ID, else the one the delivery made (not in *serialized*), else a
        # new one (unsent_of makes it).
        own = message["Message-ID"]
        given = str(own) if own else None
        body = serialized
        made = dict(state.headers).get("Message-ID")
        if given is None and made:
            body = (f"Message-ID: {made}\r\n".encode("ascii") + serialized[0], serialized[1])
            given = made
        return unsent_of(held, valid, message_id=given, body=body, domain=state.sender.domain)

    async def _keep_held(  # noqa: PLR0917 (one send's state)
        self,
        message: Message,
        state: SendState,
        results: dict[str, RecipientResult],
        valid: dict[str, Address],
        serialized: tuple[bytes, bool],
        kept_as: tuple[str, object],
    ) -> tuple[str | None, str | None]:
        """Keep what a send held back; the letter's id and the message's ID (None: none)."""
        unsent = self._unsent(message, state, results, valid, serialized)
        if unsent is None:
            made = dict(state.headers).get("Message-ID")
            own = message["Message-ID"]
            return None, str(own) if own else made
        stream, original = kept_as
        # Shielded: a caller cut off meanwhile does not cut off the write of what it keeps.
        letter = await asyncio.shield(
            self._recorder.spawn(
                self._keeper.keep(state.sender.wire, stream, original, unsent, self._clock())
            )
        )
        if letter is not None:
            for rr in unsent.results.values():
                results[rr.address] = replace(rr, kept=True)
        return letter, unsent.message_id

    def _cut_off(  # noqa: PLR0917 (the state of a send cut off)
        self,
        claimed: Claimed | None,
        message: Message,
        state: SendState,
        results: dict[str, RecipientResult],
        valid: dict[str, Address],
        serialized: tuple[bytes, bool],
        kept_as: tuple[str, object],
    ) -> None:
        """What a send cut off leaves: for a worker what it had learned, else what to keep."""
        if claimed is not None:
            claimed.learned(results, state)  # the worker finishes what was answered
        elif self.keep:
            # Nor is what it held back lost: kept, those cut off in flight as uncertain.
            self._keep_cut_off(message, state, results, valid, serialized, kept_as)

    def _keep_cut_off(  # noqa: PLR0917 (the state of a send cut off)
        self,
        message: Message,
        state: SendState,
        results: dict[str, RecipientResult],
        valid: dict[str, Address],
        serialized: tuple[bytes, bool],
        kept_as: tuple[str, object],
    ) -> None:
        """Keep, in the background, what a send cut off (cancelled, failed) had not finished."""
        held = {**results, **state.results}
        in_flight = list(state.pending)[: state.in_flight]
        for key in state.pending:
            uncertain = key in in_flight
            held[key] = RecipientResult(
                key,
                DeliveryStatus.DEFERRED,
                detail="the send was cut off while delivering: delivery uncertain"
                if uncertain
                else "the send was cut off before this recipient's next attempt",
                attempts=state.attempts.get(key, 0),
                uncertain=uncertain,
            )
        unsent = self._unsent(message, state, held, valid, serialized)
        if unsent is not None:
            stream, original = kept_as
            self._recorder.spawn(
                self._keeper.keep(state.sender.wire, stream, original, unsent, self._clock())
            )

    async def _start(self, claimed: Claimed, state: SendState) -> None:
        """Mark the worker's admitted entries as being sent; drop those its claim lost."""
        ids = {entry_id(claimed.letter, claimed.entries[k].recipient): k for k in state.pending}
        if claimed.start is not None:
            started = set(await claimed.start(list(ids)))
        else:
            started = set(
                await self._recorder.bounded(
                    self.store.start(claimed.token, list(ids), self._clock()), "start"
                )
            )
        for kept_id, key in ids.items():
            if kept_id not in started:
                del state.pending[key]
                claimed.lost.add(key)
            else:
                claimed.started.add(key)

    # -- the outbox ----------------------------------------------------------------------------

    async def deliver_outbox(
        self,
        *,
        limit: int = 100,
        lease: timedelta = timedelta(minutes=5),
        concurrency: int = 8,
        stop: asyncio.Event | None = None,
    ) -> OutboxRun:
        """One pass of a worker: claim up to *limit* due recipients and send them; counts.

        Claims hold for *lease*, renewed while the pass runs: a worker that dies leaves them
        to come back then (those it was handing to the provider come back uncertain, never
        re-sent by themselves).  Once *stop* is set the pass starts no further letter.
        """
        return await self._keeper.deliver(
            limit=limit, lease=lease, concurrency=concurrency, stop=stop
        )

    async def run_outbox(
        self,
        *,
        stop: asyncio.Event | None = None,
        poll: float = 5.0,
        limit: int = 100,
        lease: timedelta = timedelta(minutes=5),
        concurrency: int = 8,
        summary_every: float = 60.0,
    ) -> OutboxRun:
        """Send what the outbox holds as it comes due, until *stop* is set (or cancelled).

        Passes run back to back while there is due mail, else every *poll* seconds; a
        summary line is logged every *summary_every* seconds.  Stopping lets the pass in
        flight finish its deliveries and gives back what it had not started.  The totals.
        """
        stop = stop if stop is not None else asyncio.Event()
        total = OutboxRun()
        period = OutboxRun()
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not stop.is_set():
            try:
                run = await self.deliver_outbox(
                    limit=limit, lease=lease, concurrency=concurrency, stop=stop
                )
            except StoreError as exc:
                log.warning("sendguard.outbox_store_error", error=str(exc))
                run = OutboxRun()
            total.add(run)
            period.add(run)
            if loop.time() - last >= summary_every:
                log.info("sendguard.outbox_summary", **period.summary())
                period, last = OutboxRun(), loop.time()
            if run.claimed < limit:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll)
        log.info("sendguard.outbox_stopped", **total.summary())
        return total

    async def backlog(self) -> list[Backlog]:
        """What the outbox holds, per sender domain and stream."""
        return await self._keeper.backlog()

    # -- bounces that arrive later ----------------------------------------------------------------

    async def ingest_bounce(self, raw: bytes | str | Message, /) -> list[BounceReport]:
        """Read a bounce, complaint or auto-reply and record what it says; its reports.

        Hard bounces suppress the address (reason as classified), complaints suppress it with
        reason ``feedback``, soft bounces count toward :class:`SoftBouncePolicy`, deliveries
        reset that count, and auto-replies change nothing.  With a ``bounce_secret`` a report
        is acted on only if the bounce returns the token of the copy sent to that report's
        recipient; the others are returned with ``trusted=False`` and logged.  Returns after
        the store has recorded everything (one store call), so a caller may acknowledge or
        delete the bounce then.

        The bounce is read in a worker thread, within :data:`sendguard.parse_bounce`'s time
        budget, so that the event loop keeps serving sends meanwhile.

        Raises :class:`BounceParseError` for input that is not an e-mail (or too costly to
        read), and :class:`StoreError` when the store cannot record the outcome.
        """
        self._recorder.enter()
        return await self._ingestion.ingest_bounce(raw)

    async def ingest_events(self, events: Iterable[DeliveryEvent], /) -> list[DeliveryEvent]:
        """Record delivery events from an ESP's webhook; the events, marked.

        Hard bounces and complaints suppress, soft bounces count toward
        :class:`SoftBouncePolicy`, deliveries reset that count, deferrals and unsubscribes
        change nothing; bounces and complaints count for the breaker.  An event whose
        ``(provider, event_id)`` was recorded before changes nothing (``ingested=False``), nor
        does one whose ``nonce`` was (a replayed Mailgun token with other event data).
        Each event is recorded in one atomic step, so returning means it is stored: a
        webhook handler may acknowledge the request then.
        """
        self._recorder.enter()
        return await self._ingestion.ingest_events(events)

    def _log_result(self, rr: RecipientResult, message_id: str | None) -> None:
        level = "info" if rr.status is ACCEPTED else "warning"
        getattr(log, level)(
            "sendguard.recipient",
            recipient=self._redact(rr.address),
            status=str(rr.status),
            reason=rr.reason or None,
            reply_code=rr.reply_code,
            enhanced_code=rr.enhanced_code,
            attempts=rr.attempts,
            suppressed=rr.suppressed,
            message_id=message_id,
        )
