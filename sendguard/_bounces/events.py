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

from sendguard._bounces.classify import DEFAULT, Action, Classification
from sendguard._bounces.verdict import DIAGNOSTIC_LIMIT, event_classification

__all__ = ["DeliveryEvent", "EventType", "event_from"]

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
    """In :func:`sendguard.classify`'s vocabulary (``feedback`` for a complaint).  As parsed,
    with the default rules (for display); :meth:`sendguard.Guard.ingest_events` returns the
    event with the reason its own rules give."""
    hard: bool
    """A permanent fault of the address itself: suppress it (judged again at ingest, as
    ``reason``)."""
    timestamp: dt.datetime
    sender: str = ""
    """The sender (From or envelope) of the message the event is about, when known."""
    detail: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    classification: Classification | None = field(default=None, compare=False, repr=False)
    nonce: str = ""
    """A single-use value of the request that carried the event (``mailgun-token:<token>``):
    a second event bearing it changes nothing.  Empty when the provider signs the event itself."""
    permanent: bool | None = None
    """The provider's own word on permanence (a "Permanent" bounce type); None: the text's."""
    verdict: str | None = None
    """The provider's own verdict (``"suppressed"``: it dropped the recipient as already dead),
    taken instead of classifying ``detail``."""
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
    # The guard judges the raw facts again with its own rules at ingest (_bounces.verdict);
    # this is the default rules' reading, for code that shows an event before ingesting it.
    diagnostic = diagnostic[:DIAGNOSTIC_LIMIT]
    found = event_classification(
        type, diagnostic, permanent=permanent, verdict=reason, rules=DEFAULT, provider=provider
    )
    hard = type == "bounced" and found.permanent and found.action is Action.SUPPRESS
    shown = (
        found.reason
        if type in ("bounced", "deferred", "complained", "delivered")
        else ("undefined")
    )
    return DeliveryEvent(
        provider=provider,
        event_id=event_id,
        type=type,
        recipient=recipient,
        reason=shown,
        hard=hard,
        timestamp=timestamp,
        sender=sender,
        detail=diagnostic,
        raw=raw or {},
        classification=found if type in ("bounced", "deferred") and reason is None else None,
        nonce=nonce,
        permanent=permanent,
        verdict=reason,
    )
