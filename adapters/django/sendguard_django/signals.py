"""django-anymail's signals feed and use the suppression list.

A tracking event is translated into a :class:`sendguard.DeliveryEvent` (provider
``anymail:<esp>``) and recorded by :meth:`sendguard.Guard.ingest_events`, which decides what it
means as it does for every other observation: suppress, count a soft bounce, reset, pause the
sender, count for the breaker, or nothing; once per event id.  pre_send drops the suppressed
recipients of a message before the ESP is called.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Literal

from django.dispatch import Signal

from sendguard import (
    DeliveryEvent,
    InvalidAddressError,
    OutboxEvent,
    SendResult,
    envelope_address,
    event_from,
    parse_mailbox,
)
from sendguard_django._config import get_guard

__all__ = [
    "connect",
    "delivery_event",
    "mail_delivered",
    "mail_expired",
    "mail_failed",
    "mail_kept",
    "on_pre_send",
    "on_tracking",
    "send_kept_signals",
    "send_later_signals",
    "send_outbox_signal",
]

mail_kept = Signal()
"""A recipient was held back (throttled, paused, deferred) and kept in the outbox: ``event``
(a :class:`sendguard.OutboxEvent`)."""
mail_delivered = Signal()
"""A kept recipient was delivered by a worker: ``event``."""
mail_failed = Signal()
"""A kept recipient was refused for good when a worker sent it (rejected, suppressed)."""
mail_expired = Signal()
"""A kept recipient was given up after ``MAX_AGE`` (counted as a soft bounce): ``event``."""

_OUTBOX_SIGNALS = {
    "kept": mail_kept,
    "delivered": mail_delivered,
    "failed": mail_failed,
    "expired": mail_expired,
}


def send_outbox_signal(event: OutboxEvent) -> None:
    """The guard's ``on_outbox`` hook: send the signal of *event*'s kind."""
    signal = _OUTBOX_SIGNALS.get(event.kind)
    if signal is not None:
        signal.send(sender=OutboxEvent, event=event)


def send_later_signals(event: OutboxEvent) -> None:
    """The hook of the request's guard: what workers tell (``mail_kept`` is sent apart).

    The SyncGuard runs its hook on its own loop's thread; ``mail_kept`` is sent by the
    backend on the thread that sent the mail instead (:func:`send_kept_signals`), so that a
    receiver's database work joins the request's connection and transaction.
    """
    if event.kind != "kept":
        send_outbox_signal(event)


def send_kept_signals(result: SendResult) -> None:
    """``mail_kept`` for each recipient of *result* kept for later, on the caller's thread."""
    for rr in result.recipients.values():
        if rr.kept:
            event = OutboxEvent(
                "kept", rr, result.outbox_id or "", result.message_id or "", result.stream
            )
            mail_kept.send(sender=OutboxEvent, event=event)


_Type = Literal["bounced", "deferred", "complained", "delivered", "unsubscribed", "other"]
# Anymail's event types in sendguard's vocabulary; the rest (queued, sent, opened, clicked,
# failed: the ESP's own trouble, not the recipient's) change nothing.
_TYPES: dict[str, _Type] = {
    "bounced": "bounced",
    "deferred": "deferred",
    "complained": "complained",
    "delivered": "delivered",
    "unsubscribed": "unsubscribed",
}
# Anymail's reject reasons that say the ESP refused the address as already dead.
_DEAD = frozenset({"bounced", "invalid"})
# Where each ESP's raw event (anymail's ``esp_event``) names the message's sender, for the
# ESPs whose webhooks carry it (SendGrid's, Mailjet's and Brevo's do not).  With a sender the
# guard can pause it toward a domain that refused it and count its bounces for the breaker.
_SENDER_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "mailgun": (("event-data", "envelope", "sender"), ("envelope", "sender")),
    "postmark": (("From",),),
    "amazonses": (("mail", "source"),),
    # SparkPost's friendly_from is the From header; msg_from its own bounce (envelope) address.
    "sparkpost": (
        ("msys", "message_event", "friendly_from"),
        ("msys", "message_event", "msg_from"),
        ("friendly_from",),
    ),
    "mandrill": (("msg", "sender"),),
    "resend": (("data", "from"),),
    "postal": (("payload", "message", "from"),),
}


