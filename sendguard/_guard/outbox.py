"""The outbox: what a send could not deliver now is kept, and workers send it when allowed.

A send that leaves recipients throttled (over the day's warmup cap, or a rate), paused (the
provider refused the sender) or deferred (a temporary failure) keeps them in the store with the
message, once; an uncertain delivery (no reply to the final dot) is kept too, as uncertain,
for a person to look at, never re-sent by itself.  :meth:`Keeper.deliver` claims what is due
(stream by stream, transactional first), sends each letter through the guard's whole pipeline
again (caps, pauses, shaping, the breaker: a re-send is a send), and finishes each entry:
delivered or final, it goes; held back again, it waits for its next time; older than
``max_age``, it expires (a soft bounce).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import email.utils
import itertools
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.message import Message
from typing import TYPE_CHECKING

from sendguard._address import Address, normalize_address
from sendguard._errors import InvalidAddressError, StoreError
from sendguard._guard._common import SendState, log
from sendguard._models import DeliveryStatus, RecipientResult, SendResult, Suppression
from sendguard._store import Outcome
from sendguard._store.coalesce import Coalescer
from sendguard._store.outbox import Backlog, Claim, Finish, Held, Kept, Letter, entry_id

if TYPE_CHECKING:
    from sendguard._guard.facade import Guard

__all__ = ["HOLDABLE", "Keeper", "OutboxEvent", "OutboxRun", "Unsent", "drain"]

HOLDABLE = frozenset({DeliveryStatus.THROTTLED, DeliveryStatus.PAUSED, DeliveryStatus.DEFERRED})
"""The outcomes of a send that are not final: the recipient may still be sent to."""

MIN_BACKOFF = timedelta(minutes=1)
"""The first wait of the outbox's backoff when ``RetryPolicy.defer_for`` is 0."""
MAX_BACKOFF = timedelta(hours=4)
"""The longest wait between two tries of a deferred recipient (Postfix's is 4000 s)."""
UNKEEP_TRIES = 12
"""How often a keep that failed is dropped again until the store answers."""
UNKEEP_PAUSE = 1.0
"""Seconds before the second of those tries (doubling, at most a minute)."""


@dataclass(frozen=True, slots=True)
class Unsent:
    """A send's recipients to keep: the message as it goes on the wire, and who waits."""

    message_id: str
    data: bytes
    smtputf8: bool
    results: Mapping[str, RecipientResult]
    """Result by wire address, of those held back (an uncertain one is kept for a person)."""


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """Something that happened to kept mail: ``kind`` is kept, delivered, expired or failed.

    ``result`` is the recipient's result (``kept`` for kept ones); ``letter`` the outbox id
    of its message and ``message_id`` its Message-ID.
    """

    kind: str
    result: RecipientResult
    letter: str
    message_id: str
    stream: str


