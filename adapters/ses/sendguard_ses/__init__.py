"""sendguard for Amazon SES: SES v2 SendEmail with the raw message; SNS notifications verified.

:class:`SESAdapter` sends the exact MIME message (``Content.Raw``) to the envelope recipients
with one signed ``POST /v2/email/outbound-emails`` (SigV4 by botocore's signer, never a
hand-written one): 200 accepted; throttling (429, ``TooManyRequestsException``) and 5xx are
temporary; ``SendingPausedException`` and ``AccountSuspendedException`` refuse the sender;
``MessageRejected`` and other 400s fail the message.

:class:`SNSVerifier` verifies SNS deliveries of SES events: SignatureVersion 1 (SHA1withRSA)
and 2 (SHA256withRSA), the signing certificate fetched only from
``https://sns.<region>.amazonaws.com/...pem`` (and cached), the TopicArn on an allow-list, the
signed Timestamp no older than an hour; a ``SubscriptionConfirmation`` is confirmed by fetching
its SubscribeURL (same host rule).  A confirmation that SNS does not answer with a 2xx, or that
cannot reach it, raises :class:`sendguard.WebhookUnavailableError`, which
:func:`sendguard.webhooks.handle` answers 503: SNS sends the confirmation again.
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
    ConfigurationError,
    DeliveryEvent,
    Envelope,
    Reply,
    Stage,
    WebhookAuthError,
    WebhookPayloadError,
    WebhookUnavailableError,
    event_from,
)
from sendguard.http import (
    UNREADABLE,
    as_list,
    as_object,
    as_text,
    check_flag,
    check_instance,
    check_seconds,
    check_text,
    check_url,
    everyone,
    json_body,
    temporary,
)

__all__ = ["SESAdapter", "SNSVerifier", "parse_webhook"]
__version__ = "0.1.0"

# AWS's validators take ^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$; its middle label is
# also held to the shape of a region (us-east-1, cn-northwest-1, us-gov-west-1, eusc-de-east-1),
# so that no S3 host (sns.s3-external-1.amazonaws.com is a bucket's) is taken for SNS.
_SNS_HOST = re.compile(
    r"^sns\.(?P<region>[a-zA-Z]{2,4}(?:-[a-zA-Z]+)+-[0-9]{1,2})\.amazonaws\.com(?:\.cn)?$"
)
_REGION = re.compile(r"[a-z]{2,4}(?:-[a-z]+)+-[0-9]{1,2}\Z")
_RATE_LIMITED = ("TooManyRequestsException",)
_SENDER_REFUSED = (
    "SendingPausedException",
    "AccountSuspendedException",
    "MailFromDomainNotVerifiedException",
)


class SESAdapter(Adapter):
    """Delivers through Amazon SES v2 (``endpoint_url`` for tests or a VPC endpoint)."""

    source = "ses"

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
        owner = "SESAdapter"
        if not isinstance(region, str) or not _REGION.match(region):
            raise ConfigurationError(
                f"SESAdapter(region=...) must be an AWS region such as 'eu-west-1', not {region!r}"
            )
        check_text(owner, "access_key_id", access_key_id, ascii_only=True)
        check_text(owner, "secret_access_key", secret_access_key, ascii_only=True, secret=True)
        if session_token is not None:
            check_text(owner, "session_token", session_token, ascii_only=True, secret=True)
        if endpoint_url is not None:
            check_url(owner, "endpoint_url", endpoint_url)
        if configuration_set is not None:
            check_text(owner, "configuration_set", configuration_set)
        check_seconds(owner, "timeout", timeout)
        if transport is not None:
            check_instance(
                owner,
                "transport",
                transport,
                httpx.AsyncBaseTransport,
                "an httpx.AsyncBaseTransport",
            )
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


def _fetcher(transport: httpx.BaseTransport | None) -> Fetch:
    """GET *url*: its body on a 2xx, else ``httpx.HTTPError`` (a redirect is not followed)."""

    def fetch(url: str) -> bytes:
        with httpx.Client(transport=transport, timeout=10.0, follow_redirects=False) as client:
            return client.get(url).raise_for_status().content

    return fetch


class SNSVerifier:
    """Verifies SNS deliveries (of SES events) and reads them as delivery events.

    ``topic_arns``: the topics this endpoint accepts.  ``fetch`` retrieves a certificate or
    confirms a subscription (injected in tests; by default an httpx GET over ``transport``),
    raising ``httpx.HTTPError`` when it gets no 2xx; it is only ever given an ``https`` URL on an
    ``sns.<region>.amazonaws.com`` host (``.com.cn`` in China), the rule of AWS's own
    validators, with the region shaped as a region so that no S3 bucket host passes.
    ``regions``: when given, the only regions whose certificates are taken.  ``max_age``: how
    old a message's signed ``Timestamp`` may be (SNS retries a delivery for an hour at most);
    ``skew``: how far in the future.
    """

    def __init__(  # noqa: PLR0912 (one check per option, flat)
        self,
        *,
        topic_arns: Iterable[str],
        fetch: Fetch | None = None,
        transport: httpx.BaseTransport | None = None,
        confirm_subscriptions: bool = True,
        regions: Iterable[str] | None = None,
        max_age: dt.timedelta = dt.timedelta(hours=1),
        skew: dt.timedelta = dt.timedelta(minutes=5),
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        owner = "SNSVerifier"
        if isinstance(topic_arns, str):
            raise ConfigurationError(
                f"SNSVerifier(topic_arns=...) takes a list of TopicArns: [{topic_arns!r}]"
            )
        self.topic_arns = frozenset(topic_arns)
        if not self.topic_arns:
            raise ConfigurationError("SNSVerifier needs the TopicArns it accepts: topic_arns=[...]")
        for arn in self.topic_arns:
            if not isinstance(arn, str) or not arn.startswith("arn:"):
                raise ConfigurationError(
                    f"SNSVerifier(topic_arns=...) must be TopicArns such as "
                    f"'arn:aws:sns:eu-west-1:123456789012:ses-events', not {arn!r}"
                )
        if isinstance(regions, str):
            raise ConfigurationError(f"SNSVerifier(regions=...) takes a list: [{regions!r}]")
        if regions is not None:
            regions = list(regions)
            for region in regions:
                if not isinstance(region, str) or not _REGION.match(region.lower()):
                    raise ConfigurationError(
                        f"SNSVerifier(regions=...) must be AWS regions such as 'eu-west-1', "
                        f"not {region!r}"
                    )
        self.regions = frozenset(r.lower() for r in regions) if regions is not None else None
        if self.regions is not None and not self.regions:
            raise ConfigurationError("SNSVerifier(regions=...) must name at least one region")
        if fetch is not None and transport is not None:
            raise ConfigurationError("SNSVerifier takes fetch= or transport=, not both")
        if fetch is not None and not callable(fetch):
            raise ConfigurationError(f"SNSVerifier(fetch=...) must be a function, not {fetch!r}")
        if transport is not None:
            check_instance(
                owner, "transport", transport, httpx.BaseTransport, "an httpx.BaseTransport"
            )
        check_flag(owner, "confirm_subscriptions", confirm_subscriptions)
        for name, span in (("max_age", max_age), ("skew", skew)):
            check_instance(owner, name, span, dt.timedelta, "a datetime.timedelta")
            if span < dt.timedelta(0):
                raise ConfigurationError(f"SNSVerifier({name}=...) must not be negative")
        if not callable(clock):
            raise ConfigurationError(f"SNSVerifier(clock=...) must be a function, not {clock!r}")
        self._fetch = fetch if fetch is not None else _fetcher(transport)
        self.confirm_subscriptions = confirm_subscriptions
        self.max_age = max_age
        self.skew = skew
        self._clock = clock
        self._certificates: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def parse(self, headers: Mapping[str, str], body: bytes | str) -> list[DeliveryEvent]:
        """Verify one SNS request; the SES events it carries (none for a confirmation).

        Raises :class:`WebhookAuthError` for a request SNS did not sign (or signed too long
        ago), :class:`WebhookPayloadError` for a signed one whose SES event is unreadable, and
        :class:`WebhookUnavailableError` for a subscription SNS did not confirm (to be sent
        again).
        """
        del headers  # the signature is in the body
        try:
            envelope = as_object(json_body(body, "SNS"))
            kind = as_text(envelope["Type"])
            fields = _SIGNED_FIELDS[kind]
            topic = as_text(envelope["TopicArn"])
        except UNREADABLE as exc:
            raise WebhookAuthError("not an SNS message") from exc
        if topic not in self.topic_arns:
            raise WebhookAuthError(f"SNS topic not accepted: {topic[:200]!r}")
        self._check_age(envelope.get("Timestamp"))
        self._verify(envelope, fields)
        if kind == "SubscriptionConfirmation":
            if self.confirm_subscriptions:
                self._confirm(self._pinned(envelope.get("SubscribeURL")))
            return []
        if kind != "Notification":
            return []
        try:
            message = as_object(json_body(envelope["Message"], "SES", WebhookPayloadError))
            return _ses_events(message, as_text(envelope["MessageId"]))
        except UNREADABLE as exc:
            raise WebhookPayloadError("a malformed SES notification") from exc

    def _confirm(self, url: str) -> None:
        try:
            self._fetch(url)
        except (httpx.HTTPError, OSError) as exc:
            # Not the request's fault: SNS sends the confirmation again after a 5xx.
            answer = (
                f"SNS answered {exc.response.status_code}"
                if isinstance(exc, httpx.HTTPStatusError)
                else f"SNS unreachable ({type(exc).__name__})"
            )
            raise WebhookUnavailableError(
                f"the SNS subscription was not confirmed: {answer}"
            ) from exc

    def _check_age(self, stamp: object) -> None:
        try:
            when = dt.datetime.fromisoformat(as_text(stamp))
        except UNREADABLE as exc:
            raise WebhookAuthError("no readable SNS Timestamp") from exc
        if when.tzinfo is None:
            raise WebhookAuthError("an SNS Timestamp without a zone")
        age = self._clock() - when
        if age > self.max_age or -age > self.skew:
            raise WebhookAuthError(f"stale SNS message: signed at {when.isoformat()}")

    def _verify(self, envelope: dict[str, Any], fields: tuple[str, ...]) -> None:
        version = envelope.get("SignatureVersion")
        if version not in ("1", "2"):
            raise WebhookAuthError("unknown SNS SignatureVersion")
        try:
            text = "".join(f"{k}\n{as_text(envelope[k])}\n" for k in fields if k in envelope)
            signature = base64.b64decode(as_text(envelope["Signature"]), validate=True)
            url = as_text(envelope["SigningCertURL"])
        except (*UNREADABLE, binascii.Error) as exc:
            raise WebhookAuthError("no readable SNS signature") from exc
        key = self._certificate(url)
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 (SNS's v1)
        signed = text.encode("utf-8", "surrogatepass")
        try:
            key.verify(signature, signed, padding.PKCS1v15(), digest)
        except InvalidSignature as exc:
            raise WebhookAuthError("wrong SNS signature") from exc

    def _certificate(self, url: str) -> rsa.RSAPublicKey:
        pinned = self._pinned(url)
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

    def _pinned(self, url: object) -> str:
        """*url* if it is an https URL of SNS itself (of an accepted region); else refused."""
        if not isinstance(url, str) or not _PRINTABLE.match(url):
            raise WebhookAuthError("not an SNS URL")
        parts = urlparse(url)
        # The whole netloc must be the host: no user info, no port, no other spelling.
        host = _SNS_HOST.match(parts.netloc.lower())
        if parts.scheme != "https" or host is None:
            raise WebhookAuthError(f"not an SNS URL: {url[:200]!r}")
        if self.regions is not None and host["region"].lower() not in self.regions:
            raise WebhookAuthError(f"an SNS URL of a region not accepted: {url[:200]!r}")
        return url


_PRINTABLE = re.compile(r"^[!-\[\]-~]{1,2048}$")  # printable ASCII without space or backslash


def _ses_events(event: dict[str, Any], message_id: str) -> list[DeliveryEvent]:
    kind = event.get("eventType") or event.get("notificationType")
    mail = as_object(event.get("mail", {}))
    sender = as_text(mail.get("source", ""))
    when = dt.datetime.fromisoformat(as_text(mail.get("timestamp", "1970-01-01T00:00:00Z")))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    common: dict[str, Any] = {"provider": "ses", "timestamp": when, "sender": sender, "raw": event}
    # The same facts as SES JSON arriving by e-mail (sendguard's bounce reader): a Transient
    # bounce is a final soft failure, the Suppressed subtypes are SES's own verdict, and a
    # DeliveryDelay a deferral; the guard judges them alike whichever way they came.
    if kind == "Bounce":
        bounce = as_object(event["bounce"])
        permanent = bounce.get("bounceType") == "Permanent"
        listed = bounce.get("bounceSubType") in ("Suppressed", "OnAccountSuppressionList")
        found = [as_object(r) for r in as_list(bounce["bouncedRecipients"])]
        return [
            event_from(
                event_id=f"{message_id}:{as_text(r['emailAddress'])}",
                type="bounced",
                recipient=as_text(r["emailAddress"]),
                diagnostic=_after_type(as_text(r.get("diagnosticCode", ""))),
                permanent=permanent,
                reason="suppressed" if listed else None,
                **common,
            )
            for r in found
        ]
    if kind == "DeliveryDelay":
        delay = as_object(event["deliveryDelay"])
        found = [as_object(r) for r in as_list(delay["delayedRecipients"])]
        return [
            event_from(
                # A delay and the bounce that may follow are two events about one recipient.
                event_id=f"{message_id}:{as_text(r['emailAddress'])}:delay",
                type="deferred",
                recipient=as_text(r["emailAddress"]),
                diagnostic=_after_type(as_text(r.get("diagnosticCode", ""))),
                **common,
            )
            for r in found
        ]
    if kind == "Complaint":
        complaint = as_object(event["complaint"])
        found = [as_object(r) for r in as_list(complaint["complainedRecipients"])]
        return [
            event_from(
                event_id=f"{message_id}:{as_text(r['emailAddress'])}",
                type="complained",
                recipient=as_text(r["emailAddress"]),
                **common,
            )
            for r in found
        ]
    if kind == "Delivery":
        recipients = [as_text(r) for r in as_list(as_object(event["delivery"])["recipients"])]
        return [
            event_from(event_id=f"{message_id}:{r}", type="delivered", recipient=r, **common)
            for r in recipients
        ]
    return []


def _after_type(diagnostic: str) -> str:
    """An RFC 3464 diagnostic without its type, as the bounce reader stores SES JSON."""
    head, sep, rest = diagnostic.partition(";")
    if sep and re.fullmatch(r"\s*[\w.-]+\s*", head):
        return rest.strip()
    return diagnostic.strip()


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
