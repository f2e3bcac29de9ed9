"""Delivery events from ESP webhooks, in one shape whatever the provider.

An ESP adapter's ``parse_webhook(headers, body, **secrets)`` verifies the request and turns it
into :class:`DeliveryEvent` objects; :meth:`sendguard.Guard.ingest_events` records them.  Events
are idempotent by ``(provider, event_id)``: providers re-send, sometimes dozens of times.  An
event may also carry a ``nonce``, a single-use value of the signed request (Mailgun signs only a
timestamp and a token, not the event): once recorded, any event bearing it changes nothing, in
every process sharing the store, whatever its event id says.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sendguard._classify import HARD_REASONS, Classification, classify

__all__ = ["DeliveryEvent", "EventType", "event_from"]

_DIAGNOSTIC_LIMIT = 2000

EventType = Literal["bounced", "deferred", "complained", "delivered", "unsubscribed", "other"]
"""``other``: an event the guard has no use for (opened, clicked), kept only so that a signed
request's ``nonce`` is spent."""


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """One thing a provider reports about one recipient."""

    provider: str
    event_id: str
    type: EventType
    recipient: str
    reason: str
    """In :func:`sendguard.classify`'s vocabulary (``feedback`` for a complaint)."""
    hard: bool
    """A permanent fault of the address itself: suppress it."""
    timestamp: dt.datetime
    sender: str = ""
    """The sender (From or envelope) of the message the event is about, when known."""
    detail: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    classification: Classification | None = field(default=None, compare=False, repr=False)
    nonce: str = ""
    """A single-use value of the request that carried the event (``mailgun-token:<token>``):
    a second event bearing it changes nothing.  Empty when the provider signs the event itself."""
    ingested: bool = False
    """Set by :meth:`sendguard.Guard.ingest_events`: first seen now (not a re-send)."""
    suppressed: bool = False
    """Set by :meth:`sendguard.Guard.ingest_events`: this event put the address on the list."""


def event_from(
    *,
    provider: str,
    event_id: str,
    type: EventType,
    recipient: str,
    timestamp: dt.datetime,
    diagnostic: str = "",
    permanent: bool | None = None,
    sender: str = "",
    raw: Mapping[str, Any] | None = None,
    reason: str | None = None,
    nonce: str = "",
) -> DeliveryEvent:
    """A :class:`DeliveryEvent` with its reason classified from *diagnostic*.

    *permanent* is the provider's own word (a "Permanent" bounce type); a bounce whose
    diagnostic names a sender-side refusal is never hard, whatever the provider says.
    *reason* is the provider's own verdict when it has one (``"suppressed"``: it dropped the
    recipient as already dead), taken instead of classifying.
    """
    # A provider's diagnostic is an SMTP reply, a few hundred characters; a longer one is read
    # no further, so an event costs the classifier the same whatever its sender makes it.
    diagnostic = diagnostic[:_DIAGNOSTIC_LIMIT]
    found: Classification | None = None
    if reason is not None and type == "bounced":
        hard = bool(permanent) and reason in HARD_REASONS
    elif type == "complained":
        reason, hard = "feedback", False
    elif type in ("bounced", "deferred"):
        found = classify(diagnostic)
        reason = found.reason
        if reason == "onhold" and type == "bounced" and permanent:
            reason = "userunknown" if not diagnostic else reason
        is_permanent = permanent if permanent is not None else found.permanent
        hard = type == "bounced" and is_permanent and reason in HARD_REASONS
    elif type == "delivered":
        reason, hard = "delivered", False
    else:
        reason, hard = "undefined", False
    return DeliveryEvent(
        provider=provider,
        event_id=event_id,
        type=type,
        recipient=recipient,
        reason=reason,
        hard=hard,
        timestamp=timestamp,
        sender=sender,
        detail=diagnostic,
        raw=raw or {},
        classification=found,
        nonce=nonce,
    )
