"""Webhook endpoints, framework-neutral: verify, record, and only then acknowledge.

Every ESP adapter offers a ``verify(headers, body) -> list[DeliveryEvent]`` (its
``parse_webhook`` with the secrets bound, or a verifier's ``parse``).  :func:`handle` (async,
with a :class:`Guard`) and :func:`handle_sync` (with a :class:`SyncGuard`) run it and answer:

* 200 once the events are stored (a re-sent event is acknowledged and changes nothing, and so
  is a replayed Mailgun token, whatever event data it comes with: its event is a duplicate);
* 400 for a request that passed verification but whose body is not the provider's
  (:class:`WebhookPayloadError`; nothing recorded);
* 401 for a request that fails verification (:class:`WebhookAuthError`; nothing recorded);
* 500 when ``verify`` fails with anything else (nothing recorded);
* 503 when the store cannot record them, or when the request is genuine but could not be acted
  on now (:class:`WebhookUnavailableError`: an SNS subscription SNS did not confirm when asked),
  so the provider sends it again.

A verifier of sendguard raises nothing but those three errors, whatever the request; the answer
to a replay is 200, not 401, because a provider's own retry of a request (after a 503, or a
lost 200) carries the same token, and a 401 would have it retry until it gives up.

Anything else a ``verify`` raises (a verifier of your own, or of another library, with a bug or
a dependency that is down) says nothing about the request: it is our side that failed.  It is
logged with its traceback (``sendguard.webhook_failed``, level error) and answered 500 with a
body that names nothing of it.  A 5xx, not a 400, because providers retry a 5xx and may drop
a 4xx (SNS does): a genuine event then arrives again once the verifier is fixed, instead of
being lost; a forged request gains nothing from it but its own retries.  ``BaseException`` (a
cancelled task, ``KeyboardInterrupt``) goes through.

The Django view (``sendguard_django.webhooks.webhook_view``) and the Flask blueprint
(``sendguard_flask.webhook_blueprint``) are thin wrappers around :func:`handle_sync`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from sendguard._bounces.events import DeliveryEvent
from sendguard._errors import (
    StoreError,
    WebhookAuthError,
    WebhookPayloadError,
    WebhookUnavailableError,
)
from sendguard._log import logger

if TYPE_CHECKING:
    from sendguard._guard import Guard
    from sendguard._sync import SyncGuard

__all__ = ["Answer", "Verify", "handle", "handle_sync"]

Verify = Callable[[Mapping[str, str], bytes], list[DeliveryEvent]]
_log = logger("webhooks")


class Answer(NamedTuple):
    """What to answer the provider: an HTTP status and a short text body."""

    status: int
    body: str


def _verified(
    verify: Verify, headers: Mapping[str, str], body: bytes
) -> list[DeliveryEvent] | Answer:
    try:
        return verify(headers, body)
    except WebhookPayloadError as exc:
        _log.warning("sendguard.webhook_malformed", error=str(exc))
        return Answer(400, "malformed\n")
    except WebhookAuthError as exc:
        _log.warning("sendguard.webhook_refused", error=str(exc))
        return Answer(401, "refused\n")
    except WebhookUnavailableError as exc:
        _log.warning("sendguard.webhook_unavailable", error=str(exc))
        return Answer(503, "not done, send again\n")
    except Exception as exc:  # noqa: BLE001 (a verifier's own failure, answered 500; see above)
        _log.error("sendguard.webhook_failed", exc_info=exc)
        return Answer(500, "failed, send again\n")


def _unstored(exc: StoreError) -> Answer:
    _log.error("sendguard.webhook_unstored", error=str(exc))
    return Answer(503, "not stored, send again\n")


def _stored(done: list[DeliveryEvent]) -> Answer:
    return Answer(200, f"ok {sum(1 for e in done if e.ingested)} of {len(done)}\n")


async def handle(guard: Guard, verify: Verify, headers: Mapping[str, str], body: bytes) -> Answer:
    """Verify and record one webhook request with an async :class:`Guard`."""
    events = _verified(verify, headers, body)
    if isinstance(events, Answer):
        return events
    try:
        return _stored(await guard.ingest_events(events))
    except StoreError as exc:
        return _unstored(exc)


def handle_sync(
    guard: SyncGuard, verify: Verify, headers: Mapping[str, str], body: bytes
) -> Answer:
    """Verify and record one webhook request with a :class:`SyncGuard`."""
    events = _verified(verify, headers, body)
    if isinstance(events, Answer):
        return events
    try:
        return _stored(guard.ingest_events(events))
    except StoreError as exc:
        return _unstored(exc)
