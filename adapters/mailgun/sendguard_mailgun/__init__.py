"""sendguard for Mailgun: the message as sent, in one API call; webhooks verified and read.

:class:`MailgunAdapter` posts the exact MIME message to ``/v3/<domain>/messages.mime`` with the
envelope recipients in ``to``; Mailgun queues it (200) or refuses the request: 400 fails the
message, 401/403 is an authentication failure of the sender, 429 and 5xx, timeouts and
connection errors are temporary.  Mailgun reports per-recipient outcomes later, by webhook.

:class:`WebhookVerifier` checks Mailgun's signature (HMAC-SHA256 of ``timestamp + token`` with
the webhook signing key), refuses timestamps outside a replay window, and reads the event:
``failed`` (permanent or temporary), ``complained``, ``delivered``, ``unsubscribed``.  The token
is single-use through the guard's store (the event's ``nonce``), not through this process.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from sendguard import (
    Adapter,
    ConfigurationError,
    DeliveryEvent,
    Envelope,
    Reply,
    Stage,
    WebhookAuthError,
    WebhookPayloadError,
    event_from,
)
from sendguard.http import (
    UNREADABLE,
    as_object,
    as_text,
    check_host,
    check_instance,
    check_seconds,
    check_text,
    check_url,
    everyone,
    json_body,
    temporary,
)

__all__ = ["MailgunAdapter", "WebhookVerifier", "parse_webhook"]
__version__ = "0.1.0"


def _check_client(owner: str, base_url: object, timeout: object, transport: object) -> None:
    check_url(owner, "base_url", base_url)
    check_seconds(owner, "timeout", timeout)
    if transport is not None:
        check_instance(
            owner, "transport", transport, httpx.AsyncBaseTransport, "an httpx.AsyncBaseTransport"
        )


class MailgunAdapter(Adapter):
    """Delivers through Mailgun's HTTP API; ``base_url`` picks the region (EU, US)."""

    source = "mailgun"

    def __init__(
        self,
        *,
        api_key: str,
        domain: str,
        base_url: str = "https://api.mailgun.net",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        check_text("MailgunAdapter", "api_key", api_key, ascii_only=True, secret=True)
        check_host("MailgunAdapter", "domain", domain)
        _check_client("MailgunAdapter", base_url, timeout, transport)
        self.domain = domain
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, transport=transport, auth=("api", api_key)
        )

    def __repr__(self) -> str:
        return f"MailgunAdapter(domain={self.domain!r}, base_url={str(self._client.base_url)!r})"

    async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
        """See :meth:`sendguard.Adapter.deliver`: one ``POST messages.mime``."""
        try:
            response = await self._client.post(
                f"/v3/{self.domain}/messages.mime",
                data={"to": list(envelope.recipients)},
                files={"message": ("message.eml", envelope.data, "message/rfc822")},
            )
        except httpx.TimeoutException as exc:
            return everyone(envelope, Reply(None, f"Mailgun timed out: {exc}", Stage.DATA_END))
        except httpx.HTTPError as exc:
            return everyone(envelope, Reply(None, f"Mailgun unreachable: {exc}", Stage.CONNECT))
        status = response.status_code
        try:
            text = str(response.json().get("message", response.reason_phrase))
        except (ValueError, AttributeError):
            text = response.text[:200] or response.reason_phrase
        if status == 200:
            return everyone(envelope, Reply(250, f"2.0.0 Mailgun: {text}", Stage.DATA_END))
        if status == 429 or status >= 500:
            wait = response.headers.get("Retry-After")
            reply = temporary(
                f"Mailgun HTTP {status}: {text}", ratelimited=status == 429, retry_after_header=wait
            )
            return everyone(envelope, reply)
        if status in (401, 403):
            return everyone(
                envelope,
                Reply(530, f"Mailgun HTTP {status}: {text}", Stage.MAIL, reason="authfailure"),
            )
        return everyone(
            envelope,
            Reply(554, f"Mailgun HTTP {status}: {text}", Stage.DATA, reason="contenterror"),
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()


class WebhookVerifier:
    """Verifies Mailgun webhook requests and reads them as delivery events.

    ``signing_keys``: the current webhook signing key (and the previous one while it is being
    rotated).  ``max_age``: how old (or how far in the future) a signature's timestamp may be.

    Mailgun signs only ``timestamp + token``, not the event, so a captured request could be
    replayed with other event data inside that window.  The token is therefore single-use:
    each event carries it as its ``nonce`` (``mailgun-token:<token>``), and
    :meth:`sendguard.Guard.ingest_events` records it with the event's id in one atomic step of
    the shared store, so a token seen by any process, before or after a restart, changes
    nothing again (:func:`sendguard.webhooks.handle` acknowledges such a replay with a 200, as
    it does a provider's own retry).  Events the guard does not use (opened, clicked) come back
    as type ``other`` so that their tokens are spent too.
    """

    def __init__(
        self,
        *,
        signing_keys: str | list[str],
        max_age: dt.timedelta = dt.timedelta(minutes=15),
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        keys = [signing_keys] if isinstance(signing_keys, str) else list(signing_keys)
        if not keys:
            raise ConfigurationError("WebhookVerifier needs at least one signing key")
        for key in keys:
            check_text("WebhookVerifier", "signing_keys", key, secret=True)
        check_instance("WebhookVerifier", "max_age", max_age, dt.timedelta, "a datetime.timedelta")
        if max_age <= dt.timedelta(0):
            raise ConfigurationError("WebhookVerifier(max_age=...) must be positive")
        if not callable(clock):
            raise ConfigurationError(
                f"WebhookVerifier(clock=...) must be a function, not {clock!r}"
            )
        self._keys = [k.encode() for k in keys]
        self.max_age = max_age
        self._clock = clock

    def parse(self, headers: Mapping[str, str], body: bytes | str) -> list[DeliveryEvent]:
        """Verify one webhook request; its events.

        Raises :class:`WebhookAuthError` for a request that is not signed by Mailgun now, and
        :class:`WebhookPayloadError` for a signed one whose event data is unreadable.
        """
        del headers  # Mailgun signs the body's "signature" object, not a header
        try:
            payload = as_object(json_body(body, "Mailgun"))
            signature = as_object(payload["signature"])
            timestamp, token, given = (
                as_text(signature[k]) for k in ("timestamp", "token", "signature")
            )
        except UNREADABLE as exc:
            raise WebhookAuthError("not a Mailgun webhook body") from exc
        self._verify(timestamp, token, given)
        try:
            return _events(as_object(payload["event-data"]), f"mailgun-token:{token}")
        except UNREADABLE as exc:
            raise WebhookPayloadError("a malformed Mailgun event") from exc

    def _verify(self, timestamp: str, token: str, given: str) -> None:
        # surrogatepass: a JSON string may hold a lone surrogate, which plain UTF-8 refuses.
        signed = (timestamp + token).encode("utf-8", "surrogatepass")
        offered = given.encode("utf-8", "surrogatepass")
        matched = False
        for key in self._keys:
            expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode()
            matched |= hmac.compare_digest(expected, offered)
        if not matched:
            raise WebhookAuthError("wrong Mailgun webhook signature")
        try:
            when = float(timestamp)
        except ValueError as exc:
            raise WebhookAuthError("unreadable timestamp") from exc
        # Written so that NaN, which compares false with everything, is refused too.
        if not abs(self._clock().timestamp() - when) <= self.max_age.total_seconds():
            raise WebhookAuthError("stale Mailgun webhook: outside the replay window")


def _events(data: dict[str, Any], nonce: str) -> list[DeliveryEvent]:
    kind = as_text(data["event"])
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    sender = headers.get("from") if isinstance(headers, dict) else None
    common: dict[str, Any] = {
        "provider": "mailgun",
        "event_id": as_text(data["id"]),
        "recipient": as_text(data.get("recipient", "")),
        "timestamp": dt.datetime.fromtimestamp(float(as_text(data["timestamp"])), dt.UTC),
        "sender": sender if isinstance(sender, str) else "",
        "raw": data,
        "nonce": nonce,
    }
    if kind == "failed":
        status = as_object(data.get("delivery-status") or {})
        diagnostic = " ".join(
            as_text(x)
            for x in (
                status.get("code") or "",
                status.get("message") or status.get("description") or "",
            )
            if x
        )
        permanent = data.get("severity") == "permanent"
        # Mailgun dropped it because the address is on its own bounce or complaint list.
        reason = data.get("reason")
        listed = isinstance(reason, str) and reason.startswith("suppress-")
        return [
            event_from(
                type="bounced" if permanent else "deferred",
                diagnostic=diagnostic,
                permanent=permanent,
                reason="suppressed" if listed else None,
                **common,
            )
        ]
    if kind == "complained":
        return [event_from(type="complained", **common)]
    if kind == "delivered":
        return [event_from(type="delivered", **common)]
    if kind == "unsubscribed":
        return [event_from(type="unsubscribed", **common)]
    # accepted, opened, clicked: nothing for the guard, but their tokens are spent all the same.
    return [event_from(type="other", **common)]


_verifiers: dict[tuple[str, ...], WebhookVerifier] = {}
_verifiers_lock = threading.Lock()


def parse_webhook(
    headers: Mapping[str, str], body: bytes | str, *, signing_keys: str | list[str]
) -> list[DeliveryEvent]:
    """Verify and read one Mailgun webhook request; raises WebhookAuthError.

    One :class:`WebhookVerifier` per key set is kept for the process.  Replays are refused by
    the store, through each event's ``nonce``: pass the events to
    :meth:`sendguard.Guard.ingest_events` (or use :func:`sendguard.webhooks.handle`).
    """
    keys = (signing_keys,) if isinstance(signing_keys, str) else tuple(signing_keys)
    with _verifiers_lock:
        verifier = _verifiers.get(keys)
        if verifier is None:
            verifier = _verifiers[keys] = WebhookVerifier(signing_keys=list(keys))
    return verifier.parse(headers, body)