def connect() -> bool:
    """Connect the receivers; False when django-anymail is not installed."""
    try:
        from anymail.signals import pre_send, tracking  # noqa: PLC0415 (optional)
    except ImportError:
        return False
    tracking.connect(on_tracking, dispatch_uid="sendguard-tracking")
    pre_send.connect(on_pre_send, dispatch_uid="sendguard-pre-send")
    return True


def on_tracking(sender: object, event: Any, esp_name: str, **_: Any) -> None:  # noqa: ANN401
    """Record one anymail tracking event through the guard (idempotent by its event id)."""
    found = delivery_event(event, esp_name)
    if found is not None:
        get_guard().ingest_events([found])


def delivery_event(event: Any, esp_name: str) -> DeliveryEvent | None:  # noqa: ANN401
    """Anymail's tracking *event* as a DeliveryEvent; None when it names no recipient."""
    recipient = str(getattr(event, "recipient", None) or "")
    if not recipient:
        return None
    kind = str(getattr(event, "event_type", "") or "")
    text = str(getattr(event, "mta_response", None) or getattr(event, "description", None) or "")
    reject = str(getattr(event, "reject_reason", None) or "")
    given = getattr(event, "timestamp", None)
    when = given if isinstance(given, dt.datetime) else dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    provider = f"anymail:{esp_name}".lower()
    verdict: str | None = None
    permanent: bool | None = None
    if kind == "rejected" and reject in _DEAD:
        # The ESP would not send: the address is on its own list of dead ones.
        kind, verdict, permanent = "bounced", "suppressed", True
    elif kind == "rejected" and reject == "unsubscribed":
        kind = "unsubscribed"
    elif kind == "bounced":
        permanent = True  # anymail's "bounced" is final; a temporary failure is "deferred"
    return event_from(
        provider=provider,
        event_id=str(getattr(event, "event_id", None) or "") or _derived_id(event, given),
        type=_TYPES.get(kind, "other"),
        recipient=recipient,
        timestamp=when,
        diagnostic=text,
        permanent=permanent,
        reason=verdict,
        sender=_sender(getattr(event, "esp_event", None), esp_name),
        raw={"esp_event": getattr(event, "esp_event", None)},
    )


def _sender(esp_event: object, esp_name: str) -> str:
    """The sender's address in the ESP's raw event, where that ESP puts it; else ``""``."""
    for path in _SENDER_PATHS.get(esp_name.lower().replace(" ", "").replace("_", ""), ()):
        value = esp_event
        for name in path:
            value = value.get(name) if isinstance(value, dict) else None
        if isinstance(value, str) and len(value) <= 998:
            try:
                return parse_mailbox(value)[1]
            except InvalidAddressError:
                continue  # not one mailbox: nobody to pause
    return ""


def _derived_id(event: Any, when: object) -> str:  # noqa: ANN401
    """A stable id for an event its ESP gave none: the same event re-sent counts once."""
    fields = (
        "event_type",
        "recipient",
        "message_id",
        "reject_reason",
        "mta_response",
        "description",
    )
    parts = [str(getattr(event, name, None) or "") for name in fields]
    # The time the ESP gave, never the time of arrival: a re-sent event must hash the same.
    stamp = when.isoformat() if isinstance(when, dt.datetime) else ""
    digest = hashlib.sha256("\x1f".join([*parts, stamp]).encode()).hexdigest()
    return f"derived:{digest[:32]}"


def on_pre_send(sender: object, message: Any, esp_name: str, **_: Any) -> None:  # noqa: ANN401
    """Drop suppressed recipients; cancel the send when none is left."""
    from anymail.exceptions import AnymailCancelSend  # noqa: PLC0415 (optional)

    guard = get_guard()
    for field in ("to", "cc", "bcc"):
        kept = [a for a in getattr(message, field) if not guard.is_suppressed(_bare(a))]
        setattr(message, field, kept)
    if not (message.to or message.cc or message.bcc):
        raise AnymailCancelSend("every recipient is on the suppression list")


def _bare(address: str) -> str:
    return envelope_address(address)
