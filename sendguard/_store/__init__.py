"""The store protocol: where suppressions, warmup counters, soft bounces and pauses live."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

from sendguard._models import Suppression
from sendguard._options import check_integer, check_timedelta
from sendguard._pacing.breaker import Breaker, Volume
from sendguard._store.outbox import Backlog, Claim, Finish, Held, Kept, Letter

__all__ = [
    "Admission",
    "Admit",
    "Outcome",
    "Pause",
    "Quota",
    "Ramp",
    "Reservation",
    "Settled",
    "Shape",
    "SoftBouncePolicy",
    "Store",
    "abandoned",
]


@dataclass(frozen=True, slots=True)
class Quota:
    """Today's warmup allowance for one sender domain."""

    sender_domain: str
    day: dt.date
    cap: int


@dataclass(frozen=True, slots=True)
class Pause:
    """A sender domain held back from one recipient domain until ``until``."""

    sender_domain: str
    recipient_domain: str
    until: dt.datetime
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SoftBouncePolicy:
    """When soft bounces add up to a suppression: ``threshold`` of them over ``span`` or more.

    Soft bounces (a full mailbox, a suspended account, an expired delivery) say little one at
    a time; five of them spread over at least a week say the address is as good as dead.  A
    delivery to the address resets its count.
    """

    threshold: int = 5
    span: dt.timedelta = dt.timedelta(days=7)

    def __post_init__(self) -> None:
        check_integer("SoftBouncePolicy", "threshold", self.threshold, minimum=1)
        check_timedelta("SoftBouncePolicy", "span", self.span)


@dataclass(frozen=True, slots=True)
class Ramp:
    """A warmup ramp counted in sending days: the store knows which day the sender is on."""

    caps: tuple[int, ...]
    today: int
    """Today, in days since 1970-01-01 (UTC)."""
    idle_restart: int = 30


@dataclass(frozen=True, slots=True)
class Shape:
    """A rate (GCRA) a reservation is held to.

    One send per ``interval`` seconds on average, bursts of ``burst``; ``adaptive`` rates slow
    down when the provider asks.
    """

    field: str
    interval: float
    burst: int = 1
    adaptive: bool = False


@dataclass(frozen=True, slots=True)
class Reservation:
    """One message's admission check: address ``keys`` (``local@domain``) in envelope order."""

    keys: Sequence[str]
    now: dt.datetime
    quota: Quota | None = None
    sender_domain: str = ""
    """When given, pauses of this sender toward each key's domain are checked."""
    bucket: int | None = None
    """When given, the recipients admitted are counted as sends of ``sender_domain`` in this
    breaker bucket."""
    bucket_seconds: int = 0
    """The width of a breaker bucket (a store on the server's clock finds the bucket itself)."""
    shapes: Sequence[Shape] = ()
    shape_of: Sequence[int] = ()
    """Per key, the 1-based index of its rate in ``shapes`` (0: none); empty: none at all."""
    spread: int = 0
    """The 1-based index in ``shapes`` of a rate every key is held to (the day's cap spread)."""
    recover: dt.timedelta = dt.timedelta(minutes=10)
    """How long an adaptive rate waits after a slow-down before it doubles back."""
    ramp: Ramp | None = None
    """With a ``quota``: its cap is the ramp's cap of the sender's sending day (which a day
    with an admitted recipient advances) instead of ``quota.cap``."""
    abandoned: Callable[[Sequence[Admission]], None] | None = field(
        default=None, compare=False, repr=False
    )
    """Called with the admissions of a reservation made after its caller stopped waiting
    (cancelled, or timed out), so that what it took can be given back."""


class Admit(StrEnum):
    """The store's verdict for one recipient before delivery."""

    CLEAR = "clear"
    SUPPRESSED = "suppressed"
    PAUSED = "paused"
    THROTTLED = "throttled"


