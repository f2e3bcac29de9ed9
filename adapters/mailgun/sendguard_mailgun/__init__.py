"""sendguard for Mailgun: the message as sent, in one API call; webhooks verified and read.

:class:`MailgunAdapter` posts the exact MIME message to ``/v3/<domain>/messages.mime`` with the
envelope recipients in ``to``; Mailgun queues it (200) or refuses the request: 400 fails the
message, 401/403 is an authentication failure of the sender, 429 and 5xx, timeouts and
connection errors are temporary.  Mailgun reports per-recipient outcomes later, by webhook.

:class:`WebhookVerifier` checks Mailgun's signature (HMAC-SHA256 of ``timestamp + token`` with
the webhook signing key), refuses timestamps outside a replay window and tokens it has seen,
and reads the event: ``failed`` (permanent or temporary), ``complained``, ``delivered``,
``unsubscribed``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from sendguard import (
    Adapter,
    DeliveryEvent,
    Envelope,
    Reply,
    Stage,
    WebhookAuthError,
    event_from,
)
from sendguard.http import everyone, temporary

__all__ = ["MailgunAdapter", "WebhookVerifier", "parse_webhook"]
__version__ = "0.1.0"


class MailgunAdapter(Adapter):
    """Delivers through Mailgun's HTTP API; ``base_url`` picks the region (EU, US)."""

    def __init__(
        self,
        *,
        api_key: str,
        domain: str,
        base_url: str = "https://api.mailgun.net",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
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
    Tokens already seen within that window are refused as replays (kept in this process:
    several processes each keep their own, and the guard drops re-sent events by id anyway).
    """

    def __init__(
        self,
        *,
        signing_keys: str | list[str],
        max_age: dt.timedelta = dt.timedelta(minutes=15),
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        remember: int = 100_000,
    ) -> None:
        keys = [signing_keys] if isinstance(signing_keys, str) else list(signing_keys)
        if not keys or not all(keys):
            raise ValueError("WebhookVerifier needs at least one signing key")
        self._keys = [k.encode() for k in keys]
        self.max_age = max_age
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()

    def parse(self, headers: Mapping[str, str], body: bytes | str) -> list[DeliveryEvent]:
        """Verify one webhook request; its events.  Raises :class:`WebhookAuthError`."""
        del headers  # Mailgun signs the body's "signature" object, not a header
        try:
            payload = json.loads(body)
            signature = payload["signature"]
            timestamp, token, given = (
                str(signature["timestamp"]),
                str(signature["token"]),
                str(signature["signature"]),
            )
            data = payload["event-data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookAuthError("not a Mailgun webhook body") from exc
        self._verify(timestamp, token, given)
        try:
            return _events(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise WebhookAuthError("a malformed Mailgun event") from exc

    def _verify(self, timestamp: str, token: str, given: str) -> None:
        matched = False
        for key in self._keys:
            expected = hmac.new(key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
            matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise WebhookAuthError("wrong Mailgun webhook signature")
        try:
            when = float(timestamp)
        except ValueError as exc:
            raise WebhookAuthError("unreadable timestamp") from exc
        now = self._clock().timestamp()
        if abs(now - when) > self.max_age.total_seconds():
            raise WebhookAuthError("stale Mailgun webhook: outside the replay window")
        with self._lock:
            horizon = now - self.max_age.total_seconds()
            while self._seen and next(iter(self._seen.values())) < horizon:
                self._seen.popitem(last=False)
            if token in self._seen:
                raise WebhookAuthError("a Mailgun webhook token seen before: a replay")
            self._seen[token] = when
            if len(self._seen) > self._remember:
                self._seen.popitem(last=False)


def _events(data: dict[str, Any]) -> list[DeliveryEvent]:
    kind = str(data["event"])
    recipient = str(data["recipient"])
    when = dt.datetime.fromtimestamp(float(data["timestamp"]), dt.UTC)
    headers = (
        data.get("message", {}).get("headers", {}) if isinstance(data.get("message"), dict) else {}
    )
    sender = str(headers.get("from", ""))
    common: dict[str, Any] = {
        "provider": "mailgun",
        "event_id": str(data["id"]),
        "recipient": recipient,
        "timestamp": when,
        "sender": sender,
        "raw": data,
    }
    if kind == "failed":
        status = data.get("delivery-status", {}) or {}
        diagnostic = " ".join(
            str(x)
            for x in (
                status.get("code", ""),
                status.get("message") or status.get("description", ""),
            )
            if x
        )
        permanent = data.get("severity") == "permanent"
        # Mailgun dropped it because the address is on its own bounce or complaint list.
        listed = str(data.get("reason", "")).startswith("suppress-")
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
    return []  # accepted, opened, clicked: nothing for the guard


_verifiers: dict[tuple[str, ...], WebhookVerifier] = {}
_verifiers_lock = threading.Lock()


def parse_webhook(
    headers: Mapping[str, str], body: bytes | str, *, signing_keys: str | list[str]
) -> list[DeliveryEvent]:
    """Verify and read one Mailgun webhook request; raises WebhookAuthError.

    One :class:`WebhookVerifier` per key set is kept for the process, so its replay window and
    seen tokens persist between calls.
    """
    keys = (signing_keys,) if isinstance(signing_keys, str) else tuple(signing_keys)
    with _verifiers_lock:
        verifier = _verifiers.get(keys)
        if verifier is None:
            verifier = _verifiers[keys] = WebhookVerifier(signing_keys=list(keys))
    return verifier.parse(headers, body)
