"""sendguard for Postmark: one API call per delivery, and its webhooks as delivery events.

:class:`PostmarkAdapter` sends with ``POST /email`` and reports, per recipient, what Postmark
said, as SMTP-style replies the guard decides on: accepted (250); an inactive recipient
(ErrorCode 406: a hard bounce, a complaint or a manual suppression on Postmark's side) is a
permanent refusal with the provider's verdict ``suppressed``, so the guard lists it too; an
invalid request (ErrorCode 300 and the like, HTTP 422) fails the message (554); HTTP 429 and
5xx, timeouts and connection errors are temporary (451, or no code at all), never a
suppression.  The adapter never retries, sleeps or touches the store.

:func:`parse_webhook` checks the HTTP basic-auth credentials Postmark's webhook URL carries
(constant-time, several pairs accepted while they are rotated) and turns Bounce,
SpamComplaint and Delivery records into :class:`sendguard.DeliveryEvent`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import re
from collections.abc import Iterable, Mapping
from email.message import Message
from typing import Any

import httpx

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

__all__ = ["PostmarkAdapter", "parse_webhook"]
__version__ = "0.1.0"

_INACTIVE = re.compile(r"(?:Found inactive addresses|these inactive addresses):\s*(.+?)\.(?:\s|$)")
# Postmark's bounce types that it calls permanent; whether the address itself is dead is still
# read from the details ("Blocked" is an ISP refusing the sender, never the address's fault).
_HARD_TYPES = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})


def _check_client(owner: str, base_url: object, timeout: object, transport: object) -> None:
    check_url(owner, "base_url", base_url)
    check_seconds(owner, "timeout", timeout)
    if transport is not None:
        check_instance(
            owner, "transport", transport, httpx.AsyncBaseTransport, "an httpx.AsyncBaseTransport"
        )


class PostmarkAdapter(Adapter):
    """Delivers through Postmark's HTTP API (``base_url`` for tests or a proxy)."""

    source = "postmark"

    def __init__(
        self,
        *,
        server_token: str,
        message_stream: str = "outbound",
        base_url: str = "https://api.postmarkapp.com",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        check_text("PostmarkAdapter", "server_token", server_token, ascii_only=True, secret=True)
        check_text("PostmarkAdapter", "message_stream", message_stream)
        _check_client("PostmarkAdapter", base_url, timeout, transport)
        self.message_stream = message_stream
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            headers={
                "Accept": "application/json",
                "X-Postmark-Server-Token": server_token,
            },
        )

    def __repr__(self) -> str:
        return f"PostmarkAdapter(base_url={str(self._client.base_url)!r})"

    async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
        """See :meth:`sendguard.Adapter.deliver`: one ``POST /email``."""
        try:
            response = await self._client.post("/email", json=self.payload(envelope))
        except httpx.TimeoutException as exc:
            # Postmark may or may not have taken it: like no reply to the final dot.
            return everyone(envelope, Reply(None, f"Postmark timed out: {exc}", Stage.DATA_END))
        except httpx.HTTPError as exc:
            return everyone(envelope, Reply(None, f"Postmark unreachable: {exc}", Stage.CONNECT))
        return self._replies(envelope, response)

    def payload(self, envelope: Envelope) -> dict[str, Any]:
        """The JSON body of ``POST /email`` for *envelope*."""
        message = envelope.message
        to = listed_in(message, "To", envelope.recipients)
        cc = listed_in(message, "Cc", set(envelope.recipients) - set(to))
        bcc = [r for r in envelope.recipients if r not in set(to) | set(cc)]
        text, html = _bodies(message)
        body: dict[str, Any] = {
            "From": str(message.get("From", envelope.sender)),
            "To": ", ".join(to),
            "Subject": str(message.get("Subject", "")),
            "MessageStream": self.message_stream,
            "Headers": [
                {"Name": name, "Value": str(value)}
                for name, value in message.items()
                if name.lower() not in API_FIELDS
            ],
        }
        if cc:
            body["Cc"] = ", ".join(cc)
        if bcc:
            body["Bcc"] = ", ".join(bcc)
        if text is not None:
            body["TextBody"] = text
        if html is not None:
            body["HtmlBody"] = html
        return body

    @staticmethod
    def _replies(envelope: Envelope, response: httpx.Response) -> dict[str, Reply]:
        status = response.status_code
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        code = int(answer.get("ErrorCode", -1)) if isinstance(answer, dict) else -1
        text = (
            str(answer.get("Message", response.reason_phrase)) if isinstance(answer, dict) else ""
        )
        if status == 200 and code == 0:
            ok = f"2.0.0 Postmark accepted, MessageID {answer.get('MessageID', '')}"
            return everyone(envelope, Reply(250, ok, Stage.DATA_END))
        if status == 429 or status >= 500:
            wait = response.headers.get("Retry-After")
            reply = temporary(
                f"Postmark HTTP {status}: {text}",
                ratelimited=status == 429,
                retry_after_header=wait,
            )
            return everyone(envelope, reply)
        if code == 406:
            found = _INACTIVE.search(text)
            inactive = {a.strip().lower() for a in found.group(1).split(",")} if found else None
            replies = {}
            for rcpt in envelope.recipients:
                if inactive is None or rcpt.lower() in inactive:
                    replies[rcpt] = Reply(
                        550, f"Postmark 406: {text}", Stage.RCPT, reason="suppressed"
                    )
                else:
                    # Postmark sends nothing when any recipient is inactive: try again without them.
                    replies[rcpt] = Reply(
                        451, f"Postmark 406 for another recipient: {text}", Stage.RCPT
                    )
            return replies
        if code == 10 or status == 401:
            return everyone(
                envelope,
                Reply(
                    530,
                    f"Postmark refused the server token: {text}",
                    Stage.MAIL,
                    reason="authfailure",
                ),
            )
        # Any other refusal is about the message (ErrorCode 300 invalid request, 411 a
        # forbidden attachment type, ...).
        return everyone(
            envelope, Reply(554, f"Postmark {code}: {text}", Stage.DATA, reason="contenterror")
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()


def _bodies(message: Message) -> tuple[str | None, str | None]:
    text = html = None
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        content = payload.decode(part.get_content_charset() or "utf-8", "replace")
        if part.get_content_type() == "text/plain" and text is None:
            text = content
        elif part.get_content_type() == "text/html" and html is None:
            html = content
    return text, html


# -- webhooks ----------------------------------------------------------------------------------


def parse_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    credentials: Iterable[tuple[str, str]],
) -> list[DeliveryEvent]:
    """Verify a Postmark webhook request and read its record as delivery events.

    *credentials* are the (user, password) pairs put in the webhook URL; any of them is
    accepted, so a pair can be rotated.  Raises :class:`sendguard.WebhookAuthError` for
    missing or wrong credentials, and :class:`sendguard.WebhookPayloadError` for a body (with
    good credentials) that is not a Postmark record.
    """
    _check_auth(headers, list(credentials))
    record = json_body(body, "Postmark", WebhookPayloadError)
    if not isinstance(record, dict) or "RecordType" not in record:
        raise WebhookPayloadError("the webhook body is not a Postmark record")
    try:
        return _events(record)
    except UNREADABLE as exc:
        raise WebhookPayloadError("a malformed Postmark record") from exc


