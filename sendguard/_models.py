"""The values sendguard hands back: per-recipient results, suppressions, adapter replies."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from enum import StrEnum
from typing import Any

__all__ = [
    "DeliveryStatus",
    "Envelope",
    "RecipientResult",
    "Reply",
    "SendResult",
    "Stage",
    "Suppression",
    "parse_enhanced_code",
]

_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)")


def parse_enhanced_code(text: str) -> str | None:
    """The RFC 3463 enhanced status code at the start of an SMTP reply text, if any."""
    found = _ENHANCED.match(text)
    return found.group(1) if found else None


class DeliveryStatus(StrEnum):
    """What happened to one recipient of one send."""

    ACCEPTED = "accepted"
    """The receiving server took responsibility for the message (250 after DATA)."""
    SUPPRESSED = "suppressed"
    """On the suppression list; not sent."""
    INVALID = "invalid"
    """Not a valid address; not sent."""
    THROTTLED = "throttled"
    """Over today's warmup quota for the sender domain; not sent, try again at ``retry_at``."""
    PAUSED = "paused"
    """The sender is paused toward this recipient's domain (it refused the sender: blocklist,
    reputation, authentication, rate limit); not sent, or refused temporarily; try again at
    ``retry_at``.  The address itself is not suspected."""
    REJECTED = "rejected"
    """Permanently refused by the server (5xx)."""
    DEFERRED = "deferred"
    """Still failing temporarily after the retries, or delivery is uncertain; see ``detail``."""
    EXPIRED = "expired"
    """Kept in the outbox longer than the guard's ``max_age`` without being delivered: given
    up (counted as a soft bounce)."""


class Stage(StrEnum):
    """Where in the SMTP transaction (or provider call) a reply was given."""

    CONNECT = "connect"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    """The DATA command or the message transfer, before the final dot was sent."""
    DATA_END = "data_end"
    """The reply to the final dot: the message was sent in full."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A server's answer concerning one recipient, as an adapter reports it.

    ``code`` is ``None`` when there was no reply at all (connection refused or dropped,
    timeout); ``text`` then says what happened.
    """

    code: int | None
    text: str
    stage: Stage
    enhanced_code: str | None = None
    reason: str | None = None
    """A provider's own verdict, in :func:`sendguard.classify`'s vocabulary (an ESP saying
    "this recipient is on our suppression list" is ``"suppressed"``); it is taken instead of
    classifying ``text``.  HTTP adapters report SMTP-style codes: 2xx accepted, 4xx
    temporary, 5xx permanent."""
    retry_after: float | None = None
    """Seconds the provider asked to wait before the next try (HTTP Retry-After)."""

    @classmethod
    def from_smtp(cls, code: int, text: str, stage: Stage) -> Reply:
        """A reply with its enhanced status code parsed from *text*."""
        return cls(code, text, stage, parse_enhanced_code(text))


@dataclass(frozen=True, slots=True)
class Envelope:
    """One delivery an adapter is asked to make: ``data`` is the message exactly as sent."""

    sender: str
    recipients: tuple[str, ...]
    message: Message
    data: bytes
    smtputf8: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    """The headers the guard added in front of ``message`` in ``data`` (``Message-ID`` when
    the message had none, ``X-Sendguard-Token`` when signing): an adapter that builds its own
    request from ``message`` instead of sending ``data`` adds these."""
    original: object = None
    """The framework's own message object given to :meth:`sendguard.Guard.send` as
    ``original`` (a Django ``EmailMessage``), for an adapter that hands mail to another
    framework's backend; None otherwise."""


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """The outcome of one send for one recipient."""

    address: str
    status: DeliveryStatus
    reply_code: int | None = None
    enhanced_code: str | None = None
    detail: str = ""
    attempts: int = 0
    retry_at: datetime | None = None
    suppressed: bool = False
    """True when this send put the address on the suppression list."""
    reason: str = ""
    """The classified reason of a failure (Sisimai's vocabulary, e.g. ``userunknown``)."""
    uncertain: bool = False
    """The provider may have the message (no reply to the final dot, a delivery cut off):
    never sent again unless a person asks."""
    kept: bool = False
    """Not sent now (throttled, paused, deferred, or uncertain) and kept in the outbox: a
    worker sends it at ``retry_at`` (an uncertain delivery waits for a person instead)."""


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one send: one :class:`RecipientResult` per distinct recipient."""

    sender: str
    message_id: str | None
    recipients: Mapping[str, RecipientResult]
    recorded: bool = True
    """False when the store could not record what this send learned (a suppression, quota
    to give back) in time: the guard keeps it in its journal and records it later."""
    outbox_id: str | None = None
    """The id under which the recipients not sent now are kept in the outbox, if any were."""
    stream: str = ""
    """The stream the send belonged to."""

    def by_status(self, status: DeliveryStatus) -> list[str]:
        """Addresses whose outcome was *status*, in envelope order."""
        return [a for a, r in self.recipients.items() if r.status is status]

    @property
    def accepted(self) -> list[str]:
        """Addresses the server accepted."""
        return self.by_status(DeliveryStatus.ACCEPTED)

    @property
    def kept(self) -> list[str]:
        """Addresses kept in the outbox, to be sent later."""
        return [a for a, r in self.recipients.items() if r.kept]


@dataclass(frozen=True, slots=True)
class Suppression:
    """An entry of the suppression list: why this address is never sent to again."""

    address: str
    reason: str
    reply_code: int | None = None
    enhanced_code: str | None = None
    detail: str = ""
    source: str = "manual"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> str:
        """Serialize for a store (the address is the store's key and not repeated)."""
        return json.dumps(
            {
                "reason": self.reason,
                "reply_code": self.reply_code,
                "enhanced_code": self.enhanced_code,
                "detail": self.detail,
                "source": self.source,
                "created_at": self.created_at.isoformat(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, address: str, data: str | bytes) -> Suppression:
        """The inverse of :meth:`to_json`."""
        raw: dict[str, Any] = json.loads(data)
        return cls(
            address=address,
            reason=str(raw.get("reason", "")),
            reply_code=raw.get("reply_code"),
            enhanced_code=raw.get("enhanced_code"),
            detail=str(raw.get("detail", "")),
            source=str(raw.get("source", "")),
            created_at=datetime.fromisoformat(raw["created_at"]),
        )
