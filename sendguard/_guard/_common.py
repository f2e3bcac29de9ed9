"""What the guard's stages share: the clock's types, one send's state, and result builders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sendguard._address import Address, normalize_address
from sendguard._bounces.classify import Classification
from sendguard._errors import InvalidAddressError
from sendguard._log import logger
from sendguard._models import DeliveryStatus, RecipientResult, Reply, Suppression
from sendguard._store import Outcome, Pause, Quota, Settled

__all__ = [
    "ACCEPTED",
    "EPOCH",
    "NOTHING",
    "Clock",
    "SendState",
    "Sleep",
    "bounce_key",
    "entry",
    "final_result",
    "log",
    "newly_suppressed",
    "next_midnight",
    "paused_result",
    "utcnow",
]

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
log = logger("guard")
ACCEPTED = DeliveryStatus.ACCEPTED
NOTHING = Outcome(now=datetime(1970, 1, 1, tzinfo=UTC))
"""An outcome that records nothing (``empty``)."""
EPOCH = date(1970, 1, 1)


def utcnow() -> datetime:
    """Now, in UTC: the guard's default clock."""
    return datetime.now(UTC)


def next_midnight(now: datetime) -> datetime:
    """The start of the next UTC day, when a warmup cap is renewed."""
    return datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=UTC)


@dataclass
class SendState:
    """The mutable state of one send, from admission through delivery to its outcome."""

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
    quota: Quota | None = None
    """Today's warmup quota the send reserved from, if any."""
    reserved: int = 0
    """How much of *quota* the send reserved (what it does not spend is given back)."""


def bounce_key(recipient: str) -> str | None:
    """The suppression key of a bounce's recipient, if it is a valid address."""
    if not recipient:
        return None
    try:
        return normalize_address(recipient).key
    except InvalidAddressError:
        return None


def newly_suppressed(outcome: Outcome, settled: Settled) -> list[str]:
    """The keys that settling *outcome* put on the suppression list (not those already on it)."""
    if settled.duplicate:
        return []
    added = zip(outcome.suppressions, settled.added, strict=True)
    return [entry.address for entry, new in added if new] + settled.escalated


def entry(key: str, found: Classification, source: str, now: datetime) -> Suppression:
    """The suppression entry (or soft-bounce record) of *key* for the refusal *found*."""
    return Suppression(
        address=key,
        reason=found.reason,
        reply_code=found.reply_code,
        enhanced_code=found.enhanced_code,
        detail=found.text,
        source=source,
        created_at=now,
    )


def final_result(
    key: str,
    reply: Reply,
    found: Classification | None,
    status: DeliveryStatus,
    attempts: int,
) -> RecipientResult:
    """The result of a recipient whose last *reply* settled it as *status*."""
    return RecipientResult(
        key,
        status,
        reply_code=reply.code,
        enhanced_code=reply.enhanced_code or (found.enhanced_code if found else None),
        detail=reply.text,
        attempts=attempts,
        reason=found.reason if found is not None and status is not ACCEPTED else "",
    )


def paused_result(
    key: str,
    pause: Pause | None,
    attempts: int,
    reply: Reply | None = None,
    found: Classification | None = None,
) -> RecipientResult:
    """The result of a recipient held back because its sender is paused toward its domain."""
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
