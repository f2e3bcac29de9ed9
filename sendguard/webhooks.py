"""Webhook endpoints, framework-neutral: verify, record, and only then acknowledge.

Every ESP adapter offers a ``verify(headers, body) -> list[DeliveryEvent]`` (its
``parse_webhook`` with the secrets bound, or a verifier's ``parse``).  :func:`handle` (async,
with a :class:`Guard`) and :func:`handle_sync` (with a :class:`SyncGuard`) run it and answer:

* 200 once the events are stored (a re-sent event is acknowledged and changes nothing);
* 401 for a request that fails verification (nothing recorded);
* 503 when the store cannot record them, so the provider sends the events again.

The Django view (``sendguard_django.webhooks.webhook_view``) and the Flask blueprint
(``sendguard_flask.webhook_blueprint``) are thin wrappers around :func:`handle_sync`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple

import structlog

from sendguard._errors import StoreError, WebhookAuthError
from sendguard._events import DeliveryEvent

if TYPE_CHECKING:
    from sendguard._guard import Guard
    from sendguard._sync import SyncGuard

__all__ = ["Answer", "Verify", "handle", "handle_sync"]

Verify = Callable[[Mapping[str, str], bytes], list[DeliveryEvent]]
_log = structlog.get_logger("sendguard")


class Answer(NamedTuple):
    """What to answer the provider: an HTTP status and a short text body."""

    status: int
    body: str


def _refused(exc: WebhookAuthError) -> Answer:
    _log.warning("sendguard.webhook_refused", error=str(exc))
    return Answer(401, "refused\n")


def _unstored(exc: StoreError) -> Answer:
    _log.error("sendguard.webhook_unstored", error=str(exc))
    return Answer(503, "not stored, send again\n")


async def handle(guard: Guard, verify: Verify, headers: Mapping[str, str], body: bytes) -> Answer:
    """Verify and record one webhook request with an async :class:`Guard`."""
    try:
        events = verify(headers, body)
    except WebhookAuthError as exc:
        return _refused(exc)
    try:
        done = await guard.ingest_events(events)
    except StoreError as exc:
        return _unstored(exc)
    return Answer(200, f"ok {sum(1 for e in done if e.ingested)} of {len(done)}\n")


def handle_sync(
    guard: SyncGuard, verify: Verify, headers: Mapping[str, str], body: bytes
) -> Answer:
    """Verify and record one webhook request with a :class:`SyncGuard`."""
    try:
        events = verify(headers, body)
    except WebhookAuthError as exc:
        return _refused(exc)
    try:
        done = guard.ingest_events(events)
    except StoreError as exc:
        return _unstored(exc)
    return Answer(200, f"ok {sum(1 for e in done if e.ingested)} of {len(done)}\n")
