"""sendguard for SendGrid: v3 ``mail/send`` per delivery; the signed event webhook.

:class:`SendGridAdapter` sends one ``POST /v3/mail/send``: 202 accepted; 400 (a request
SendGrid cannot take) fails the message; 401/403 is a refusal of the sender's key; 429 and 5xx,
timeouts and connection errors are temporary.  Per-recipient outcomes arrive by webhook.

:func:`parse_webhook` verifies SendGrid's signed event webhook (ECDSA P-256 with SHA-256 over
the timestamp header followed by the raw body, with the public key SendGrid shows for the
webhook), refuses stale timestamps, and reads ``bounce`` (type ``bounce`` or ``blocked``),
``dropped``, ``deferred``, ``spamreport``, ``delivered`` and ``unsubscribe`` events.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Mapping
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sendguard import (
    Adapter,
    DeliveryEvent,
    Envelope,
    Reply,
    Stage,
    WebhookAuthError,
    WebhookPayloadError,
    event_from,
)
from sendguard.http import (
    API_FIELDS,
    UNREADABLE,
    as_list,
    as_object,
    as_text,
    check_instance,
    check_seconds,
    check_text,
    check_url,
    everyone,
    json_body,
    listed_in,
    temporary,
)

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "SendGridAdapter", "parse_webhook"]
__version__ = "0.1.0"

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# SendGrid's drop reasons that mean the address is already known dead (its own lists).
_DEAD_DROPS = ("bounced address", "invalid", "unsubscribed address", "spam reporting address")


def _check_client(owner: str, base_url: object, timeout: object, transport: object) -> None:
    check_url(owner, "base_url", base_url)
    check_seconds(owner, "timeout", timeout)
    if transport is not None:
        check_instance(
            owner, "transport", transport, httpx.AsyncBaseTransport, "an httpx.AsyncBaseTransport"
        )


class SendGridAdapter(Adapter):
    """Delivers through SendGrid's v3 HTTP API."""

    source = "sendgrid"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "https://api.sendgrid.com",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        check_text("SendGridAdapter", "api_key", api_key, ascii_only=True, secret=True)
        _check_client("SendGridAdapter", base_url, timeout, transport)
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}"},
        )

    def __repr__(self) -> str:
        return f"SendGridAdapter(base_url={str(self._client.base_url)!r})"

    async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
        """See :meth:`sendguard.Adapter.deliver`: one ``POST /v3/mail/send``."""
        try:
            response = await self._client.post("/v3/mail/send", json=payload(envelope))
        except httpx.TimeoutException as exc:
            return everyone(envelope, Reply(None, f"SendGrid timed out: {exc}", Stage.DATA_END))
        except httpx.HTTPError as exc:
            return everyone(envelope, Reply(None, f"SendGrid unreachable: {exc}", Stage.CONNECT))
        status = response.status_code
        text = _errors(response)
        if status in (200, 202):
            return everyone(envelope, Reply(250, "2.0.0 SendGrid accepted", Stage.DATA_END))
        if status == 429 or status >= 500:
            wait = response.headers.get("Retry-After")
            reply = temporary(
                f"SendGrid HTTP {status}: {text}",
                ratelimited=status == 429,
                retry_after_header=wait,
            )
            return everyone(envelope, reply)
        if status in (401, 403):
            detail = f"SendGrid HTTP {status}: {text}"
            return everyone(envelope, Reply(530, detail, Stage.MAIL, reason="authfailure"))
        detail = f"SendGrid HTTP {status}: {text}"
        return everyone(envelope, Reply(554, detail, Stage.DATA, reason="contenterror"))

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()


# Fields of the API, SendGrid's reserved header keys (a request that sets one as a header is
# refused with a 400), and Date and Message-ID, which SendGrid writes itself.
_NOT_HEADERS = API_FIELDS | {"reply-to", "received", "dkim-signature", "x-sg-id", "x-sg-eid"}
_NOT_HEADERS |= {"date", "message-id"}


def payload(envelope: Envelope) -> dict[str, Any]:
    """The JSON body of ``POST /v3/mail/send`` for *envelope*."""
    message = envelope.message
    to = listed_in(message, "To", envelope.recipients)
    cc = [a for a in listed_in(message, "Cc", envelope.recipients) if a not in to]
    bcc = [r for r in envelope.recipients if r not in to and r not in cc]
    personalization: dict[str, Any] = {"to": [{"email": a} for a in to or bcc[:1]]}
    if not to:
        bcc = bcc[1:]
    if cc:
        personalization["cc"] = [{"email": a} for a in cc]
    if bcc:
        personalization["bcc"] = [{"email": a} for a in bcc]
    name, sender = parseaddr(str(message.get("From", envelope.sender)))
    body: dict[str, Any] = {
        "personalizations": [personalization],
        "from": _person(name, sender or envelope.sender),
        "subject": str(message.get("Subject", "")),
        "content": _content(message),
        "headers": {k: str(v) for k, v in message.items() if k.lower() not in _NOT_HEADERS},
    }
    if not body["headers"]:
        del body["headers"]
    reply_to = [
        _person(n, a)
        for n, a in getaddresses([str(v) for v in message.get_all("Reply-To", [])])
        if a
    ]
    if len(reply_to) == 1:
        body["reply_to"] = reply_to[0]
    elif reply_to:
        body["reply_to_list"] = reply_to
    return body


