"""The guard: validate, check suppressions, reserve warmup quota, deliver, retry, record."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeVar

from sendguard._adapter import Adapter
from sendguard._address import Address, normalize_address, redact
from sendguard._bounce import BounceReport, bounce_id, bounce_message, parse_bounce
from sendguard._breaker import Breaker, BreakerEvent, SenderStatus, Volume
from sendguard._classify import Classification, Rules
from sendguard._errors import (
    ConfigurationError,
    InvalidAddressError,
    MessageEncodingError,
    NoRecipientsError,
    SendGuardError,
    StoreError,
)
from sendguard._events import DeliveryEvent
from sendguard._journal import Journal, with_event_id
from sendguard._log import logger
from sendguard._memory import MemoryStore
from sendguard._message import (
    check_headers,
    envelope_recipients,
    envelope_sender,
    serialize,
)
from sendguard._models import (
    DeliveryStatus,
    Envelope,
    RecipientResult,
    Reply,
    SendResult,
    Stage,
    Suppression,
)
from sendguard._options import check_flag, check_instance, check_seconds
from sendguard._retry import RetryPolicy
from sendguard._shaping import Shaping
from sendguard._smtp import SMTPAdapter
from sendguard._store import (
    Admission,
    Admit,
    Outcome,
    Pause,
    Quota,
    Ramp,
    Reservation,
    Settled,
    Shape,
    SoftBouncePolicy,
    Store,
)
from sendguard._token import TOKEN_HEADER, BounceSigner, find_token
from sendguard._verdict import (
    Decision,
    Verdict,
    counts_as_bounce,
    judge_event,
    judge_reply,
    judge_report,
    pause_for,
)
from sendguard._warmup import WarmupSchedule

__all__ = ["Guard"]

_T = TypeVar("_T")
_log = logger("guard")
Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _next_midnight(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=UTC)


@dataclass
class _Delivery:
    """The mutable state of one send while it is being delivered."""

    sender: Address
    pending: dict[str, Address]
    results: dict[str, RecipientResult] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    last: dict[str, tuple[Reply, Classification | None]] = field(default_factory=dict)
    suppress: dict[str, Classification] = field(default_factory=dict)
    soft: dict[str, Classification] = field(default_factory=dict)
    pauses: dict[str, Pause] = field(default_factory=dict)
    had_soft: list[str] = field(default_factory=list)
    uncertain: int = 0
    accepted: int = 0
    in_flight: int = 0
    """Recipients whose delivery is under way: if it is cut off, they may have the message."""
    rate_of: dict[str, str] = field(default_factory=dict)
    """Each recipient's shaping field (sender x provider), when shaping applies to it."""
    slowdowns: set[str] = field(default_factory=set)
    original: object = None
    """The caller's own message object, handed to the adapter (``Envelope.original``)."""
    headers: tuple[tuple[str, str], ...] = ()
    """The headers the guard put in front of the message (a Message-ID it made)."""


def _bounce_key(recipient: str) -> str | None:
    """The suppression key of a bounce's recipient, if it is a valid address."""
    if not recipient:
        return None
    try:
        return normalize_address(recipient).key
    except InvalidAddressError:
        return None


def _newly_suppressed(outcome: Outcome, settled: Settled) -> list[str]:
    """The keys that settling *outcome* put on the suppression list (not those already on it)."""
    if settled.duplicate:
        return []
    added = zip(outcome.suppressions, settled.added, strict=True)
    return [entry.address for entry, new in added if new] + settled.escalated


