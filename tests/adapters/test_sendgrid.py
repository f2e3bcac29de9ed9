"""sendguard-sendgrid against an emulation of SendGrid's v3 mail/send and its signed webhook.

Per SendGrid's documentation: ``POST /v3/mail/send`` with a Bearer key answers 202 (empty
body), 400 ``{"errors": [{"message", "field"}]}``, 401 for a bad key, 429 when rate limited; the
signed event webhook signs ``timestamp + body`` with ECDSA P-256/SHA-256 and sends the base64
signature and the timestamp in the X-Twilio-Email-Event-Webhook-* headers.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendguard_sendgrid import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SendGridAdapter,
    parse_webhook,
)

from sendguard import DeliveryStatus, Guard, WebhookAuthError
from sendguard.testing import AdapterConformance, FakeClock
from tests.conftest import guard_over, message

KEY = "SG.test-key"
PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = base64.b64encode(
    PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
NOW = dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)


# SendGrid's documented reserved header keys: a request that sets one is refused with a 400.
RESERVED = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type"}
RESERVED |= {"content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc"}


class SendGridAPI:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, Any]]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v3/mail/send"
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return httpx.Response(
                401, json={"errors": [{"message": "The provided authorization grant is invalid"}]}
            )
        if self.answers:
            status, body = self.answers.pop(0)
            return httpx.Response(status, json=body)
        sent = json.loads(request.content)
        if RESERVED & {k.lower() for k in sent.get("headers", {})}:
            refused = {"message": "Header can not be one of the reserved keys.", "field": "headers"}
            return httpx.Response(400, json={"errors": [refused]})
        self.bodies.append(sent)
        return httpx.Response(202)


@pytest.fixture
def api() -> SendGridAPI:
    return SendGridAPI()


@pytest.fixture
def guard(api: SendGridAPI, clock: FakeClock) -> Callable[..., Guard]:
    def make(key: str = KEY) -> Guard:
        adapter = SendGridAdapter(
            api_key=key, base_url="https://sendgrid.test", transport=httpx.MockTransport(api.handle)
        )
        return guard_over(adapter, clock)

    return make


async def test_one_call_with_to_cc_bcc(api: SendGridAPI, guard: Callable[..., Guard]) -> None:
    result = await guard().send(message("a@example.com", cc="b@example.com", bcc="c@example.com"))
    assert result.accepted == ["a@example.com", "b@example.com", "c@example.com"]
    (body,) = api.bodies
    (p,) = body["personalizations"]
    assert (p["to"], p["cc"], p["bcc"]) == (
        [{"email": "a@example.com"}],
        [{"email": "b@example.com"}],
        [{"email": "c@example.com"}],
    )
    assert body["content"] == [{"type": "text/plain", "value": "Hi there.\n"}]
    assert body["from"] == {"email": "news@sender.example"}


@pytest.mark.parametrize(
    ("reply_to", "fields"),
    [
        ("Help <help@shop.example>", {"reply_to": {"email": "help@shop.example", "name": "Help"}}),
        (
            "a@shop.example, b@shop.example",
            {"reply_to_list": [{"email": "a@shop.example"}, {"email": "b@shop.example"}]},
        ),
    ],
)
async def test_reply_to_is_a_field_not_a_header(
    api: SendGridAPI, guard: Callable[..., Guard], reply_to: str, fields: dict[str, Any]
) -> None:
    msg = message("a@example.com")
    msg["Reply-To"] = reply_to
    msg["X-Campaign"] = "winter"
    result = await guard().send(msg)
    assert result.accepted == ["a@example.com"]
    (body,) = api.bodies
    assert {k: body[k] for k in fields} == fields
    assert body["headers"] == {"X-Campaign": "winter"}


async def test_errors_map_to_fail_temporary_and_auth(
    api: SendGridAPI, guard: Callable[..., Guard]
) -> None:
    api.answers = [(400, {"errors": [{"message": "The subject is required.", "field": "subject"}]})]
    g = guard()
    rr = (await g.send(message("a@example.com"))).recipients["a@example.com"]
    assert (rr.status, rr.suppressed) == (DeliveryStatus.REJECTED, False)
    assert "subject is required" in rr.detail
    api.answers = [(500, {"errors": []})] * 2
    rr = (await g.send(message("a@example.com"))).recipients["a@example.com"]
    assert rr.status is DeliveryStatus.DEFERRED
    rr = (await guard(key="SG.wrong").send(message("a@example.com"))).recipients["a@example.com"]
    assert not rr.suppressed
    assert not await g.is_suppressed("a@example.com")


def sign(body: bytes, timestamp: str, key: ec.EllipticCurvePrivateKey = PRIVATE) -> dict[str, str]:
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: timestamp}


EVENTS = [
    {
        "email": "gone@example.com",
        "timestamp": int(NOW.timestamp()),
        "event": "bounce",
        "type": "bounce",
        "status": "5.1.1",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
        "sg_event_id": "ev-1",
        "sg_message_id": "m1",
    },
    {
        "email": "fine@example.com",
        "timestamp": int(NOW.timestamp()),
        "event": "bounce",
        "type": "blocked",
        "status": "5.7.1",
        "reason": "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org",
        "sg_event_id": "ev-2",
        "sg_message_id": "m1",
    },
    {
        "email": "angry@example.com",
        "timestamp": int(NOW.timestamp()),
        "event": "spamreport",
        "sg_event_id": "ev-3",
        "sg_message_id": "m1",
    },
    {
        "email": "listed@example.com",
        "timestamp": int(NOW.timestamp()),
        "event": "dropped",
        "reason": "Bounced Address",
        "sg_event_id": "ev-4",
        "sg_message_id": "m1",
    },
    {
        "email": "a@example.com",
        "timestamp": int(NOW.timestamp()),
        "event": "open",
        "sg_event_id": "ev-5",
    },
]


def parse(headers: dict[str, str], body: bytes, **options: Any) -> Any:
    return parse_webhook(headers, body, public_key=PUBLIC, clock=lambda: NOW, **options)


def test_a_signed_batch_is_read() -> None:
    body = json.dumps(EVENTS).encode()
    events = parse(sign(body, str(int(NOW.timestamp()))), body)
    assert [(e.recipient, e.type, e.reason, e.hard) for e in events] == [
        ("gone@example.com", "bounced", "userunknown", True),
        ("fine@example.com", "bounced", "blocked", False),
        ("angry@example.com", "complained", "feedback", False),
        ("listed@example.com", "bounced", "suppressed", True),
    ]


def test_tampered_forged_and_stale_requests_are_refused() -> None:
    body = json.dumps(EVENTS).encode()
    now = str(int(NOW.timestamp()))
    with pytest.raises(WebhookAuthError, match="signature"):
        parse(sign(body, now), body.replace(b"gone@", b"victim@"))
    with pytest.raises(WebhookAuthError, match="signature"):
        parse(sign(body, now, key=ec.generate_private_key(ec.SECP256R1())), body)
    old = str(int(NOW.timestamp()) - 3600)
    with pytest.raises(WebhookAuthError, match="stale"):
        parse(sign(body, old), body)
    with pytest.raises(WebhookAuthError):
        parse({}, body)
    with pytest.raises(WebhookAuthError):
        parse({SIGNATURE_HEADER: "!!", TIMESTAMP_HEADER: now}, body)
    junk = b'{"not": "a list"}'
    with pytest.raises(WebhookAuthError):
        parse(sign(junk, now), junk)


async def test_the_events_reach_the_list_once(make_guard: Callable[..., Guard]) -> None:
    g = make_guard()
    body = json.dumps(EVENTS).encode()
    events = parse(sign(body, str(int(NOW.timestamp()))), body)
    first = await g.ingest_events(events)
    again = await g.ingest_events(events)  # SendGrid re-sends
    assert [e.suppressed for e in first] == [True, False, True, True]
    assert not any(e.ingested for e in again)
    assert not await g.is_suppressed("fine@example.com")


class TestSendGridConformance(AdapterConformance):
    def make_adapter(self, behaviour: str) -> SendGridAdapter:
        api = SendGridAPI()
        if behaviour == "throttle":
            api.answers = [(429, {"errors": [{"message": "too many requests"}]})]
        elif behaviour == "refuse":
            api.answers = [(400, {"errors": [{"message": "The subject is required."}]})]
        return SendGridAdapter(api_key=KEY, transport=httpx.MockTransport(api.handle))

    def webhook(self, *, genuine: bool) -> tuple[dict[str, str], bytes]:
        body = json.dumps([{**EVENTS[0], "email": "bounced@example.com"}]).encode()
        key = PRIVATE if genuine else ec.generate_private_key(ec.SECP256R1())
        return sign(body, str(int(NOW.timestamp())), key=key), body

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Any]:
        return list(parse(dict(headers), body))