class Admission(NamedTuple):
    """One recipient's verdict, with what explains it."""

    verdict: Admit
    suppression: Suppression | None = None
    pause: Pause | None = None
    soft: bool = False
    """The address has soft bounces on record (a delivery should reset them)."""
    retry_at: dt.datetime | None = None
    """For a THROTTLED verdict of a rate: when the rate lets it through."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery changes in the store, recorded in one step."""

    now: dt.datetime
    quota: Quota | None = None
    give_back: int = 0
    suppressions: Sequence[Suppression] = ()
    soft_failures: Sequence[Suppression] = ()
    """One entry per soft bounce, written (as reason ``softbounce``) if it tips the count."""
    soft_resets: Sequence[str] = ()
    pauses: Sequence[Pause] = ()
    soft_policy: SoftBouncePolicy = field(default_factory=SoftBouncePolicy)
    sender_domain: str = ""
    breaker: Breaker | None = None
    bounces: int = 0
    """Bounces of ``sender_domain`` to count for the breaker."""
    complaints: int = 0
    slowdowns: Sequence[str] = ()
    """Shape fields whose provider asked to slow down: their rate is halved."""
    event_id: str = ""
    """A provider's event id: if it was recorded before, this outcome changes nothing."""
    nonce: str = ""
    """A single-use value of the request (a Mailgun token): if it was recorded before, this
    outcome changes nothing either, whatever its ``event_id``.  Whether the outcome is new or
    not, every one of its ids not yet recorded is recorded, in the same atomic step."""
    remember: dt.timedelta = dt.timedelta(days=30)
    """How long an event id or nonce is remembered."""
    slow_max: int = 64
    recover: dt.timedelta = dt.timedelta(minutes=10)

    @property
    def empty(self) -> bool:
        """Nothing to record."""
        return not (
            (self.quota is not None and self.give_back > 0)
            or self.suppressions
            or self.soft_failures
            or self.soft_resets
            or self.pauses
            or (self.breaker is not None and (self.bounces or self.complaints))
            or self.slowdowns
            or self.event_id
            or self.nonce
        )

    @property
    def once(self) -> tuple[str, ...]:
        """The ids (event id, nonce) any one of which, recorded before, makes this a duplicate."""
        return tuple(x for x in (self.event_id, self.nonce) if x)

    def trip_pause(self) -> Pause:
        """The sender-wide pause a tripped breaker writes."""
        if self.breaker is None:
            raise ValueError("no breaker")
        return Pause(
            self.sender_domain,
            "*",
            self.breaker.pause_until(self.now),
            "breaker",
            "bounce or complaint rate over the breaker's pause threshold",
        )


class Settled(NamedTuple):
    """What :meth:`Store.settle` did.

    New suppressions, soft bounces that escalated, and the sender's volume in the breaker's
    window, with whether this call tripped the breaker.
    """

    added: list[bool]
    escalated: list[str]
    volume: Volume | None = None
    tripped: bool = False
    duplicate: bool = False
    """The outcome's event id or nonce was recorded before: nothing else was changed."""