def _validate(wanted: Iterable[str]) -> tuple[dict[str, RecipientResult], dict[str, Address]]:
    """Results for the invalid recipients, and the valid ones by key (first of duplicates)."""
    results: dict[str, RecipientResult] = {}
    valid: dict[str, Address] = {}
    for raw in wanted:
        try:
            address = normalize_address(raw)
        except InvalidAddressError as exc:
            key = raw.strip()
            results.setdefault(key, RecipientResult(key, DeliveryStatus.INVALID, detail=str(exc)))
            continue
        if address.key not in valid:
            valid[address.key] = address
            results[address.key] = RecipientResult(address.key, DeliveryStatus.DEFERRED)
    return results, valid


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
        clock: Clock = _utcnow,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
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
        self._journal = Journal(directory, breaker=breaker)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[object]] = set()
        self._replaying: asyncio.Task[None] | None = None
        self._redact = redact if redact_addresses else str
        self._clock = clock
        self._sleep = sleep
        self._log = _log

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
            if self._loop is not None:
                self._bind_loop()  # closed from a later asyncio.run(): drop the old connections
                if self._background:
                    await asyncio.wait(list(self._background), timeout=self.store_timeout)
                if self._journal:
                    await self._replay()
            await self.adapter.aclose()
        finally:
            self._journal.close()
            await self.store.aclose()

    # -- the event loop, and what the store could not record ------------------------------------

    def _enter(self) -> None:
        """Before any work: make sure the guard works on this loop; replay the journal."""
        self._bind_loop()
        if self._journal.adopt():  # once per journal file (again after aclose)
            self._log.warning(
                "sendguard.journal_adopted",
                entries=len(self._journal),
                directory=str(self._journal.directory),
            )
        if self._journal and self._replaying is None:
            self._replaying = self._spawn(self._replay())

    def _bind_loop(self) -> None:
        """Work on the running loop; on a new one, drop what belonged to the old (ended) one."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            old = self._loop
            if old is not None and not old.is_closed() and old.is_running():
                raise ConfigurationError(
                    "this Guard is in use on another running event loop: make one Guard per "
                    "loop, or use SyncGuard from threads"
                )
            if old is not None:
                # asyncio.run() per job: the old loop's connections are gone with it.
                self.adapter.on_new_loop()
                self.store.on_new_loop()
                self._background.clear()
                self._replaying = None
            self._loop = loop

    def _spawn(self, work: Coroutine[object, object, _T]) -> asyncio.Task[_T]:
        """Run *work* in the background, kept until it is done (``aclose`` waits for it)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _replay(self) -> None:
        """Record the journal's outcomes, oldest first, until the store fails again."""
        try:
            while self._journal:
                outcome = self._journal.entries[0]
                try:
                    settled = await self._bounded(self._record(outcome), "replay")
                except StoreError:
                    return  # still down: the next operation tries again
                self._journal.done(outcome)
                self._log.warning(
                    "sendguard.journal_replayed",
                    suppressed=[self._redact(k) for k in _newly_suppressed(outcome, settled)],
                    duplicate=settled.duplicate,
                    left=len(self._journal),
                )
        finally:
            self._replaying = None

    async def _bounded(self, work: Awaitable[_T], operation: str) -> _T:
        """Await a store call, at most ``store_timeout`` seconds (a StoreError after that)."""
        try:
            async with asyncio.timeout(self.store_timeout):
                return await work
        except TimeoutError as exc:
            raise StoreError(
                f"the store gave no answer to {operation} within {self.store_timeout:g} s"
            ) from exc

    def _keep(self, outcome: Outcome) -> None:
        """*outcome* was not recorded in time: keep it for the replay (unless it landed)."""
        if not self._journal.kept(outcome):
            return
        self._log.error(
            "sendguard.journaled",
            suppressions=[self._redact(e.address) for e in outcome.suppressions],
            give_back=outcome.give_back,
            pauses=len(outcome.pauses),
            durable=self._journal.durable,
            action="kept in the journal; replayed when the store answers",
        )

    def _landed(self, outcome: Outcome, done: asyncio.Future[Settled]) -> None:
        """The store call of *outcome* ended: if it recorded it, the journal forgets it."""
        if not done.cancelled() and done.exception() is None:
            self._journal.done(outcome)

    # -- the suppression list ------------------------------------------------------------------

    async def suppress(
        self, address: str, *, reason: str = "manual", detail: str = "", source: str = "manual"
    ) -> Suppression:
        """Put *address* on the suppression list (replacing any entry it had)."""
        self._enter()
        entry = Suppression(
            address=normalize_address(address).key,
            reason=reason,
            detail=detail,
            source=source,
            created_at=self._clock(),
        )
        await self._bounded(self.store.add([entry], replace=True), "add")
        self._log.info(
            "sendguard.suppressed",
            recipient=self._redact(entry.address),
            reason=reason,
            source=source,
        )
        return entry

    async def unsuppress(self, address: str) -> bool:
        """Take *address* off the suppression list (and forget its soft bounces)."""
        self._enter()
        key = normalize_address(address).key
        removed = await self._bounded(self.store.remove(key), "remove")
        # Nor may an outcome still in the journal put it back when it is replayed.
        removed = self._journal.forget(key) or removed
        self._log.info("sendguard.unsuppressed", recipient=self._redact(key), removed=removed)
        return removed

    async def is_suppressed(self, address: str) -> bool:
        """Whether *address* is on the suppression list."""
        return await self.suppression(address) is not None

    async def suppression(self, address: str) -> Suppression | None:
        """The suppression entry of *address*, if it is on the list (or held in the journal)."""
        self._enter()
        key = normalize_address(address).key
        held = self._journal.suppression(key)
        return held if held is not None else await self._bounded(self.store.get(key), "get")

    async def soft_bounces(self, address: str) -> int:
        """How many soft bounces *address* has on record since its last delivery."""
        self._enter()
        key = normalize_address(address).key
        return await self._bounded(self.store.soft_bounces(key), "soft_bounces")

    # -- pauses --------------------------------------------------------------------------------

    async def pauses(self, sender_domain: str) -> list[Pause]:
        """The pauses of *sender_domain* (one per recipient domain) in force now."""
        self._enter()
        return await self._bounded(
            self.store.pauses(sender_domain.lower(), self._clock()), "pauses"
        )

    async def status(self, sender_domain: str) -> SenderStatus:
        """Where *sender_domain* stands: ramp day, sent and cap today, rates, pauses."""
        self._enter()
        return await self._bounded(self._status(sender_domain.lower()), "status")

    async def _status(self, sender: str) -> SenderStatus:
        now = self._clock()
        day = sent = cap = None
        if self.warmup is not None:
            quota = Quota(sender, now.astimezone(UTC).date(), 0)
            ramp = self._ramp(now)
            day = (
                await self.store.ramp_day(sender, ramp)
                if ramp is not None
                else self.warmup.day_of(quota.day)
            )
            cap = self.warmup.cap_for(day)
            sent = await self.store.quota_used(quota)
        volume = Volume()
        if self.breaker is not None:
            volume = await self.store.volume(sender, self.breaker.bucket(now))
        pauses = await self.store.pauses(sender, now)
        whole = next((p for p in pauses if p.recipient_domain == "*"), None)
        why = whole.detail or whole.reason if whole else ""
        if not why and self.breaker is not None:
            verdict = self.breaker.verdict(volume)
            why = verdict[1] if verdict else ""
        return SenderStatus(
            sender_domain=sender,
            day=day,
            sent_today=sent,
            cap_today=cap,
            volume=volume,
            paused_until=whole.until if whole else None,
            why=why,
            domain_pauses=tuple(
                (p.recipient_domain, p.until, p.reason) for p in pauses if p.recipient_domain != "*"
            ),
        )

    async def resume(self, sender_domain: str) -> int:
        """Lift every pause of *sender_domain* now; how many were lifted."""
        self._enter()
        lifted = await self._bounded(self.store.resume(sender_domain.lower()), "resume")
        self._log.info("sendguard.resumed", sender_domain=sender_domain.lower(), lifted=lifted)
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
    ) -> SendResult:
        """Send *message* to every recipient that may receive it; one result per recipient.

        Recipients are To, Cc and Bcc unless *recipients* is given; Bcc is never transmitted.
        The envelope sender is *sender*, else the message's Sender, else its first From.
        *original* is handed to the adapter untouched (``Envelope.original``): a framework's
        own message object, for an adapter that delivers through that framework's backend.

        Raises :class:`MessageError` (a line break in a header, an invalid sender, no
        recipients, a message that cannot be encoded) before anything is reserved, and
        :class:`StoreError` when the store gives no verdict before the send.  After the send
        it raises nothing for the store: ``result.recorded`` is False when the outcome waits
        in the journal.
        """
        self._enter()
        check_headers(message)
        envelope_from = normalize_address(
            sender if sender is not None else envelope_sender(message)
        )
        wanted = list(recipients) if recipients is not None else envelope_recipients(message)
        if not wanted:
            raise NoRecipientsError("the message has no recipients (To, Cc, Bcc or recipients=)")

        now = self._clock()
        results, valid = _validate(wanted)
        # Serialized before anything is reserved: a message that cannot be encoded raises
        # MessageEncodingError now.  SMTPUTF8 if any address needs it (see _transmit).
        utf8 = envelope_from.needs_smtputf8 or any(a.needs_smtputf8 for a in valid.values())
        body = serialize(message, message_id=None, utf8=utf8)
        if self._journal:
            results.update(self._journal_holds(valid, envelope_from, now))
        quota = self._quota(envelope_from, now)
        state = _Delivery(sender=envelope_from, pending={}, original=original)
        shapes, shape_of, spread = await self._shapes(envelope_from, valid, quota, state)
        admissions = await self._reserve(
            Reservation(
                keys=list(valid),
                now=now,
                quota=quota,
                sender_domain=envelope_from.domain,
                bucket=self.breaker.bucket(now) if self.breaker else None,
                bucket_seconds=self.breaker.bucket_seconds if self.breaker else 0,
                shapes=shapes,
                shape_of=shape_of,
                spread=spread,
                recover=self.shaping.recover_every if self.shaping else timedelta(minutes=10),
                ramp=self._ramp(now),
            )
        )
        if admissions is None:
            quota = None  # the store is down and on_store_error="send": nothing was reserved
        results.update(self._admit(state, valid, admissions, quota, now))
        reserved = len(state.pending) if quota is not None else 0

        message_id: str | None = None
        try:
            if state.pending:
                message_id = await self._transmit(state, message, (body, utf8), now)
        except BaseException:
            # The caller gave up (a timeout, a cancelled task) or the send failed half-way:
            # what it learned (a dead address, quota not spent) is recorded all the same.
            outcome = self._send_outcome(state, quota, reserved)
            if not outcome.empty:
                self._spawn(self._settle(outcome))
            raise
        results.update(state.results)

        newly = await self._settle(self._send_outcome(state, quota, reserved))
        result = SendResult(
            sender=envelope_from.key,
            message_id=message_id,
            recipients=results,
            recorded=newly is not None,
        )
        for key in newly or ():
            results[key] = replace(results[key], suppressed=True)
        for pause in state.pauses.values():
            self._log_pause(pause)
        for rr in results.values():
            self._log_result(rr, message_id)
        return result

    async def _transmit(
        self, state: _Delivery, message: Message, serialized: tuple[bytes, bool], now: datetime
    ) -> str:
        """Deliver *message* (its bytes and their mode) to the pending recipients; its ID."""
        data, smtputf8 = serialized
        if smtputf8 and not (
            state.sender.needs_smtputf8 or any(a.needs_smtputf8 for a in state.pending.values())
        ):
            # The recipients that needed SMTPUTF8 were held back: plain SMTP if it encodes so.
            with contextlib.suppress(MessageEncodingError):
                data, smtputf8 = serialize(message, message_id=None), False
        given = message.get("Message-ID")
        added_id = None if given else email.utils.make_msgid(domain=state.sender.domain)
        if added_id is not None:
            data = f"Message-ID: {added_id}\r\n".encode("ascii") + data
            state.headers = (("Message-ID", added_id),)
        await self._deliver(state, message, data, smtputf8, (str(given or added_id), now))
        return str(given or added_id)

    def _send_outcome(self, state: _Delivery, quota: Quota | None, reserved: int) -> Outcome:
        """What a send (finished, or stopped half-way) changes in the store."""
        if not (
            state.suppress or state.soft or state.pauses or state.slowdowns or state.had_soft
        ) and (quota is None or reserved == state.accepted + state.uncertain + state.in_flight):
            return _NOTHING  # the common case: every recipient reserved was accepted
        accepted = [k for k, rr in state.results.items() if rr.status is _ACCEPTED]
        # Quota stays spent for what was accepted, and for what may have been (no reply to
        # the final dot, or a delivery cut off while in flight); the rest is given back.
        spent = len(accepted) + state.uncertain + state.in_flight
        return Outcome(
            now=self._clock(),
            quota=quota,
            give_back=reserved - spent if quota else 0,
            suppressions=[self._entry(key, found, "smtp") for key, found in state.suppress.items()],
            soft_failures=[self._entry(key, found, "smtp") for key, found in state.soft.items()],
            soft_resets=[k for k in state.had_soft if k in accepted]
            if self.adapter.confirms_delivery
            else [],
            pauses=list(state.pauses.values()),
            soft_policy=self.soft_bounce,
            sender_domain=state.sender.domain,
            breaker=self.breaker,
            # A reply is final when permanent: a deferred soft failure may still be delivered.
            bounces=sum(
                counts_as_bounce(f, final=f.permanent, suppressed=True)
                for f in state.suppress.values()
            )
            + sum(
                counts_as_bounce(f, final=f.permanent, suppressed=False)
                for f in state.soft.values()
            ),
            slowdowns=sorted(state.slowdowns),
            slow_max=self.shaping.slow_factor_max if self.shaping else 64,
            recover=self.shaping.recover_every if self.shaping else timedelta(minutes=10),
        )

    def _journal_holds(
        self, valid: dict[str, Address], sender: Address, now: datetime
    ) -> dict[str, RecipientResult]:
        """Take out of *valid* the recipients that outcomes still in the journal hold back."""
        held: dict[str, RecipientResult] = {}
        for key, address in list(valid.items()):
            entry = self._journal.suppression(key)
            pause = self._journal.pause(sender.domain, address.domain, now)
            if entry is not None:
                held[key] = RecipientResult(
                    key,
                    DeliveryStatus.SUPPRESSED,
                    detail=f"suppressed: {entry.reason} (not yet recorded in the store)",
                    reason=entry.reason,
                )
            elif pause is not None:
                held[key] = self._paused(key, pause, attempts=0)
            else:
                continue
            del valid[key]
        return held

    def _admit(
        self,
        state: _Delivery,
        valid: dict[str, Address],
        admissions: list[Admission] | None,
        quota: Quota | None,
        now: datetime,
    ) -> dict[str, RecipientResult]:
        """Make the recipients the store cleared pending; the results of the others."""
        held: dict[str, RecipientResult] = {}
        clear = [Admission(Admit.CLEAR)] * len(valid)
        for key, admission in zip(valid, admissions or clear, strict=True):
            if admission.verdict is Admit.CLEAR:
                state.pending[key] = valid[key]
                if admission.soft:
                    state.had_soft.append(key)
            else:
                held[key] = self._held(key, admission, quota, now)
        return held

    def _held(
        self, key: str, admission: Admission, quota: Quota | None, now: datetime
    ) -> RecipientResult:
        """The result of a recipient the store did not clear for delivery."""
        if admission.verdict is Admit.PAUSED:
            return self._paused(key, admission.pause, attempts=0)
        if admission.verdict is Admit.SUPPRESSED:
            reason = admission.suppression.reason if admission.suppression else "listed"
            return RecipientResult(
                key, DeliveryStatus.SUPPRESSED, detail=f"suppressed: {reason}", reason=reason
            )
        if admission.retry_at is not None:
            return RecipientResult(
                key,
                DeliveryStatus.THROTTLED,
                detail="held back by the sender's rate toward this provider "
                "(shaping, or the day's cap spread over the day)",
                retry_at=admission.retry_at,
            )
        return RecipientResult(
            key,
            DeliveryStatus.THROTTLED,
            detail=f"warmup cap of {quota.cap if quota else 0} for "
            f"{quota.sender_domain if quota else 'the sender'} reached for today",
            retry_at=_next_midnight(now),
        )

    async def _shapes(
        self,
        sender: Address,
        valid: dict[str, Address],
        quota: Quota | None,
        state: _Delivery,
    ) -> tuple[list[Shape], list[int], int]:
        """The rates this send is held to, each key's rate (1-based), and the spread's."""
        shapes: list[Shape] = []
        index: dict[str, int] = {}
        shape_of: list[int] = []
        if self.shaping is not None:
            for key, address in valid.items():
                provider = await self.shaping.resolve(address.domain)
                limit = self.shaping.limit_for(provider)
                if limit is None:
                    shape_of.append(0)
                    continue
                rate = f"{sender.domain}\t{provider}"
                if rate not in index:
                    shapes.append(Shape(rate, limit.interval, limit.burst, adaptive=True))
                    index[rate] = len(shapes)
                shape_of.append(index[rate])
                state.rate_of[key] = rate
        spread = 0
        if self.spread_over is not None and quota is not None and quota.cap > 0:
            burst = max(1, math.ceil(quota.cap * self.spread_burst))
            interval = self.spread_over.total_seconds() / quota.cap
            shapes.append(Shape(f"{sender.domain}\t@day", interval, burst))
            spread = len(shapes)
        return shapes, shape_of if any(shape_of) else [], spread

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
        self._enter()
        reports, found, identity = await asyncio.to_thread(self._read_bounce, raw)
        if not reports:
            return []
        trust = self._trusted(found, reports)
        if not all(ok for ok, _ in trust):
            self._log.warning(
                "sendguard.bounce_untrusted",
                recipients=[
                    self._redact(r.recipient)
                    for r, (ok, _) in zip(reports, trust, strict=True)
                    if r.recipient and not ok
                ],
                reasons=[r.reason for r, (ok, _) in zip(reports, trust, strict=True) if not ok],
                why="no token of this guard for that recipient in the returned headers",
            )
        trusted = [(r, key) for r, (ok, key) in zip(reports, trust, strict=True) if ok]
        outcome = self._bounce_outcome(trusted, identity)
        newly: set[str] = set()
        if not outcome.empty:
            settled = await self._bounded(self._record(outcome), "settle")
            newly = set(_newly_suppressed(outcome, settled))
            for pause in outcome.pauses if not settled.duplicate else ():
                self._log_pause(pause)
        result = []
        for report, (ok, key) in zip(reports, trust, strict=True):
            if not ok:
                result.append(replace(report, trusted=False))
                continue
            done = key is not None and key in newly
            result.append(replace(report, trusted=True, suppressed=done))
            self._log.info(
                "sendguard.bounce",
                recipient=self._redact(key) if key else None,
                forwarded_to=(
                    self._redact(report.recipient)
                    if report.recipient and key != _bounce_key(report.recipient)
                    else None
                ),
                action=report.action,
                reason=report.reason,
                status=report.status,
                hard=report.hard,
                suppressed=done,
            )
        return result

    def _read_bounce(
        self, raw: bytes | str | Message
    ) -> tuple[list[BounceReport], tuple[str, str] | None, str]:
        """The bounce's reports, its token (when signing) and its id, off the event loop."""
        message = bounce_message(raw)
        reports = parse_bounce(message, rules=self.rules)
        found = find_token(message) if reports and self._signer is not None else None
        return reports, found, bounce_id(message, reports) if reports else ""

    def _trusted(
        self, found: tuple[str, str] | None, reports: Sequence[BounceReport]
    ) -> list[tuple[bool, str | None]]:
        """Per report, whether it is trusted, and the key of the address it speaks for.

        A report about forwarded mail names two addresses: the one sent to
        (``original_recipient``) and the one it was forwarded to (``recipient``).  With a
        secret, a report is trusted when the bounce's token (*found*) is this guard's for
        either, and speaks for that one alone: the token was made for one address, so a forger
        who names their own address beside someone else's speaks for their own only.  Without
        a secret every report is trusted and speaks for the address sent to.
        """
        if self._signer is None:
            return [
                (True, _bounce_key(r.original_recipient) or _bounce_key(r.recipient))
                for r in reports
            ]
        now = self._clock()
        trust: list[tuple[bool, str | None]] = []
        for report in reports:
            verified = None
            for key in map(_bounce_key, (report.recipient, report.original_recipient)):
                if found and key and self._signer.verify(found[0], found[1], key, now):
                    verified = key
                    break
            trust.append((verified is not None, verified))
        return trust

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
        self._enter()
        done: list[DeliveryEvent] = []
        for event in events:
            key = _bounce_key(event.recipient)
            verdict = judge_event(event, self.rules)
            outcome = self._event_outcome(event, key, verdict)
            settled = await self._bounded(self._record(outcome), "settle")
            if outcome.pauses and not settled.duplicate:
                self._log_pause(outcome.pauses[0])
            found = verdict.found
            marked = replace(
                event,
                reason=found.reason if found is not None else event.reason,
                hard=verdict.suppress and not verdict.complaint,
                classification=found if found is not None else event.classification,
                ingested=not settled.duplicate,
                suppressed=key is not None and key in _newly_suppressed(outcome, settled),
            )
            self._log.info(
                "sendguard.event",
                provider=event.provider,
                event_id=event.event_id,
                type=event.type,
                recipient=self._redact(key) if key else None,
                reason=marked.reason,
                duplicate=settled.duplicate,
                suppressed=marked.suppressed,
            )
            done.append(marked)
        return done

    def _event_outcome(self, event: DeliveryEvent, key: str | None, verdict: Verdict) -> Outcome:
        """What one provider event records (as its *verdict* says), once per event id."""
        sender = event.sender.rpartition("@")[2].lower()
        judged = [(key, verdict, f"{event.provider}:webhook".lower(), sender)] if key else []
        return replace(
            self._observed(judged, sender=sender, detail=event.detail),
            event_id=f"{event.provider}\t{event.event_id}".lower(),
            nonce=f"nonce\t{event.nonce}" if event.nonce else "",
        )

    def _bounce_outcome(
        self, reports: Sequence[tuple[BounceReport, str | None]], identity: str = ""
    ) -> Outcome:
        """What trusted *reports* record, each under the key of the address it speaks for."""
        # One bounce speaks for an address once, by its weightiest report: a token holder who
        # writes a group for their own address a thousand times (or names it as the original
        # recipient of a thousand others) is one bounce, not enough to trip the breaker.
        weightiest: dict[str, tuple[BounceReport, Verdict]] = {}
        for report, key in reports:
            if key is not None:
                verdict = judge_report(report)
                known = weightiest.get(key)
                if known is None or verdict.weight > known[1].weight:
                    weightiest[key] = (report, verdict)
        judged = [
            (
                key,
                verdict,
                "complaint" if verdict.complaint else "bounce",
                report.original_sender.rpartition("@")[2].lower(),
            )
            for key, (report, verdict) in weightiest.items()
        ]
        senders = {r.original_sender.rpartition("@")[2].lower() for r, _ in reports}
        outcome = self._observed(judged, sender=senders.pop() if len(senders) == 1 else "")
        # A bounce fed again (re-delivered, or read twice) records nothing the second time,
        # as a provider's event does; one that changes nothing needs no id kept.
        changes = any(verdict.changes for _, verdict, _, _ in judged)
        return replace(outcome, event_id=f"bounce\t{identity}" if identity and changes else "")

    def _observed(
        self,
        judged: Sequence[tuple[str, Verdict, str, str]],
        *,
        sender: str,
        detail: str | None = None,
    ) -> Outcome:
        """The outcome of later observations: ``(key, verdict, source, sender domain)`` each.

        A refusal of the sender pauses that sender domain toward the recipient's domain, as on
        the send path; with no sender known there is nobody to pause.  The breaker counts for
        *sender* (the one sender of every observation), when known.
        """
        suppressions: list[Suppression] = []
        soft: list[Suppression] = []
        resets: list[str] = []
        pauses: dict[tuple[str, str], Pause] = {}
        bounces = complaints = 0
        now = self._clock()
        for key, verdict, source, sender_domain in judged:
            found = verdict.found
            if found is None:
                continue
            entry = self._entry(key, found, source)
            if detail is not None:
                entry = replace(entry, detail=detail)
            if verdict.suppress:
                suppressions.append(entry)
            elif verdict.soft:
                soft.append(entry)
            elif verdict.reset:
                resets.append(key)
            elif verdict.pause and sender_domain:
                domain = key.rpartition("@")[2]
                pauses.setdefault(
                    (sender_domain, domain),
                    pause_for(
                        sender_domain,
                        domain,
                        found,
                        now,
                        (self.pause_for, self.transient_pause_for),
                    ),
                )
            bounces += verdict.bounce
            complaints += verdict.complaint
        return Outcome(
            now=now,
            suppressions=suppressions,
            soft_failures=soft,
            soft_resets=resets,
            pauses=list(pauses.values()),
            soft_policy=self.soft_bounce,
            sender_domain=sender,
            breaker=self.breaker if sender else None,
            bounces=bounces,
            complaints=complaints,
        )

    def _ramp(self, now: datetime) -> Ramp | None:
        """The ramp of sending days the store counts, when the schedule counts them."""
        if self.warmup is None or self.warmup.counting != "sending":
            return None
        today = now.astimezone(UTC).date()
        return Ramp(self.warmup.caps, (today - _EPOCH).days, self.warmup.idle_restart)

    def _quota(self, sender: Address, now: datetime) -> Quota | None:
        if self.warmup is None:
            return None
        today = now.astimezone(UTC).date()
        return Quota(sender.domain, today, self.warmup.cap_on(today))

    async def _reserve(self, request: Reservation) -> list[Admission] | None:
        if not request.keys:
            return []
        # Given up on (cancelled, or too slow), the reservation may be made all the same: the
        # store then hands it to request.abandoned, which gives its quota back.
        request = replace(
            request, abandoned=lambda admissions: self._unreserve(request, admissions)
        )
        try:
            return await self._bounded(self.store.reserve(request), "reserve")
        except StoreError as exc:
            if self.on_store_error == "raise":
                raise
            self._log.warning(
                "sendguard.store_error",
                operation="reserve",
                error=str(exc),
                action="sending without a suppression verdict",
            )
            return None

    def _unreserve(self, request: Reservation, admissions: Sequence[Admission]) -> None:
        """Give back the quota of a reservation nobody waited for."""
        if request.quota is None:
            return
        taken = sum(1 for a in admissions if a.verdict is Admit.CLEAR)
        if taken:
            give_back = Outcome(now=self._clock(), quota=request.quota, give_back=taken)
            self._spawn(self._settle(give_back))

    def _envelopes(
        self,
        state: _Delivery,
        message: Message,
        data: bytes,
        smtputf8: bool,
        signing: tuple[str, datetime],
    ) -> list[Envelope]:
        """One envelope for the recipients still pending, or, when signing, one each.

        A bounce token binds the recipient it was sent to (so a recipient cannot forge
        bounces about anyone else), so signed mail is one transaction per recipient.
        """
        pending = list(state.pending.values())
        if self._signer is None:
            wires = tuple(a.wire for a in pending)
            return [
                Envelope(
                    state.sender.wire,
                    wires,
                    message,
                    data,
                    smtputf8,
                    headers=state.headers,
                    original=state.original,
                )
            ]
        message_id, issued = signing
        envelopes = []
        for a in pending:
            token = self._signer.sign(message_id, a.key, issued)
            envelopes.append(
                Envelope(
                    state.sender.wire,
                    (a.wire,),
                    message,
                    f"{TOKEN_HEADER}: {token}\r\n".encode() + data,
                    smtputf8,
                    headers=((TOKEN_HEADER, token), *state.headers),
                    original=state.original,
                )
            )
        return envelopes

    async def _call_adapter(self, envelope: Envelope) -> Mapping[str, Reply]:
        """The adapter's replies; an adapter that raises made the delivery uncertain."""
        try:
            return await self.adapter.deliver(envelope)
        except SendGuardError:
            raise
        except Exception as exc:  # noqa: BLE001 (any failure of the adapter's is an answer)
            self._log.exception("sendguard.adapter_error", adapter=repr(self.adapter))
            # It may have sent the message before it failed: never re-send automatically.
            detail = f"delivery uncertain: {self.adapter!r} raised {exc!r}"
            reply = Reply(None, detail, Stage.DATA_END)
            return dict.fromkeys(envelope.recipients, reply)

    def _learn(
        self, state: _Delivery, recipients: Mapping[str, Address], replies: Mapping[str, Reply]
    ) -> dict[str, Address]:
        """Decide each of *recipients* by its reply (in *replies*); those to retry."""
        retry: dict[str, Address] = {}
        for key, address in recipients.items():
            reply = replies.get(address.wire) or Reply(
                None, f"{self.adapter!r} gave no reply for this recipient", Stage.RCPT
            )
            attempts = state.attempts[key] = state.attempts.get(key, 0) + 1
            decision, found = judge_reply(reply, self.rules)
            state.last[key] = (reply, found)
            if found is not None and found.reason == "ratelimited" and key in state.rate_of:
                state.slowdowns.add(state.rate_of[key])  # "slow down": halve the rate
            if decision is Decision.PAUSE and found is not None:
                pause = state.pauses.setdefault(
                    address.domain, self._pause(state.sender, address.domain, found)
                )
                state.results[key] = (
                    self._final(key, reply, found, DeliveryStatus.REJECTED, attempts)
                    if found.permanent
                    else self._paused(key, pause, attempts, reply, found)
                )
            elif decision is Decision.RETRY:
                if address.domain in state.pauses:  # refused the sender meanwhile
                    pause = state.pauses[address.domain]
                    state.results[key] = self._paused(key, pause, attempts, reply, found)
                else:
                    retry[key] = address
            else:
                state.results[key] = self._final(key, reply, found, _STATUS[decision], attempts)
                if decision is Decision.ACCEPT:
                    state.accepted += 1
                if decision is Decision.SUPPRESS and found is not None:
                    state.suppress[key] = found
                elif decision is Decision.UNCERTAIN:
                    state.uncertain += 1
                elif found is not None and found.soft:
                    state.soft[key] = found
        return retry

    async def _deliver(
        self,
        state: _Delivery,
        message: Message,
        data: bytes,
        smtputf8: bool,
        signing: tuple[str, datetime],
    ) -> None:
        async def attempt() -> dict[str, Address]:
            envelopes = self._envelopes(state, message, data, smtputf8, signing)
            replies: dict[str, Reply] = {}

            async def one(envelope: Envelope) -> None:
                replies.update(await self._call_adapter(envelope))

            state.in_flight = len(state.pending)
            try:
                if len(envelopes) == 1:
                    await one(envelopes[0])  # the common case, without a task per attempt
                else:
                    await asyncio.gather(*(one(e) for e in envelopes))
            except asyncio.CancelledError:
                # What the copies that came back said is learned, even if the caller is gone.
                answered = {k: a for k, a in state.pending.items() if a.wire in replies}
                retry = self._learn(state, answered, replies)
                unanswered = {k: a for k, a in state.pending.items() if k not in answered}
                state.in_flight = len(unanswered)
                state.pending = {**unanswered, **retry}
                raise
            state.in_flight = 0
            retry = self._learn(state, state.pending, replies)
            if retry:
                self._log.info(
                    "sendguard.retry",
                    recipients=[self._redact(k) for k in retry],
                    attempt=max(state.attempts[k] for k in retry),
                )
            state.pending = retry
            return retry

        def not_before(_: object) -> float | None:
            waits = [state.last[k][0].retry_after or 0.0 for k in state.pending]
            return max(waits, default=0.0) or None

        await self.retry.run(
            attempt,
            should_retry=bool,
            clock=self._clock,
            sleep=self._sleep,
            not_before=not_before,
        )
        wait = max(self.retry.defer_for, not_before(None) or 0.0)
        retry_at = self._clock() + timedelta(seconds=wait)
        for key in state.pending:
            reply, found = state.last[key]
            state.results[key] = replace(
                self._final(key, reply, found, DeliveryStatus.DEFERRED, state.attempts[key]),
                retry_at=retry_at,
            )
            if found is not None and found.soft:
                state.soft[key] = found

    def _pause(self, sender: Address, recipient_domain: str, found: Classification) -> Pause:
        return pause_for(
            sender.domain,
            recipient_domain,
            found,
            self._clock(),
            (self.pause_for, self.transient_pause_for),
        )

    @staticmethod
    def _final(
        key: str,
        reply: Reply,
        found: Classification | None,
        status: DeliveryStatus,
        attempts: int,
    ) -> RecipientResult:
        return RecipientResult(
            key,
            status,
            reply_code=reply.code,
            enhanced_code=reply.enhanced_code or (found.enhanced_code if found else None),
            detail=reply.text,
            attempts=attempts,
            reason=found.reason if found is not None and status is not _ACCEPTED else "",
        )

    @staticmethod
    def _paused(
        key: str,
        pause: Pause | None,
        attempts: int,
        reply: Reply | None = None,
        found: Classification | None = None,
    ) -> RecipientResult:
        until = pause.until if pause is not None else None
        why = pause.reason if pause is not None else "paused"
        return RecipientResult(
            key,
            DeliveryStatus.PAUSED,
            reply_code=reply.code if reply else None,
            enhanced_code=reply.enhanced_code if reply else None,
            detail=reply.text
            if reply
            else f"sender paused toward {pause.recipient_domain if pause else 'this domain'} "
            f"({why}) until {until.isoformat() if until else 'resumed'}",
            attempts=attempts,
            retry_at=until,
            reason=found.reason if found is not None else why,
        )

    def _entry(self, key: str, found: Classification, source: str) -> Suppression:
        return Suppression(
            address=key,
            reason=found.reason,
            reply_code=found.reply_code,
            enhanced_code=found.enhanced_code,
            detail=found.text,
            source=source,
            created_at=self._clock(),
        )

    async def _settle(self, outcome: Outcome) -> list[str] | None:
        """Record a send's outcome in one store call; the keys it newly suppressed.

        ``None`` when the store did not record it in time: the outcome is then kept in the
        journal (with an event id of its own, so a late or repeated write counts once) and
        replayed when the store answers.  A cancelled caller does not cancel the write.
        """
        if outcome.empty:
            return []  # the common case: everything accepted, nothing to record
        outcome = with_event_id(outcome)
        try:
            # Written ahead: a process killed while the store call is in flight loses nothing.
            await self._journal.ahead(outcome)
        except asyncio.CancelledError:
            self._keep(outcome)  # the store call was never made: the replay makes it
            raise
        pending = asyncio.ensure_future(self._record(outcome))
        pending.add_done_callback(lambda done: self._landed(outcome, done))
        try:
            settled = await self._bounded(asyncio.shield(pending), "settle")
        except StoreError as exc:
            self._log.error("sendguard.store_error", operation="settle", error=str(exc))
            self._keep(outcome)
            return None
        except asyncio.CancelledError:
            self._keep(outcome)
            raise
        return _newly_suppressed(outcome, settled)

    async def _record(self, outcome: Outcome) -> Settled:
        """Settle *outcome* and act on what the breaker says of the sender's volume."""
        settled = await self.store.settle(outcome)
        if self.breaker is None or settled.volume is None:
            return settled
        verdict = self.breaker.verdict(settled.volume)
        if verdict is None:
            return settled
        level, why = verdict
        if level == "pause" and not settled.tripped:
            return settled  # already paused by an earlier trip: said then
        event = BreakerEvent(outcome.sender_domain, settled.volume, level, why)
        log = self._log.error if level == "pause" else self._log.warning
        log(
            "sendguard.breaker",
            sender_domain=outcome.sender_domain,
            level=level,
            why=why,
            sends=settled.volume.sends,
            bounces=settled.volume.bounces,
            complaints=settled.volume.complaints,
        )
        if self.breaker.on_warn is not None:
            self.breaker.on_warn(event)
        return settled

    def _log_pause(self, pause: Pause) -> None:
        self._log.warning(
            "sendguard.sender_paused",
            sender_domain=pause.sender_domain,
            recipient_domain=pause.recipient_domain,
            reason=pause.reason,
            until=pause.until.isoformat(),
            detail=pause.detail,
        )

    def _log_result(self, rr: RecipientResult, message_id: str | None) -> None:
        level = "info" if rr.status is _ACCEPTED else "warning"
        getattr(self._log, level)(
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


_ACCEPTED = DeliveryStatus.ACCEPTED
_NOTHING = Outcome(now=datetime(1970, 1, 1, tzinfo=UTC))
"""An outcome that records nothing (``empty``)."""
_EPOCH = date(1970, 1, 1)
_STATUS = {
    Decision.ACCEPT: DeliveryStatus.ACCEPTED,
    Decision.REJECT: DeliveryStatus.REJECTED,
    Decision.SUPPRESS: DeliveryStatus.REJECTED,
    Decision.UNCERTAIN: DeliveryStatus.DEFERRED,
}
