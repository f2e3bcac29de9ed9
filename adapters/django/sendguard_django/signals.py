"""django-anymail's signals feed and use the suppression list.

Tracking events (bounced, complained, rejected) suppress; pre_send drops the suppressed
recipients of a message before the ESP is called.
"""

from __future__ import annotations

from typing import Any

from sendguard import Action, classify, envelope_address
from sendguard_django._config import get_guard

__all__ = ["connect", "on_pre_send", "on_tracking"]

# Anymail's reject reasons that say the address itself is dead.
_DEAD = frozenset({"bounced", "invalid"})


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
    """Suppress what a tracking event says is dead or complained.

    Bounced, complained, rejected as bounced or invalid; sender-side refusals never suppress.
    """
    recipient = getattr(event, "recipient", None)
    if not recipient:
        return
    kind = getattr(event, "event_type", "")
    source = f"anymail:{esp_name}".lower()
    text = str(getattr(event, "mta_response", None) or getattr(event, "description", None) or "")
    guard = get_guard()
    if kind == "complained":
        guard.suppress(recipient, reason="feedback", detail=text, source=source)
    elif kind == "bounced":
        found = classify(text) if text else None
        if found is not None and found.action in (Action.PAUSE_SENDER, Action.RETRY):
            return  # "your IP is blocked" or a temporary failure: the address may be fine
        reason = found.reason if found is not None and found.reason != "onhold" else "bounced"
        guard.suppress(recipient, reason=reason, detail=text, source=source)
    elif kind == "rejected" and getattr(event, "reject_reason", None) in _DEAD:
        guard.suppress(recipient, reason=str(event.reject_reason), detail=text, source=source)


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
