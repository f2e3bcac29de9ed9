"""sendguard-ses against an emulation of SES v2 SendEmail and of SNS-delivered SES events.

SNS messages are signed here as AWS signs them (the documented string to sign, SHA1withRSA
for SignatureVersion 1, SHA256withRSA for 2) with a certificate the test makes; the verifier
fetches it only from an sns.<region>.amazonaws.com https URL.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sendguard_ses import SESAdapter, SNSVerifier
from structlog.testing import capture_logs

from sendguard import (
    DeliveryStatus,
    Envelope,
    Guard,
    SyncGuard,
    WebhookAuthError,
    WebhookUnavailableError,
)
from sendguard.testing import AdapterConformance, FakeClock
from sendguard.webhooks import handle, handle_sync
from tests.conftest import guard_over, message

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
NOW = dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)  # when the test notifications are signed
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
CERT = (
    x509.CertificateBuilder()
    .subject_name(_name)
    .issuer_name(_name)
    .public_key(KEY.public_key())
    .serial_number(1)
    .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    .not_valid_after(dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    .sign(KEY, hashes.SHA256())
    .public_bytes(serialization.Encoding.PEM)
)


class SESAPI:
    def __init__(self) -> None:
        self.calls: list[httpx.Request] = []
        self.answers: list[httpx.Response] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v2/email/outbound-emails"
        self.calls.append(request)
        auth = request.headers.get("Authorization", "")
        if (
            not auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            or "/eu-west-1/ses/aws4_request" not in auth
        ):
            return httpx.Response(
                403, json={"message": "The request signature we calculated does not match"}
            )
        if self.answers:
            return self.answers.pop(0)
        return httpx.Response(200, json={"MessageId": "0102018c-example"})


@pytest.fixture
def api() -> SESAPI:
    return SESAPI()


@pytest.fixture
def guard(api: SESAPI, clock: FakeClock) -> Callable[..., Guard]:
    def make() -> Guard:
        adapter = SESAdapter(
            region="eu-west-1",
            access_key_id="AKIDEXAMPLE",
            secret_access_key="secret",
            endpoint_url="https://email.ses.test",
            transport=httpx.MockTransport(api.handle),
        )
        return guard_over(adapter, clock)

    return make


async def test_the_raw_message_goes_out_signed_by_botocore(
    api: SESAPI, guard: Callable[..., Guard]
) -> None:
    result = await guard().send(message("a@example.com", bcc="b@example.com"))
    assert result.accepted == ["a@example.com", "b@example.com"]
    (call,) = api.calls
    body = json.loads(call.content)
    assert body["Destination"]["ToAddresses"] == ["a@example.com", "b@example.com"]
    raw = base64.b64decode(body["Content"]["Raw"]["Data"])
    assert b"Subject: Hello" in raw
    assert b"Bcc:" not in raw
    assert "X-Amz-Date" in call.headers


@pytest.mark.parametrize(
    ("response", "status"),
    [
        (
            httpx.Response(
                429,
                headers={"x-amzn-ErrorType": "TooManyRequestsException"},
                json={"message": "Maximum sending rate exceeded."},
            ),
            {DeliveryStatus.PAUSED, DeliveryStatus.DEFERRED},
        ),
        (
            httpx.Response(
                400,
                headers={"x-amzn-ErrorType": "MessageRejected"},
                json={"message": "Email address is not verified."},
            ),
            {DeliveryStatus.REJECTED},
        ),
        (
            httpx.Response(
                400,
                headers={"x-amzn-ErrorType": "SendingPausedException"},
                json={"message": "Sending is paused for this account."},
            ),
            {DeliveryStatus.REJECTED},
        ),
    ],
)
async def test_errors(
    response: httpx.Response, status: set[DeliveryStatus], api: SESAPI, guard: Callable[..., Guard]
) -> None:
    api.answers = [response, response]
    g = guard()
    rr = (await g.send(message("a@example.com"))).recipients["a@example.com"]
    assert rr.status in status
    assert not rr.suppressed
    assert not await g.is_suppressed("a@example.com")


async def test_an_outage_is_temporary_but_not_a_rate_limit(
    api: SESAPI, guard: Callable[..., Guard]
) -> None:
    outage = httpx.Response(
        500, headers={"x-amzn-ErrorType": "InternalFailure"}, json={"message": "Internal error"}
    )
    limited = httpx.Response(
        429, headers={"x-amzn-ErrorType": "TooManyRequestsException"}, json={"message": "Slow"}
    )
    adapter = guard().adapter
    envelope = Envelope("news@shop.example", ("a@example.com",), message("a@example.com"), b"")
    api.answers = [outage, limited]
    down = (await adapter.deliver(envelope))["a@example.com"]
    slow = (await adapter.deliver(envelope))["a@example.com"]
    assert (down.code, down.reason) == (451, None)  # no reason to slow the sender down
    assert (slow.code, slow.reason) == (451, "ratelimited")
    await adapter.aclose()


def sns(
    kind: str,
    payload: dict[str, Any],
    *,
    version: str = "2",
    url: str = CERT_URL,
    topic: str = TOPIC,
    key: rsa.RSAPrivateKey = KEY,
    timestamp: object = "2026-11-01T09:00:00.000Z",
    subscribe_url: str = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok",
    message: str | None = None,
    message_id: str = "sns-1",
) -> str:
    envelope: dict[str, Any] = {
        "Type": kind,
        "MessageId": message_id,
        "TopicArn": topic,
        "Timestamp": timestamp,
        "SignatureVersion": version,
        "SigningCertURL": url,
    }
    if kind == "Notification":
        envelope["Message"] = json.dumps(payload) if message is None else message
        fields: tuple[str, ...] = (
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        )
    else:
        envelope.update(
            Message="You have chosen to subscribe",
            Token="tok",
            SubscribeURL=subscribe_url,
        )
        fields = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    text = "".join(f"{k}\n{envelope[k]}\n" for k in fields if k in envelope)
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 (SNS's v1)
    envelope["Signature"] = base64.b64encode(
        key.sign(text.encode(), padding.PKCS1v15(), digest)
    ).decode()
    return json.dumps(envelope)


BOUNCE = {
    "eventType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [
            {
                "emailAddress": "gone@example.com",
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            }
        ],
    },
    "mail": {
        "timestamp": "2026-11-01T08:59:00.000Z",
        "source": "news@shop.example",
        "messageId": "m1",
    },
}


class Fetcher:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return CERT if url.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_bounce_notification(version: str) -> None:
    fetch = Fetcher()
    verifier = SNSVerifier(topic_arns=[TOPIC], fetch=fetch, clock=lambda: NOW)
    (event,) = verifier.parse({}, sns("Notification", BOUNCE, version=version))
    assert (event.recipient, event.reason, event.hard, event.sender) == (
        "gone@example.com",
        "userunknown",
        True,
        "news@shop.example",
    )
    verifier.parse({}, sns("Notification", BOUNCE, version=version))
    assert fetch.urls == [CERT_URL]  # fetched once, then cached


def test_forgeries_are_refused_without_fetching_anything_foreign() -> None:
    fetch = Fetcher()
    verifier = SNSVerifier(topic_arns=[TOPIC], fetch=fetch, clock=lambda: NOW)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(WebhookAuthError, match="signature"):
        verifier.parse({}, sns("Notification", BOUNCE, key=other))
    with pytest.raises(WebhookAuthError, match="SNS URL"):
        verifier.parse({}, sns("Notification", BOUNCE, url="https://evil.example/cert.pem"))
    with pytest.raises(WebhookAuthError, match="SNS URL"):
        verifier.parse(
            {},
            sns(
                "Notification", BOUNCE, url="https://sns.eu-west-1.amazonaws.com.evil.example/c.pem"
            ),
        )
    with pytest.raises(WebhookAuthError, match="topic"):
        verifier.parse({}, sns("Notification", BOUNCE, topic="arn:aws:sns:eu-west-1:999:other"))
    tampered = json.loads(sns("Notification", BOUNCE))
    tampered["Message"] = tampered["Message"].replace("gone@", "victim@")
    with pytest.raises(WebhookAuthError, match="signature"):
        verifier.parse({}, json.dumps(tampered))
    for junk in (b"", b"{}", b'{"Type": "Notification"}'):
        with pytest.raises(WebhookAuthError):
            verifier.parse({}, junk)
    assert all(url == CERT_URL for url in fetch.urls)


def test_a_subscription_is_confirmed_once_verified() -> None:
    fetch = Fetcher()
    verifier = SNSVerifier(topic_arns=[TOPIC], fetch=fetch, clock=lambda: NOW)
    assert verifier.parse({}, sns("SubscriptionConfirmation", {})) == []
    assert fetch.urls[-1].startswith(
        "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
    )


async def test_events_reach_the_list(make_guard: Callable[..., Guard]) -> None:
    g = make_guard()
    verifier = SNSVerifier(topic_arns=[TOPIC], fetch=Fetcher(), clock=lambda: NOW)
    complaint = {
        "eventType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "angry@example.com"}]},
        "mail": BOUNCE["mail"],
    }
    for payload in (BOUNCE, complaint):
        await g.ingest_events(verifier.parse({}, sns("Notification", payload)))
    assert await g.is_suppressed("gone@example.com")
    assert await g.is_suppressed("angry@example.com")


class TestSESConformance(AdapterConformance):
    def make_adapter(self, behaviour: str) -> SESAdapter:
        api = SESAPI()
        if behaviour == "throttle":
            api.answers = [
                httpx.Response(
                    429,
                    headers={"x-amzn-ErrorType": "TooManyRequestsException"},
                    json={"message": "Maximum sending rate exceeded."},
                )
            ]
        elif behaviour == "refuse":
            api.answers = [
                httpx.Response(
                    400,
                    headers={"x-amzn-ErrorType": "MessageRejected"},
                    json={"message": "Email address is not verified."},
                )
            ]
        return SESAdapter(
            region="eu-west-1",
            access_key_id="AKIDEXAMPLE",
            secret_access_key="s",
            endpoint_url="https://email.ses.test",
            transport=httpx.MockTransport(api.handle),
        )

    def webhook(self, *, genuine: bool) -> tuple[dict[str, str], bytes]:
        bounce = json.loads(json.dumps(BOUNCE))
        bounce["bounce"]["bouncedRecipients"][0]["emailAddress"] = "bounced@example.com"
        key = KEY if genuine else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return {}, sns("Notification", bounce, key=key).encode()

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Any]:
        return SNSVerifier(topic_arns=[TOPIC], fetch=Fetcher(), clock=lambda: NOW).parse(
            headers, body
        )


def test_the_module_level_parser_refuses_an_unknown_topic_before_fetching() -> None:
    from sendguard_ses import parse_webhook  # noqa: PLC0415

    with pytest.raises(WebhookAuthError, match="topic"):
        parse_webhook(
            {}, sns("Notification", BOUNCE, topic="arn:aws:sns:eu-west-1:9:x"), topic_arns=[TOPIC]
        )


def verifier(fetch: Fetcher, **options: Any) -> SNSVerifier:
    return SNSVerifier(topic_arns=[TOPIC], fetch=fetch, clock=lambda: NOW, **options)


def at(delta: dt.timedelta) -> str:
    return (NOW + delta).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    "timestamp",
    [
        "2019-03-01T12:00:00.000Z",  # the notification of issue 12
        at(-dt.timedelta(hours=1, seconds=1)),
        at(-dt.timedelta(days=3)),
        at(dt.timedelta(minutes=5, seconds=1)),  # from the future beyond the skew
        at(dt.timedelta(days=400)),
        "2026-11-01T09:00:00",  # no zone
        "2026-11-01",
        "yesterday",
        "",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        1793523600,
        None,
        [],
        {"t": 1},
        True,
    ],
)
@pytest.mark.parametrize("kind", ["Notification", "SubscriptionConfirmation"])
def test_an_old_future_or_unreadable_timestamp_is_refused_before_fetching(
    timestamp: object, kind: str
) -> None:
    fetch = Fetcher()
    with pytest.raises(WebhookAuthError, match=r"Timestamp|stale|zone"):
        verifier(fetch).parse({}, sns(kind, BOUNCE, timestamp=timestamp))
    assert fetch.urls == []


@pytest.mark.parametrize(
    "delta", [dt.timedelta(0), -dt.timedelta(minutes=59), dt.timedelta(minutes=4)]
)
def test_a_timestamp_inside_the_window_is_taken(delta: dt.timedelta) -> None:
    (event,) = verifier(Fetcher()).parse({}, sns("Notification", BOUNCE, timestamp=at(delta)))
    assert event.hard
    shorter = verifier(Fetcher(), max_age=dt.timedelta(minutes=10))
    if delta < -dt.timedelta(minutes=10):
        with pytest.raises(WebhookAuthError, match="stale"):
            shorter.parse({}, sns("Notification", BOUNCE, timestamp=at(delta)))


def test_a_tampered_timestamp_breaks_the_signature() -> None:
    body = json.loads(sns("Notification", BOUNCE, timestamp="2019-03-01T12:00:00.000Z"))
    body["Timestamp"] = "2026-11-01T09:00:00.000Z"  # made fresh after signing
    with pytest.raises(WebhookAuthError, match="signature"):
        verifier(Fetcher()).parse({}, json.dumps(body))


FOREIGN_HOSTS = [
    "https://sns.s3.amazonaws.com/SimpleNotificationService-0000.pem",  # the bucket "sns"
    "https://sns.s3-external-1.amazonaws.com/c.pem",
    "https://sns.s3-eu-west-1.amazonaws.com/c.pem",
    "https://sns.s3.eu-west-1.amazonaws.com/c.pem",
    "https://sns.s3-website-eu-west-1.amazonaws.com/c.pem",
    "https://sns.execute-api.amazonaws.com/c.pem",
    "https://sns.xx.amazonaws.com/c.pem",
    "https://sns.eu-west-1.amazonaws.com.evil.example/c.pem",
    "https://sns.eu-west-1.amazonaws.com./c.pem",
    "https://evil.sns.eu-west-1.amazonaws.com/c.pem",
    "https://sns-eu-west-1.amazonaws.com/c.pem",
    "https://sns.eu-west-1.amazonaws.co/c.pem",
    "https://sns.eu-west-1.amazonaws.cn/c.pem",
    "http://sns.eu-west-1.amazonaws.com/c.pem",
    "ftp://sns.eu-west-1.amazonaws.com/c.pem",
    "//sns.eu-west-1.amazonaws.com/c.pem",
    "https://sns.eu-west-1.amazonaws.com:8443/c.pem",
    "https://sns.eu-west-1.amazonaws.com:443/c.pem",
    "https://user@sns.eu-west-1.amazonaws.com/c.pem",
    "https://sns.eu-west-1.amazonaws.com@evil.example/c.pem",
    "https://evil.example\\@sns.eu-west-1.amazonaws.com/c.pem",
    "https://evil.example#@sns.eu-west-1.amazonaws.com/c.pem",
    "https://sns.eu-west-1.amazonaws.com /c.pem",
    "https://sns.eu-west-1.amazonaws.com\tevil/c.pem",
    "https://sns.eu-west-1.\u0430mazonaws.com/c.pem",
    "https://sns.eu-west-1.amazonaws.com/c.txt",
    "https://sns.eu-west-1.amazonaws.com/",
    "",
]


@pytest.mark.parametrize("url", FOREIGN_HOSTS)
def test_a_certificate_from_anywhere_but_sns_is_never_fetched(url: str) -> None:
    fetch = Fetcher()
    with pytest.raises(WebhookAuthError, match=r"SNS URL|pem"):
        verifier(fetch).parse({}, sns("Notification", BOUNCE, url=url))
    assert fetch.urls == []


@pytest.mark.parametrize("url", FOREIGN_HOSTS[:24])
def test_a_subscription_is_never_confirmed_anywhere_but_sns(url: str) -> None:
    fetch = Fetcher()
    with pytest.raises(WebhookAuthError, match="SNS URL"):
        verifier(fetch).parse({}, sns("SubscriptionConfirmation", {}, subscribe_url=url))
    assert fetch.urls == [CERT_URL]  # the certificate, never the foreign URL


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.ap-southeast-2.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.cn-northwest-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
        "https://SNS.EU-WEST-1.AMAZONAWS.COM/SimpleNotificationService-1.pem",
    ],
)
def test_sns_certificates_of_every_partition_are_taken(url: str) -> None:
    fetch = Fetcher()
    (event,) = verifier(fetch).parse({}, sns("Notification", BOUNCE, url=url))
    assert event.hard
    assert fetch.urls == [url]


def test_regions_pin_the_certificate_host_further() -> None:
    fetch = Fetcher()
    pinned = verifier(fetch, regions=["eu-west-1"])
    assert pinned.parse({}, sns("Notification", BOUNCE))
    other = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem"
    with pytest.raises(WebhookAuthError, match="region"):
        pinned.parse({}, sns("Notification", BOUNCE, url=other))
    assert fetch.urls == [CERT_URL]
    with pytest.raises(ValueError, match="region"):
        verifier(fetch, regions=[])


class FakeSNS:
    """SNS over an httpx MockTransport: the certificate, and a SubscribeURL answered as told."""

    def __init__(self, confirm: httpx.Response | Exception) -> None:
        self.confirm = confirm
        self.urls: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        if request.url.path.endswith(".pem"):
            return httpx.Response(200, content=CERT)
        if isinstance(self.confirm, Exception):
            raise self.confirm
        return self.confirm


def over(sns_: FakeSNS) -> SNSVerifier:
    return SNSVerifier(
        topic_arns=[TOPIC], transport=httpx.MockTransport(sns_.handle), clock=lambda: NOW
    )


UNCONFIRMED = [
    httpx.Response(500, text="<Error>InternalFailure</Error>"),
    httpx.Response(503),
    httpx.Response(404),
    httpx.Response(302, headers={"Location": "https://evil.example/"}),  # never followed
    httpx.ConnectError("[Errno 111] Connection refused"),
    httpx.ReadTimeout("timed out"),
]


@pytest.mark.parametrize("answer", UNCONFIRMED, ids=repr)
async def test_a_subscription_sns_does_not_confirm_is_a_503_and_sent_again(
    answer: httpx.Response | Exception,
) -> None:
    fake = FakeSNS(answer)
    verifier = over(fake)
    with pytest.raises(WebhookUnavailableError, match="not confirmed") as info:
        verifier.parse({}, sns("SubscriptionConfirmation", {}))
    assert isinstance(info.value.__cause__, httpx.HTTPError)
    confirmation = sns("SubscriptionConfirmation", {}).encode()
    with capture_logs() as logs:
        answered = await handle(Guard(), verifier.parse, {}, confirmation)
    assert answered == (503, "not done, send again\n")
    assert [e["event"] for e in logs] == ["sendguard.webhook_unavailable"]
    assert all(url.startswith("https://sns.eu-west-1.amazonaws.com/") for url in fake.urls)
    fake.confirm = httpx.Response(200, text="<ConfirmSubscriptionResponse/>")  # SNS's retry
    assert await handle(Guard(), verifier.parse, {}, confirmation) == (200, "ok 0 of 0\n")


def test_an_injected_fetch_that_cannot_reach_sns_is_unavailable_too() -> None:
    class Unreachable(Fetcher):
        def __call__(self, url: str) -> bytes:
            if not url.endswith(".pem"):
                raise httpx.ConnectError("[Errno 101] Network is unreachable")
            return super().__call__(url)

    with SyncGuard() as guard:
        answer = handle_sync(
            guard, verifier(Unreachable()).parse, {}, sns("SubscriptionConfirmation", {}).encode()
        )
    assert answer == (503, "not done, send again\n")


def test_fetch_and_transport_are_one_or_the_other() -> None:
    with pytest.raises(ValueError, match="fetch= or transport="):
        SNSVerifier(
            topic_arns=[TOPIC],
            fetch=Fetcher(),
            transport=httpx.MockTransport(FakeSNS(httpx.Response(200)).handle),
        )