class Store(abc.ABC):
    """Shared state of every guard: suppressions, warmup counters, soft bounces, pauses.

    The two hot-path operations are single atomic steps, so that a store shared by many
    processes never lets two of them spend the same quota or miss a suppression:
    :meth:`reserve` before a delivery and :meth:`settle` after it.
    """

    journal_directory: Path | None = None
    """Where a guard keeps the outcomes this store could not record, until it can (see
    ``Guard(journal=)``); ``None`` keeps them in memory only."""

    def on_new_loop(self) -> None:  # noqa: B027 (optional hook, a no-op by default)
        """Forget connections made on an event loop that has ended.

        The guard calls it before it first works on another loop (a script or a Celery task
        that calls ``asyncio.run`` once per job with the same guard); the next operation
        opens new connections.
        """

    @abc.abstractmethod
    async def reserve(self, request: Reservation) -> list[Admission]:
        """Check each key against suppressions and pauses, and take quota for the rest.

        Quota is taken, in order, for each key neither suppressed nor paused while some is
        left; the rest are throttled.  Without a quota every admissible key is clear.  A
        store whose reservation can still be made after its caller was cancelled (a batch in
        flight) hands its admissions to ``request.abandoned``.
        """

    @abc.abstractmethod
    async def settle(self, outcome: Outcome) -> Settled:
        """Record a delivery's outcome atomically.

        Gives back unused quota, adds suppressions (an address already listed keeps its first
        entry), counts soft bounces and suppresses those that reach the policy, resets the
        count of delivered addresses, and stores pauses.
        """

    @abc.abstractmethod
    async def add(self, suppressions: Sequence[Suppression], *, replace: bool = False) -> int:
        """Add entries; *replace* overwrites existing ones.  Returns how many were written."""

    @abc.abstractmethod
    async def remove(self, key: str) -> bool:
        """Take *key* off the suppression list; False if it was not on it."""

    @abc.abstractmethod
    async def get(self, key: str) -> Suppression | None:
        """The suppression entry of *key*, if any."""

    @abc.abstractmethod
    def scan(self) -> AsyncIterator[Suppression]:
        """Every suppression entry, in no particular order."""

    @abc.abstractmethod
    async def quota_used(self, quota: Quota) -> int:
        """How much of *quota* is spent so far.

        Exact for ``quota.day`` and the two days before it (a reservation or a give-back made
        just after midnight still finds yesterday's counter); a sender domain's counters of
        older days may be gone (0): MemoryStore and SQLiteStore drop them when the domain's
        counter of a later day starts, Redis lets them expire three days after their last
        increment.
        """

    @abc.abstractmethod
    async def soft_bounces(self, key: str) -> int:
        """How many soft bounces *key* has on record."""

    @abc.abstractmethod
    async def pauses(self, sender_domain: str, now: dt.datetime) -> list[Pause]:
        """The pauses of *sender_domain* still in force at *now*."""

    @abc.abstractmethod
    async def volume(self, sender_domain: str, bucket: int) -> Volume:
        """Sends, bounces and complaints of *sender_domain* in the window ending at *bucket*."""

    @abc.abstractmethod
    async def ramp_day(self, sender_domain: str, ramp: Ramp) -> int:
        """The sending day *sender_domain* is on ``ramp.today`` (1 before its first send)."""

    @abc.abstractmethod
    async def resume(self, sender_domain: str, now: dt.datetime | None = None) -> int:
        """Lift every pause of *sender_domain*; how many were still in force.

        Every stored pause of the sender is deleted, but only those in force at *now* (their
        ``until`` later than it) are counted: a pause that has run out (a zero-length one
        included) is not lifted by this call, whether or not the store had pruned it yet.
        Without *now*, the Redis server's clock for a ``RedisStore`` on the server clock, else
        this host's (the guard passes its own clock).
        """

    # -- the outbox: mail kept until it may go (see sendguard._store.outbox) ------------------

    @abc.abstractmethod
    async def keep(self, letter: Letter, entries: Sequence[Kept]) -> int:
        """Store *letter* (once: a letter already kept stays as it is) and *entries*; how many.

        An entry already kept under the same id is left alone.
        """

    @abc.abstractmethod
    async def claim(
        self,
        now: dt.datetime,
        *,
        token: str,
        lease: dt.timedelta,
        limit: int,
        streams: Sequence[str],
    ) -> Claim:
        """Claim up to *limit* due entries for *token*, until ``now + lease``.

        First every lease that ran out by *now* is ended: a claimed entry goes back to waiting
        (its token cleared), one being sent becomes uncertain (its token kept, so that the
        worker, if it comes back, may still finish it).  Then the waiting entries of *streams*
        whose ``next_at`` is not after *now* are claimed, stream by stream in the order given,
        each stream's by ``next_at`` then id.  The claim holds the letters of its entries.
        """

    @abc.abstractmethod
    async def start(self, token: str, ids: Sequence[str], now: dt.datetime) -> list[str]:
        """Mark the entries of *ids* that *token* holds, lease not run out, as being sent; those.

        A worker hands to the provider only what this returned.
        """

    @abc.abstractmethod
    async def finish(self, token: str, finished: Sequence[Finish]) -> int:
        """Apply each :class:`Finish` to its entry if *token* holds it; how many applied.

        *token* holds an entry it claimed, is sending, or was sending when its lease ran out
        (uncertain).  An entry finished done is deleted, and its letter with its last entry;
        otherwise it takes the finish's state, ``next_at``, attempts and detail, its lease
        ended (the token is kept on an uncertain entry, cleared on a waiting one).
        """

    @abc.abstractmethod
    async def renew(self, token: str, ids: Sequence[str], until: dt.datetime) -> int:
        """Hold the entries of *ids* that *token* has claimed or is sending until *until*.

        A worker whose deliveries take longer than its lease renews it meanwhile, so that no
        other worker ends its lease (and calls what it is sending uncertain).  How many.
        """

    @abc.abstractmethod
    async def release(self, token: str) -> int:
        """Give back the entries *token* claimed but has not started; how many."""

    @abc.abstractmethod
    async def kept(
        self,
        *,
        after: str = "",
        limit: int = 100,
        stream: str | None = None,
        state: Held | None = None,
    ) -> list[Kept]:
        """Kept entries (of *stream*, in *state*, when given) with ids after *after*, by id."""

    @abc.abstractmethod
    async def letter(self, letter_id: str) -> Letter | None:
        """The kept letter *letter_id*, if it is still kept."""

    @abc.abstractmethod
    async def retry(self, ids: Sequence[str], now: dt.datetime) -> int:
        """Make the waiting or uncertain entries of *ids* due at *now*; how many.

        A person's retry starts the entry afresh: kept since *now* (its ``max_age`` counts
        from there).  Entries claimed or being sent are left to their worker.
        """

    @abc.abstractmethod
    async def drop(self, ids: Sequence[str]) -> int:
        """Delete the entries of *ids* that are not being sent; how many (letters go too)."""

    @abc.abstractmethod
    async def backlog(self, now: dt.datetime) -> list[Backlog]:
        """The kept entries counted per sender domain and stream, sorted by both."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook, a no-op by default)
        """Release connections."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def abandoned(request: Reservation, admissions: Sequence[Admission]) -> None:
    """Hand a reservation made after its caller stopped waiting to its ``abandoned`` hook."""
    if request.abandoned is not None:
        request.abandoned(admissions)


def escalates(count: int, first: float, now: float, policy: SoftBouncePolicy) -> bool:
    """Whether *count* soft bounces, the first at *first* (epoch seconds), reach *policy*."""
    return count >= policy.threshold and now - first >= policy.span.total_seconds()


def softbounce_entry(entry: Suppression) -> Suppression:
    """The suppression written when soft bounces escalate, from the bounce that tipped it."""
    return Suppression(
        address=entry.address,
        reason="softbounce",
        reply_code=entry.reply_code,
        enhanced_code=entry.enhanced_code,
        detail=f"soft bounces reached the limit; the last: {entry.detail}",
        source=entry.source,
        created_at=entry.created_at,
    )


def ramp_day(state: tuple[int, int] | None, ramp: Ramp) -> int:
    """The sending day on ``ramp.today`` given the stored ``(day, last send day)``."""
    if state is None:
        return 1
    day, last = state
    if last == ramp.today:
        return day
    if ramp.today - last > ramp.idle_restart:
        return 1  # quiet for too long: the providers have forgotten the sender
    return day + 1