def _check_auth(headers: Mapping[str, str], allowed: list[tuple[str, str]]) -> None:
    if not allowed:
        raise WebhookAuthError("no webhook credentials configured: every request is refused")
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise WebhookAuthError("the webhook request has no basic-auth credentials")
    try:
        given = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookAuthError("unreadable basic-auth credentials") from exc
    matched = False
    for user, password in allowed:
        # Compare with every pair, in constant time: no early exit to time.
        matched |= hmac.compare_digest(given, f"{user}:{password}".encode())
    if not matched:
        raise WebhookAuthError("wrong webhook credentials")


def _when(value: object) -> dt.datetime:
    if value is None or value == "":
        return dt.datetime.now(dt.UTC)
    when = dt.datetime.fromisoformat(as_text(value))
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _events(record: dict[str, Any]) -> list[DeliveryEvent]:
    kind = record["RecordType"]
    if kind == "Bounce":
        bounce_type = as_text(record.get("Type", ""))
        diagnostic = as_text(record.get("Details") or record.get("Description") or "")
        return [
            event_from(
                provider="postmark",
                event_id=as_text(record["ID"]),
                type="bounced",
                recipient=as_text(record["Email"]),
                timestamp=_when(record.get("BouncedAt")),
                diagnostic=diagnostic,
                permanent=bounce_type in _HARD_TYPES,
                sender=as_text(record.get("From", "")),
                raw=record,
            )
        ]
    if kind == "SpamComplaint":
        return [
            event_from(
                provider="postmark",
                event_id=as_text(record["ID"]),
                type="complained",
                recipient=as_text(record["Email"]),
                timestamp=_when(record.get("BouncedAt")),
                sender=as_text(record.get("From", "")),
                raw=record,
            )
        ]
    if kind == "Delivery":
        return [
            event_from(
                provider="postmark",
                event_id=f"delivery:{as_text(record['MessageID'])}:{as_text(record['Recipient'])}",
                type="delivered",
                recipient=as_text(record["Recipient"]),
                timestamp=_when(record.get("DeliveredAt")),
                diagnostic=as_text(record.get("Details", "")),
                raw=record,
            )
        ]
    return []  # opens, clicks, subscription changes: nothing for the guard
