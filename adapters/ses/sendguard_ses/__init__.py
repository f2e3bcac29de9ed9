"""sendguard for Amazon SES: SES v2 SendEmail with the raw message; SNS notifications verified.

:class:`SESAdapter` sends the exact MIME message (``Content.Raw``) to the envelope recipients
with one signed ``POST /v2/email/outbound-emails`` (SigV4 by botocore's signer, never a
hand-written one): 200 accepted; throttling (429, ``TooManyRequestsException``) and 5xx are
temporary; ``SendingPausedException`` and ``AccountSuspendedException`` refuse the sender;
``MessageRejected`` and other 400s fail the message.

:class:`SNSVerifier` verifies SNS deliveries of SES events: SignatureVersion 1 (SHA1withRSA)
and 2 (SHA256withRSA), the signing certificate fetched only from
``https://sns.<region>.amazonaws.com/...pem`` (and cached), the TopicArn on an allow-list; a
``SubscriptionConfirmation`` is confirmed by fetching its SubscribeURL (same host rule).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlparse

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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

__all__ = ["SESAdapter", "SNSVerifier", "parse_webhook"]
__version__ = "0.1.0"

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?$")
_RATE_LIMITED = ("TooManyRequestsException",)
_SENDER_REFUSED = (
    "SendingPausedException",
    "AccountSuspendedException",
    "MailFromDomainNotVerifiedException",
)


class SESAdapter(Adapter):
    """Delivers through Amazon SES v2 (``endpoint_url`` for tests or a VPC endpoint)."""

    def __init__(
        self,
        *,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        session_token: str | None = None,
        endpoint_url: str | None = None,
        configuration_set: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.region = region
        self.endpoint = (endpoint_url or f"https://email.{region}.amazonaws.com").rstrip("/")
        self.configuration_set = configuration_set
        self._credentials = Credentials(access_key_id, secret_access_key, session_token)
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"SESAdapter(region={self.region!r}, endpoint={self.endpoint!r})"

    def signed_request(self, envelope: Envelope) -> tuple[str, dict[str, str], bytes]:
        """The URL, headers and body of the SendEmail call, signed with SigV4."""
        body: dict[str, Any] = {
            "FromEmailAddress": envelope.sender,
            "Destination": {"ToAddresses": list(envelope.recipients)},
            "Content": {"Raw": {"Data": base64.b64encode(envelope.data).decode()}},
        }
        if self.configuration_set:
            body["ConfigurationSetName"] = self.configuration_set
        data = json.dumps(body).encode()
        url = f"{self.endpoint}/v2/email/outbound-emails"
        request = AWSRequest(
            method="POST", url=url, data=data, headers={"Content-Type": "application/json"}
        )
        SigV4Auth(self._credentials, "ses", self.region).add_auth(request)
        return url, dict(request.headers.items()), data

    async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
        """See :meth:`sendguard.Adapter.deliver`: one signed SendEmail call."""
        url, headers, data = self.signed_request(envelope)
        try:
            response = await self._client.post(url, headers=headers, content=data)
        except httpx.TimeoutException as exc:
            return everyone(envelope, Reply(None, f"SES timed out: {exc}", Stage.DATA_END))
        except httpx.HTTPError as exc:
            return everyone(envelope, Reply(None, f"SES unreachable: {exc}", Stage.CONNECT))
        status = response.status_code
        kind = response.headers.get("x-amzn-ErrorType", "").split(":")[0]
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        text = str(answer.get("message") or answer.get("Message") or response.reason_phrase)
        if status == 200:
            detail = f"2.0.0 SES MessageId {answer.get('MessageId', '')}"
            return everyone(envelope, Reply(250, detail, Stage.DATA_END))
        detail = f"SES {kind or status}: {text}"
        limited = status == 429 or kind in _RATE_LIMITED
        if limited or status >= 500:
            wait = response.headers.get("Retry-After")
            return everyone(
                envelope, temporary(detail, ratelimited=limited, retry_after_header=wait)
            )
        if kind in _SENDER_REFUSED or status == 403:
            return everyone(envelope, Reply(554, detail, Stage.MAIL, reason="rejected"))
        return everyone(envelope, Reply(554, detail, Stage.DATA, reason="contenterror"))

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()


# -- SNS notifications -------------------------------------------------------------------------

_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
}

Fetch = Callable[[str], bytes]


def _fetch(url: str) -> bytes:
    return httpx.get(url, timeout=10.0, follow_redirects=False).raise_for_status().content


class SNSVerifier:
    """Verifies SNS deliveries (of SES events) and reads them as delivery events.

    ``topic_arns``: the topics this endpoint accepts.  ``fetch`` retrieves a certificate or
    confirms a subscription (injected in tests); it is only ever given an ``https`` URL on an
    ``sns.<region>.amazonaws.com`` host.
    """

    def __init__(
        self,
        *,
        topic_arns: Iterable[str],
        fetch: Fetch = _fetch,
        confirm_subscriptions: bool = True,
    ) -> None:
        self.topic_arns = frozenset(topic_arns)
        if not self.topic_arns:
            raise ValueError("SNSVerifier needs the TopicArns it accepts")
        self._fetch = fetch
        self.confirm_subscriptions = confirm_subscriptions
        self._certificates: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def parse(self, headers: Mapping[str, str], body: bytes | str) -> list[DeliveryEvent]:
        """Verify one SNS request; the SES events it carries (none for a confirmation)."""
        del headers  # the signature is in the body
        try:
            envelope = json.loads(body)
            kind = envelope["Type"]
            fields = _SIGNED_FIELDS[kind]
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookAuthError("not an SNS message") from exc
        if envelope.get("TopicArn") not in self.topic_arns:
            raise WebhookAuthError(f"SNS topic not accepted: {envelope.get('TopicArn')!r}")
        self._verify(envelope, fields)
        if kind == "SubscriptionConfirmation":
            if self.confirm_subscriptions:
                self._fetch(_pinned(envelope["SubscribeURL"]))
            return []
        if kind != "Notification":
            return []
        try:
            return _ses_events(json.loads(envelope["Message"]), envelope["MessageId"])
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookAuthError("a malformed SES notification") from exc

    def _verify(self, envelope: dict[str, Any], fields: tuple[str, ...]) -> None:
        version = str(envelope.get("SignatureVersion", ""))
        if version not in ("1", "2"):
            raise WebhookAuthError(f"unknown SNS SignatureVersion {version!r}")
        text = "".join(f"{k}\n{envelope[k]}\n" for k in fields if k in envelope)
        try:
            signature = base64.b64decode(envelope["Signature"], validate=True)
        except (KeyError, binascii.Error, ValueError) as exc:
            raise WebhookAuthError("no readable SNS signature") from exc
        key = self._certificate(str(envelope.get("SigningCertURL", "")))
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 (SNS's v1)
        try:
            key.verify(signature, text.encode(), padding.PKCS1v15(), digest)
        except InvalidSignature as exc:
            raise WebhookAuthError("wrong SNS signature") from exc

    def _certificate(self, url: str) -> rsa.RSAPublicKey:
        pinned = _pinned(url)
        if not urlparse(pinned).path.endswith(".pem"):
            raise WebhookAuthError("the SNS certificate URL is not a .pem")
        with self._lock:
            key = self._certificates.get(pinned)
        if key is None:
            try:
                certificate = x509.load_pem_x509_certificate(self._fetch(pinned))
            except (ValueError, httpx.HTTPError) as exc:
                raise WebhookAuthError("the SNS signing certificate is unusable") from exc
            public = certificate.public_key()
            if not isinstance(public, rsa.RSAPublicKey):
                raise WebhookAuthError("the SNS signing certificate has no RSA key")
            key = public
            with self._lock:
                self._certificates[pinned] = key
        return key


def _pinned(url: str) -> str:
    parts = urlparse(url)
    if parts.scheme != "https" or not _SNS_HOST.match(parts.hostname or "") or parts.port:
        raise WebhookAuthError(f"not an SNS URL: {url!r}")
    return url


def _ses_events(event: dict[str, Any], message_id: str) -> list[DeliveryEvent]:
    kind = event.get("eventType") or event.get("notificationType")
    mail = event.get("mail", {})
    sender = str(mail.get("source", ""))
    when = dt.datetime.fromisoformat(
        str(mail.get("timestamp", "1970-01-01T00:00:00Z")).replace("Z", "+00:00")
    )
    if kind == "Bounce":
        bounce = event["bounce"]
        permanent = bounce.get("bounceType") == "Permanent"
        listed = bounce.get("bounceSubType") in ("Suppressed", "OnAccountSuppressionList")
        return [
            event_from(
                provider="ses",
                event_id=f"{message_id}:{r['emailAddress']}",
                type="bounced" if permanent else "deferred",
                recipient=str(r["emailAddress"]),
                timestamp=when,
                diagnostic=str(r.get("diagnosticCode", "")),
                permanent=permanent,
                sender=sender,
                reason="suppressed" if listed else None,
                raw=event,
            )
            for r in bounce["bouncedRecipients"]
        ]
    if kind == "Complaint":
        return [
            event_from(
                provider="ses",
                event_id=f"{message_id}:{r['emailAddress']}",
                type="complained",
                recipient=str(r["emailAddress"]),
                timestamp=when,
                sender=sender,
                raw=event,
            )
            for r in event["complaint"]["complainedRecipients"]
        ]
    if kind == "Delivery":
        return [
            event_from(
                provider="ses",
                event_id=f"{message_id}:{r}",
                type="delivered",
                recipient=str(r),
                timestamp=when,
                sender=sender,
                raw=event,
            )
            for r in event["delivery"]["recipients"]
        ]
    return []


_verifiers: dict[frozenset[str], SNSVerifier] = {}
_verifiers_lock = threading.Lock()


def parse_webhook(
    headers: Mapping[str, str], body: bytes | str, *, topic_arns: Iterable[str]
) -> list[DeliveryEvent]:
    """Verify and read one SNS request carrying SES events; raises WebhookAuthError.

    One :class:`SNSVerifier` per topic set is kept for the process, so its certificate cache
    persists between calls.
    """
    topics = frozenset(topic_arns)
    with _verifiers_lock:
        verifier = _verifiers.get(topics)
        if verifier is None:
            verifier = _verifiers[topics] = SNSVerifier(topic_arns=topics)
    return verifier.parse(headers, body)