@dataclass(slots=True)
class OutboxRun:
    """What one pass of a worker did."""

    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    """Final without delivery: rejected, suppressed, invalid."""
    waiting: int = 0
    """Held back again (throttled, paused, deferred): kept for their next time."""
    uncertain: int = 0
    expired: int = 0
    lost: int = 0
    """Claimed, but the lease ran out before they could be sent (another worker has them)."""

    def add(self, other: OutboxRun) -> None:
        """Count *other* in too."""
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> dict[str, int]:
        """The counts by name."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass
class Claimed:
    """A worker's hold on one letter's entries while the guard sends it."""

    token: str
    letter: str
    entries: dict[str, Kept] = field(default_factory=dict)
    """By recipient key."""
    lost: set[str] = field(default_factory=set)
    """Keys whose claim ran out before they were started: not sent by this worker."""
    start: Callable[[list[str]], Awaitable[list[str]]] | None = None
    """Marks entry ids as being sent; those it could (the pass's batched ``Store.start``)."""
    started: set[str] = field(default_factory=set)
    """Keys marked as being sent: the provider may have them once the send began."""
    answered: dict[str, RecipientResult] = field(default_factory=dict)
    """When the send was cut off: the results of the recipients it had settled."""
    in_flight: set[str] = field(default_factory=set)
    """When the send was cut off: keys whose delivery was under way (uncertain)."""
    cut_off: bool = False

    def learned(self, results: Mapping[str, RecipientResult], state: SendState) -> None:
        """Note what a send cut off had learned, for the worker to finish it."""
        self.cut_off = True
        pending = list(state.pending)
        self.in_flight = set(pending[: state.in_flight])
        decided = {**results, **state.results}
        self.answered = {k: rr for k, rr in decided.items() if k not in state.pending}


class _Pass:
    """One worker pass's store calls: the starts and finishes of its letters, batched.

    Letters are sent concurrently; their ``start`` and ``finish`` calls made while one is in
    flight go out together in the next, so a pass costs far fewer store round trips than
    letters (a lone letter pays no extra wait).
    """

    def __init__(self, guard: Guard, token: str) -> None:
        self._guard = guard
        self.token = token
        self._starts: Coalescer[list[str], list[str]] = Coalescer(self._start_batch)
        self._finishes: Coalescer[list[Finish], int] = Coalescer(self._finish_batch)

    async def start(self, ids: list[str]) -> list[str]:
        return await self._starts.submit(ids)

    async def finish(self, finishes: list[Finish]) -> None:
        await self._finishes.submit(finishes)

    async def _start_batch(self, requests: Sequence[list[str]]) -> list[list[str]]:
        guard = self._guard
        every = [i for ids in requests for i in ids]
        started = set(
            await guard._recorder.bounded(
                guard.store.start(self.token, every, guard._clock()), "start"
            )
        )
        return [[i for i in ids if i in started] for ids in requests]

    async def _finish_batch(self, requests: Sequence[list[Finish]]) -> list[int]:
        guard = self._guard
        every = [f for finishes in requests for f in finishes]
        await guard._recorder.bounded(guard.store.finish(self.token, every), "finish")
        return [len(f) for f in requests]


class Keeper:
    """Keeps what a send could not deliver, and delivers it again when the guard allows."""

    def __init__(
        self,
        guard: Guard,
        *,
        streams: Mapping[str, float],
        max_age: timedelta,
        on_event: Callable[[OutboxEvent], object] | None,
    ) -> None:
        self._guard = guard
        self.streams = dict(streams)
        self.max_age = max_age
        self._on_event = on_event

    # -- keeping -------------------------------------------------------------------------------

    async def keep(
        self, sender: str, stream: str, original: object, unsent: Unsent, now: datetime
    ) -> str | None:
        """Keep *unsent*'s recipients with their message; the letter's id (None: not kept).

        A store that cannot keep them is logged and leaves the results as they were (not
        kept): the caller sees that nothing will send them.  A keep that timed out may still
        land (a stalled Redis that runs the script later, a SQLite write that commits after
        the guard stopped waiting), so what it would have kept is dropped again in the
        background: the outbox never sends what the caller was told is not kept.
        """
        guard = self._guard
        letter = Letter(
            id=letter_id(now),
            sender=sender,
            data=unsent.data,
            created_at=now,
            message_id=unsent.message_id,
            stream=stream,
            smtputf8=unsent.smtputf8,
            original=guard.adapter.keep(original) if original is not None else "",
        )
        sender_domain = sender.rpartition("@")[2].lower()
        entries = []
        for wire, rr in unsent.results.items():
            entries.append(
                Kept(
                    letter=letter.id,
                    recipient=wire,
                    sender_domain=sender_domain,
                    stream=stream,
                    next_at=rr.retry_at or now,
                    created_at=now,
                    attempts=rr.attempts,
                    state=Held.UNCERTAIN if rr.uncertain else Held.WAITING,
                    detail=rr.detail,
                )
            )
        try:
            await guard._recorder.bounded(guard.store.keep(letter, entries), "keep")
        except StoreError as exc:
            log.error(
                "sendguard.keep_failed",
                error=str(exc),
                message_id=unsent.message_id,
                recipients=len(entries),
            )
            guard._recorder.spawn(self._unkeep(letter.id, [e.id for e in entries]))
            return None
        for rr in unsent.results.values():
            self._tell("kept", replace(rr, kept=True), letter)
        return letter.id

    async def _unkeep(self, letter: str, ids: list[str]) -> None:
        """Drop *ids* (of a keep that failed) in case it landed after all.

        Tried until the store answers (at most :data:`UNKEEP_TRIES` times, a second apart,
        then logged for a person to drop), and once more a ``store_timeout`` later: the keep
        may run after the first drop, when the store works off its backlog.
        """
        guard = self._guard
        dropped = 0
        for attempt in range(UNKEEP_TRIES):
            try:
                dropped += await guard._recorder.bounded(guard.store.drop(ids), "drop")
                break
            except StoreError:
                await asyncio.sleep(min(2.0**attempt, 60.0) * UNKEEP_PAUSE)
        else:
            log.error(
                "sendguard.unkeep_failed",
                letter=letter,
                action="the store may hold mail the caller was told is not kept: "
                f"sendguard outbox drop {letter}",
            )
            return
        await asyncio.sleep(guard.store_timeout)
        with contextlib.suppress(StoreError):
            dropped += await guard._recorder.bounded(guard.store.drop(ids), "drop")
        if dropped:
            log.warning("sendguard.unkept", letter=letter, dropped=dropped)

    def _tell(self, kind: str, rr: RecipientResult, letter: Letter) -> None:
        guard = self._guard
        getattr(log, "warning" if kind in ("expired", "failed") else "info")(
            f"sendguard.outbox_{kind}",
            recipient=guard._redact(rr.address),
            status=str(rr.status),
            letter=letter.id,
            message_id=letter.message_id,
            stream=letter.stream,
            retry_at=rr.retry_at.isoformat() if rr.retry_at else None,
        )
        if self._on_event is not None:
            try:
                self._on_event(OutboxEvent(kind, rr, letter.id, letter.message_id, letter.stream))
            except Exception:  # noqa: BLE001 (the application's hook must not stop the outbox)
                log.exception("sendguard.outbox_hook_failed", kind=kind)

    # -- sending what is due -------------------------------------------------------------------

    async def deliver(
        self,
        *,
        limit: int = 100,
        lease: timedelta = timedelta(minutes=5),
        concurrency: int = 8,
        stop: asyncio.Event | None = None,
    ) -> OutboxRun:
        """Claim up to *limit* due recipients and send them, *concurrency* letters at a time.

        The claim's lease is renewed every third of it while the pass runs (a slow server
        keeps its worker's hold); once *stop* is set, letters not started stay unsent and are
        given back with the rest of the claim.
        """
        guard = self._guard
        guard._recorder.enter()
        token = uuid.uuid4().hex
        now = guard._clock()
        claim = await guard._recorder.bounded(
            guard.store.claim(
                now, token=token, lease=lease, limit=limit, streams=list(self.streams)
            ),
            "claim",
        )
        if not claim.entries:
            # Idle: mail of streams this guard does not have (removed from its config) is
            # claimed too, to expire in its time rather than wait unseen for ever.
            claim = await self._claim_strays(now, token, lease, limit)
        run = OutboxRun(claimed=len(claim.entries))
        if not claim.entries:
            return run
        by_letter: dict[str, list[Kept]] = {}
        for kept in claim.entries:
            by_letter.setdefault(kept.letter, []).append(kept)
        gate = asyncio.Semaphore(concurrency)
        calls = _Pass(guard, token)
        heartbeat = asyncio.create_task(self._renew(token, [e.id for e in claim.entries], lease))

        async def one(letter: Letter, entries: list[Kept]) -> OutboxRun:
            async with gate:
                if stop is not None and stop.is_set():
                    return OutboxRun()  # stopping: not started, given back below
                return await self._letter(calls, letter, entries)

        try:
            done = await asyncio.gather(
                *(one(claim.letters[name], entries) for name, entries in by_letter.items())
            )
        finally:
            heartbeat.cancel()
            # Whatever was claimed and not started (a pass cut off) goes back at once.
            await asyncio.shield(self._release(token))
        for part in done:
            run.add(part)
        return run

    async def _claim_strays(self, now: datetime, token: str, lease: timedelta, limit: int) -> Claim:
        """Claim due mail of streams not among this guard's (one backlog read first)."""
        guard = self._guard
        backlog = await guard._recorder.bounded(guard.store.backlog(now), "backlog")
        strays = sorted({b.stream for b in backlog if b.due and b.stream not in self.streams})
        if not strays:
            return Claim(token)
        return await guard._recorder.bounded(
            guard.store.claim(now, token=token, lease=lease, limit=limit, streams=strays),
            "claim",
        )

    async def _renew(self, token: str, ids: list[str], lease: timedelta) -> None:
        """Renew the pass's claim every third of its lease, until cancelled."""
        guard = self._guard
        every = max(lease.total_seconds() / 3, 0.01)
        while True:
            await asyncio.sleep(every)  # real time: the lease protects real deliveries
            try:
                await guard._recorder.bounded(
                    guard.store.renew(token, ids, guard._clock() + lease), "renew"
                )
            except StoreError as exc:
                log.warning("sendguard.renew_failed", error=str(exc))

    async def _release(self, token: str) -> None:
        try:
            await self._guard._recorder.bounded(self._guard.store.release(token), "release")
        except StoreError as exc:  # the lease gives them back anyway
            log.warning("sendguard.release_failed", error=str(exc))

    async def _letter(self, calls: _Pass, letter: Letter, entries: list[Kept]) -> OutboxRun:
        """Send one letter's claimed entries; finish each."""
        guard = self._guard
        now = guard._clock()
        run = OutboxRun()
        finishes: list[Finish] = []
        live: dict[str, Kept] = {}
        stray = letter.stream not in self.streams
        for kept in entries:
            if now - kept.created_at >= self.max_age:
                finishes.append(Finish(kept.id))
                continue
            if stray:
                # Not this guard's stream: waits, unsent, until it expires (or a person acts).
                why = f"stream {letter.stream!r} is not among the guard's streams"
                until = max(kept.created_at + self.max_age, now + MIN_BACKOFF)
                finishes.append(Finish(kept.id, Held.WAITING, until, kept.attempts, why))
                run.waiting += 1
                continue
            try:
                live[normalize_address(kept.recipient).key] = kept
            except InvalidAddressError:
                finishes.append(Finish(kept.id))  # cannot happen: only valid ones are kept
        expired = [k for k in entries if k.id in {f.id for f in finishes}]
        if expired:
            await self._expire(letter, expired, now)
            run.expired += len(expired)
        if live:
            hold = Claimed(calls.token, letter.id, live, start=calls.start)
            try:
                result = await self._resend(letter, hold)
            except asyncio.CancelledError:
                # Finish what the send had settled (delivered ones must not come back
                # uncertain); what was in flight waits for the lease, as it may be delivered.
                finishes += self._cut_off(hold, now, None, run, letter)
                await asyncio.shield(self._finish_all(calls, finishes, letter))
                raise
            except Exception as exc:  # noqa: BLE001 (one bad letter must not stop the rest)
                log.exception("sendguard.outbox_letter_failed", letter=letter.id)
                finishes += self._cut_off(hold, now, exc, run, letter)
                live = {}
                result = SendResult(letter.sender, letter.message_id, {})
            for key, kept in live.items():
                rr = result.recipients.get(key)
                if key in hold.lost or rr is None:
                    run.lost += 1
                    continue
                finish, kind = self._finish(kept, rr, now)
                finishes.append(finish)
                setattr(run, kind, getattr(run, kind) + 1)
                if kind in ("delivered", "failed"):
                    self._tell(kind, rr, letter)
        await self._finish_all(calls, finishes, letter)
        return run

    def _cut_off(
        self,
        hold: Claimed,
        now: datetime,
        error: Exception | None,
        run: OutboxRun,
        letter: Letter,
    ) -> list[Finish]:
        """How a letter's entries are left when its send raised (*error*) or was cancelled.

        Settled recipients are finished as their results say.  One whose delivery was under
        way, or that was started when the send failed, may be delivered: uncertain (or, when
        cancelled, left to its lease).  The rest never reached the provider this time: tried
        again after the backoff.
        """
        finishes = []
        for key, kept in hold.entries.items():
            if key in hold.lost:
                run.lost += 1
                continue
            rr = hold.answered.get(key) if hold.cut_off else None
            if rr is not None:  # settled by a reply, or held back at admission
                finish, kind = self._finish(kept, rr, now)
                if kind in ("delivered", "failed"):
                    self._tell(kind, rr, letter)
            elif key in hold.in_flight or (error is not None and key in hold.started):
                if error is None:
                    continue  # cancelled mid-delivery: the lease makes it uncertain
                why = f"the send failed while delivering: {error!r}"[:500]
                finish, kind = (
                    Finish(kept.id, Held.UNCERTAIN, None, kept.attempts + 1, why),
                    "uncertain",
                )
            else:
                why = f"not sent: {error!r}"[:500] if error is not None else "the pass was stopped"
                finish, kind = self._later(kept, now, why), "waiting"
            finishes.append(finish)
            setattr(run, kind, getattr(run, kind) + 1)
        return finishes

    async def _finish_all(self, calls: _Pass, finishes: list[Finish], letter: Letter) -> None:
        """Record *finishes*, retrying a store that fails for a moment (a restart, a failover).

        A finish that never lands leaves its entries to their lease: what was being sent
        comes back uncertain, the rest waiting.
        """
        if not finishes:
            return
        for wait in (0.2, 1.0, 3.0, None):
            try:
                await calls.finish(finishes)
            except StoreError as exc:
                if wait is None:
                    log.error("sendguard.finish_failed", error=str(exc), letter=letter.id)
                    return
                log.warning("sendguard.finish_retry", error=str(exc), letter=letter.id)
                await asyncio.sleep(wait)
            else:
                return

    async def _resend(self, letter: Letter, hold: Claimed) -> SendResult:
        guard = self._guard
        message = _parsed(letter)
        original = guard.adapter.restore(letter.original) if letter.original else None
        return await guard._send(
            message,
            envelope_from=normalize_address(letter.sender),
            wanted=[k.recipient for k in hold.entries.values()],
            original=original,
            stream=letter.stream,
            serialized=(letter.data, letter.smtputf8),
            claimed=hold,
        )

    def _later(self, kept: Kept, now: datetime, detail: str) -> Finish:
        """*kept* tried again after the backoff of its next attempt."""
        attempts = kept.attempts + 1
        return Finish(kept.id, Held.WAITING, now + self._backoff(attempts), attempts, detail)

    def _backoff(self, attempts: int) -> timedelta:
        """How long a recipient deferred *attempts* times waits: doubling, up to a ceiling."""
        defer_for = self._guard.retry.defer_for
        # defer_for=0 (no wait in the call) doubled stays 0: a minute instead, as a floor.
        first = timedelta(seconds=defer_for) if defer_for > 0 else MIN_BACKOFF
        wait: timedelta = first * (2 ** min(max(0, attempts - 1), 16))
        return min(wait, max(MAX_BACKOFF, first))

    def _finish(self, kept: Kept, rr: RecipientResult, now: datetime) -> tuple[Finish, str]:
        """How *kept* is left after a re-send that gave *rr*; and what it counts as."""
        attempts = kept.attempts + max(rr.attempts, 0)
        if rr.status is DeliveryStatus.ACCEPTED:
            return Finish(kept.id), "delivered"
        if rr.status not in HOLDABLE:
            return Finish(kept.id), "failed"
        if rr.uncertain:
            return Finish(kept.id, Held.UNCERTAIN, None, attempts, rr.detail), "uncertain"
        next_at = rr.retry_at or now
        if rr.status is DeliveryStatus.DEFERRED:
            # Each try of the outbox waits twice as long as the one before, up to a ceiling.
            next_at = max(next_at, now + self._backoff(attempts))
        return Finish(kept.id, Held.WAITING, next_at, attempts, rr.detail), "waiting"

    async def _expire(self, letter: Letter, expired: Sequence[Kept], now: datetime) -> None:
        """Give up on *expired*: each counts as a soft bounce, and is told."""
        guard = self._guard
        keys = []
        for kept in expired:
            try:
                keys.append(normalize_address(kept.recipient).key)
            except InvalidAddressError:
                continue
        outcome = Outcome(
            now=now,
            soft_failures=[
                Suppression(
                    k,
                    "expired",
                    None,
                    None,
                    f"kept {guard._keeper.max_age} without delivery",
                    "outbox",
                    now,
                )
                for k in keys
            ],
            soft_policy=guard.soft_bounce,
            sender_domain=letter.sender.rpartition("@")[2].lower(),
        )
        await guard._recorder.settle(outcome)
        for kept, key in zip(expired, keys, strict=False):
            rr = RecipientResult(
                key,
                DeliveryStatus.EXPIRED,
                detail=f"kept since {kept.created_at.isoformat()} without delivery: {kept.detail}",
                attempts=kept.attempts,
                reason="expired",
            )
            self._tell("expired", rr, letter)

    # -- what a person sees --------------------------------------------------------------------

    async def backlog(self) -> list[Backlog]:
        """The kept recipients per sender domain and stream."""
        guard = self._guard
        guard._recorder.enter()
        return await guard._recorder.bounded(guard.store.backlog(guard._clock()), "backlog")


def _parsed(letter: Letter) -> Message:
    """A kept letter's message, for adapters that read it (and a 7-bit re-send).

    A letter kept for SMTPUTF8 holds UTF-8 headers: read as text, they stay text (read as
    bytes, the parser would keep them as undecodable "unknown-8bit").
    """
    if letter.smtputf8:
        try:
            return email.message_from_string(
                letter.data.decode("utf-8"), policy=email.policy.default
            )
        except UnicodeDecodeError:
            pass  # an 8-bit body in another charset: as bytes, then
    return email.message_from_bytes(letter.data, policy=email.policy.default)


_SEQUENCE = itertools.count()


def letter_id(now: datetime) -> str:
    """A new letter id that sorts by *now*, then by this process's order, then at random.

    Claims of one due time so go first kept, first sent (letters of other processes in the
    same microsecond in any order).
    """
    micros = int(now.timestamp() * 1_000_000)
    return f"{micros:014x}{next(_SEQUENCE) % 0x1000000:06x}{uuid.uuid4().hex[:12]}"


async def drain(
    guard: Guard,
    *,
    limit: int = 100,
    lease: timedelta = timedelta(minutes=5),
    concurrency: int = 8,
    max_passes: int = 100,
) -> OutboxRun:
    """Send what is due now with *guard*, pass after pass, until a pass leaves nothing due."""
    total = OutboxRun()
    for _ in range(max_passes):
        run = await guard.deliver_outbox(limit=limit, lease=lease, concurrency=concurrency)
        total.add(run)
        if run.claimed < limit or run.claimed == run.waiting + run.lost:
            break
    return total


def unsent_of(
    results: Mapping[str, RecipientResult],
    valid: Mapping[str, Address],
    *,
    message_id: str | None,
    body: tuple[bytes, bool],
    domain: str,
) -> Unsent | None:
    """The recipients of a send to keep, with the message as it goes on the wire."""
    held = {valid[k].wire: rr for k, rr in results.items() if rr.status in HOLDABLE and k in valid}
    if not held:
        return None
    data, smtputf8 = body
    if message_id is None:
        message_id = email.utils.make_msgid(domain=domain)
        data = f"Message-ID: {message_id}\r\n".encode("ascii") + data
    return Unsent(message_id, data, smtputf8, held)


def kept_ids(letter: str, wires: Sequence[str]) -> list[str]:
    """The entry ids of *wires* in *letter*."""
    return [entry_id(letter, w) for w in wires]