def _person(name: str, address: str) -> dict[str, str]:
    return {"email": address, "name": name} if name else {"email": address}


def _content(message: Message) -> list[dict[str, str]]:
    content: list[dict[str, str]] = []
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() not in ("text/plain", "text/html"):
            continue
        raw = part.get_payload(decode=True)
        if isinstance(raw, bytes):
            text = raw.decode(part.get_content_charset() or "utf-8", "replace")
            content.append({"type": part.get_content_type(), "value": text})
    content.sort(key=lambda c: c["type"] != "text/plain")  # SendGrid wants text/plain first
    return content or [{"type": "text/plain", "value": " "}]


def _errors(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors", [])
        return "; ".join(str(e.get("message", e)) for e in errors) or response.reason_phrase
    except (ValueError, AttributeError):
        return response.text[:200] or response.reason_phrase


# -- the signed event webhook ------------------------------------------------------------------


def parse_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    public_key: str,
    max_age: dt.timedelta = dt.timedelta(minutes=10),
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> list[DeliveryEvent]:
    """Verify one signed event webhook request; its events.

    *public_key* is the verification key SendGrid shows for the webhook (base64 DER, or PEM).
    Raises :class:`sendguard.WebhookAuthError` for a missing, wrong or stale signature, and
    :class:`sendguard.WebhookPayloadError` for a signed body that is not SendGrid's event list.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    lower = {k.lower(): v for k, v in headers.items()}
    signature = lower.get(SIGNATURE_HEADER.lower(), "")
    timestamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    if not signature or not timestamp:
        raise WebhookAuthError("the request carries no SendGrid signature")
    key = _load_key(public_key)
    try:
        signed = timestamp.encode("utf-8", "surrogatepass") + raw
        key.verify(base64.b64decode(signature), signed, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise WebhookAuthError("wrong SendGrid webhook signature") from exc
    try:
        age = clock().timestamp() - int(timestamp)
    except ValueError as exc:
        raise WebhookAuthError("unreadable SendGrid timestamp") from exc
    if abs(age) > max_age.total_seconds():
        raise WebhookAuthError("stale SendGrid webhook: outside the replay window")
    records = json_body(raw, "SendGrid", WebhookPayloadError)
    try:
        return [e for record in as_list(records) for e in _events(as_object(record))]
    except UNREADABLE as exc:
        raise WebhookPayloadError("not SendGrid's event list") from exc


def _load_key(public_key: str) -> ec.EllipticCurvePublicKey:
    try:
        if "BEGIN PUBLIC KEY" in public_key:
            key = serialization.load_pem_public_key(public_key.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(public_key))
    except (ValueError, binascii.Error) as exc:
        raise WebhookAuthError("the configured SendGrid public key is unreadable") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookAuthError("the configured SendGrid public key is not an EC key")
    return key


def _events(record: dict[str, Any]) -> list[DeliveryEvent]:  # noqa: PLR0911 (one per event)
    kind = as_text(record["event"])
    common: dict[str, Any] = {
        "provider": "sendgrid",
        "event_id": as_text(record["sg_event_id"]),
        "recipient": as_text(record["email"]),
        "timestamp": dt.datetime.fromtimestamp(float(as_text(record["timestamp"])), dt.UTC),
        "raw": record,
    }
    diagnostic = " ".join(
        as_text(record[k]) for k in ("status", "reason", "response") if record.get(k)
    )
    if kind == "bounce":
        # type "blocked" is SendGrid's word for a refusal of the sender (IP, content).
        permanent = record.get("type", "bounce") == "bounce"
        return [event_from(type="bounced", diagnostic=diagnostic, permanent=permanent, **common)]
    if kind == "dropped":
        dead = as_text(record.get("reason", "")).lower().startswith(_DEAD_DROPS)
        return [
            event_from(
                type="bounced",
                diagnostic=diagnostic,
                permanent=dead,
                reason="suppressed" if dead else None,
                **common,
            )
        ]
    if kind == "deferred":
        return [event_from(type="deferred", diagnostic=diagnostic, **common)]
    if kind == "spamreport":
        return [event_from(type="complained", **common)]
    if kind == "delivered":
        return [event_from(type="delivered", diagnostic=diagnostic, **common)]
    if kind in ("unsubscribe", "group_unsubscribe"):
        return [event_from(type="unsubscribed", **common)]
    return []  # processed, open, click: nothing for the guard
