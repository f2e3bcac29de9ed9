"""sendguard-mailgun against an emulation of Mailgun's messages.mime endpoint and webhooks.

Per Mailgun's documentation: ``POST /v3/<domain>/messages.mime`` with basic auth ("api", key)
answers 200 ``{"id", "message": "Queued. Thank you."}``, 400 for a bad request, 401 for a bad
key, 429 when rate limited; webhooks carry ``signature`` {timestamp, token, signature =
HMAC-SHA256(signing key, timestamp + token), hex} and ``event-data``.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from sendguard_mailgun import MailgunAdapter, WebhookVerifier

from sendguard import (
    DeliveryStatus,
    Guard,
    MemoryStore,
    Outcome,
    Settled,
    Store,
    StoreError,
    WebhookAuthError,
)
from sendguard.testing import AdapterConformance, FakeClock
from sendguard.webhooks import handle
from tests.conftest import guard_over, message

KEY = "key-123"
SIGNING = "signing-key-abc"


class MailgunAPI:
    def __init__(self) -> None:
        self.posts: list[tuple[list[str], bytes]] = []
        self.answers: list[tuple[int, dict[str, Any]]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v3/mg.shop.example/messages.mime"
        expected = "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return httpx.Response(401, text="Forbidden")
        if self.answers:
            status, body = self.answers.pop(0)
            return httpx.Response(status, json=body)
        content = request.content
        to = [
            part.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[0].decode()
            for part in content.split(b"--")
            if b'name="to"' in part
        ]
        self.posts.append((to, content))
        return httpx.Response(
            200, json={"id": "<20261101.1@mg.shop.example>", "message": "Queued. Thank you."}
        )


@pytest.fixture
def api() -> MailgunAPI:
    return MailgunAPI()


@pytest.fixture
def guard(api: MailgunAPI, clock: FakeClock) -> Callable[..., Guard]:
    def make(key: str = KEY) -> Guard:
        adapter = MailgunAdapter(
            api_key=key,
            domain="mg.shop.example",
            base_url="https://api.eu.mailgun.test",
            transport=httpx.MockTransport(api.handle),
        )
        return guard_over(adapter, clock)

    return make


async def test_the_exact_message_goes_out_with_the_envelope_recipients(
    api: MailgunAPI, guard: Callable[..., Guard]
) -> None:
    result = await guard().send(message("a@example.com", bcc="b@example.com"))
    assert result.accepted == ["a@example.com", "b@example.com"]
    ((to, content),) = api.posts
    assert to == ["a@example.com", "b@example.com"]
    assert b"Bcc:" not in content  # never transmitted
    assert b"Subject: Hello" in content


@pytest.mark.parametrize(
    ("status", "final"), [(429, DeliveryStatus.PAUSED), (503, DeliveryStatus.DEFERRED)]
)
async def test_load_answers_are_temporary(
    status: int, final: DeliveryStatus, api: MailgunAPI, guard: Callable[..., Guard]
) -> None:
    api.answers = [(status, {"message": "slow down"})] * 2
    g = guard()
    rr = (await g.send(message("a@example.com"))).recipients["a@example.com"]
    assert rr.status is final
    assert not await g.is_suppressed("a@example.com")


async def test_a_bad_request_fails_the_message_and_a_bad_key_suppresses_nobody(
    api: MailgunAPI, guard: Callable[..., Guard]
) -> None:
    api.answers = [(400, {"message": "'from' parameter is not a valid address"})]
    rr = (await guard().send(message("a@example.com"))).recipients["a@example.com"]
    assert (rr.status, rr.suppressed) == (DeliveryStatus.REJECTED, False)
    g = guard(key="wrong")
    rr = (await g.send(message("a@example.com"))).recipients["a@example.com"]
    assert not rr.suppressed
    assert not await g.is_suppressed("a@example.com")


NOW = dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)


def signed(
    event_data: dict[str, Any], *, key: str = SIGNING, age: int = 0, token: str = "tok-1"
) -> str:
    timestamp = str(int(NOW.timestamp()) - age)
    sig = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": timestamp, "token": token, "signature": sig},
            "event-data": event_data,
        }
    )


FAILED = {
    "event": "failed",
    "id": "ev-1",
    "severity": "permanent",
    "reason": "bounce",
    "recipient": "gone@example.com",
    "timestamp": NOW.timestamp(),
    "delivery-status": {
        "code": 550,
        "message": "5.1.1 The email account that you tried to reach does not exist",
    },
    "message": {
        "headers": {"from": "news@shop.example", "message-id": "20261101.1@mg.shop.example"}
    },
}


def verifier(**options: Any) -> WebhookVerifier:
    return WebhookVerifier(signing_keys=[SIGNING, "old-key"], clock=lambda: NOW, **options)


def test_a_signed_permanent_failure_is_a_hard_bounce() -> None:
    (event,) = verifier().parse({}, signed(FAILED))
    assert (event.type, event.recipient, event.reason, event.hard) == (
        "bounced",
        "gone@example.com",
        "userunknown",
        True,
    )
    (old,) = verifier().parse({}, signed(FAILED, key="old-key"))
    assert old.hard


def test_mailguns_own_suppression_is_suppressed_and_temporary_failures_are_deferred() -> None:
    listed = {
        **FAILED,
        "reason": "suppress-bounce",
        "delivery-status": {"message": "Not delivering to previously bounced address"},
    }
    (event,) = verifier().parse({}, signed(listed))
    assert (event.reason, event.hard) == ("suppressed", True)
    temporary = {
        **FAILED,
        "severity": "temporary",
        "delivery-status": {"code": 452, "message": "4.2.2 Mailbox full"},
    }
    (later,) = verifier().parse({}, signed(temporary, token="tok-2"))
    assert (later.type, later.hard) == ("deferred", False)


def test_forged_and_stale_webhooks_are_refused() -> None:
    v = verifier()
    with pytest.raises(WebhookAuthError, match="signature"):
        v.parse({}, signed(FAILED, key="guessed"))
    with pytest.raises(WebhookAuthError, match="stale"):
        v.parse({}, signed(FAILED, age=3600, token="tok-old"))
    with pytest.raises(WebhookAuthError, match="stale"):
        v.parse({}, signed(FAILED, age=-3600, token="tok-future"))
    for junk in (b"", b"[]", b'{"signature": {}}'):
        with pytest.raises(WebhookAuthError):
            v.parse({}, junk)


def tampered(body: str, **changes: Any) -> str:
    """*body* with its event data changed after signing: the signature still verifies."""
    payload = json.loads(body)
    payload["event-data"].update(changes)
    return json.dumps(payload)


REPLAYS = [
    {"recipient": "victim@example.com"},
    {"recipient": "victim@example.com", "id": "ev-forged"},
    {"id": "ev-forged"},
    {"recipient": "victim@example.com", "id": "ev-2", "event": "complained"},
    {"recipient": "Victim@Example.com", "id": "EV-1"},
    {"recipient": "victim@example.com", "severity": "temporary", "id": "ev-soft"},
]


async def ingest(store: Store, body: str) -> tuple[int, str, Guard]:
    """One webhook request through a guard of its own, as another process would run it."""
    guard = Guard(store=store, clock=lambda: NOW)
    answer = await handle(guard, verifier().parse, {}, body.encode())
    return answer.status, answer.body, guard


async def test_a_replayed_token_changes_nothing_in_any_guard_sharing_the_store(
    reopen: Callable[[], Store],
) -> None:
    captured = signed(FAILED, token="tok-captured")
    assert (await ingest(reopen(), captured))[:2] == (200, "ok 1 of 1\n")
    second = reopen()  # another worker: its own guard, verifier and store connection
    for changes in REPLAYS:
        status, text, guard = await ingest(second, tampered(captured, **changes))
        assert (status, text) == (200, "ok 0 of 1\n"), changes
        assert not await guard.is_suppressed("victim@example.com")
    # Mailgun's own retry of the request (its 200 was lost): acknowledged, nothing twice.
    assert (await ingest(second, captured))[:2] == (200, "ok 0 of 1\n")
    await second.aclose()
    restarted = reopen()
    for changes in REPLAYS:
        status, text, guard = await ingest(restarted, tampered(captured, **changes))
        assert (status, text) == (200, "ok 0 of 1\n"), changes
    assert not await guard.is_suppressed("victim@example.com")
    assert await guard.is_suppressed("gone@example.com")
    # A new token is a new request.
    fresh = signed({**FAILED, "id": "ev-9", "recipient": "other@example.com"}, token="tok-new")
    assert (await ingest(restarted, fresh))[:2] == (200, "ok 1 of 1\n")


@pytest.mark.parametrize(
    "kind", ["opened", "clicked", "accepted", "stored", "list_member_uploaded"]
)
async def test_the_token_of_an_event_the_guard_does_not_use_is_spent_too(
    reopen: Callable[[], Store], kind: str
) -> None:
    captured = signed({**FAILED, "event": kind, "recipient": "reader@example.com"}, token="t")
    (event,) = verifier().parse({}, captured)
    assert (event.type, event.nonce) == ("other", "mailgun-token:t")
    assert (await ingest(reopen(), captured))[:2] == (200, "ok 1 of 1\n")
    forged = tampered(captured, event="failed", recipient="victim@example.com", id="ev-x")
    status, _, guard = await ingest(reopen(), forged)
    assert status == 200
    assert not await guard.is_suppressed("victim@example.com")


class FailsOnce(MemoryStore):
    """A store that cannot record the first outcome it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def settle(self, outcome: Outcome) -> Settled:
        if not self.failed:
            self.failed = True
            raise StoreError("down for a moment")
        return await super().settle(outcome)


async def test_a_request_that_was_not_stored_is_taken_when_mailgun_sends_it_again() -> None:
    """The token is spent with the event, not before: a 503 leaves it for the retry."""
    guard = Guard(store=FailsOnce(), clock=lambda: NOW)
    v = verifier()
    body = signed(FAILED, token="tok-retried").encode()
    assert (await handle(guard, v.parse, {}, body)).status == 503
    assert not await guard.is_suppressed("gone@example.com")
    assert await handle(guard, v.parse, {}, body) == (200, "ok 1 of 1\n")
    assert await guard.is_suppressed("gone@example.com")


async def test_complaints_and_bounces_reach_the_list(make_guard: Callable[..., Guard]) -> None:
    g = make_guard()
    v = verifier()
    complaint = {**FAILED, "event": "complained", "id": "ev-2", "recipient": "angry@example.com"}
    for token, data in (("t1", FAILED), ("t2", complaint)):
        await g.ingest_events(v.parse({}, signed(data, token=token)))
    assert await g.is_suppressed("gone@example.com")
    entry = await g.suppression("angry@example.com")
    assert entry is not None
    assert (entry.reason, entry.source) == ("feedback", "mailgun:webhook")


class TestMailgunConformance(AdapterConformance):
    def make_adapter(self, behaviour: str) -> MailgunAdapter:
        api = MailgunAPI()
        if behaviour == "throttle":
            api.answers = [(429, {"message": "Too many requests"})]
        elif behaviour == "refuse":
            api.answers = [(400, {"message": "'to' parameter is not a valid address"})]
        return MailgunAdapter(
            api_key=KEY, domain="mg.shop.example", transport=httpx.MockTransport(api.handle)
        )

    def webhook(self, *, genuine: bool) -> tuple[dict[str, str], bytes]:
        data = {**FAILED, "recipient": "bounced@example.com"}
        return {}, signed(data, key=SIGNING if genuine else "forged", token="conf").encode()

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Any]:
        return verifier().parse(headers, body)


async def test_the_module_level_parser_gives_each_event_its_token() -> None:
    from sendguard_mailgun import parse_webhook  # noqa: PLC0415

    timestamp = str(int(dt.datetime.now(dt.UTC).timestamp()))
    sig = hmac.new(SIGNING.encode(), (timestamp + "once").encode(), hashlib.sha256).hexdigest()
    body = json.dumps(
        {
            "signature": {"timestamp": timestamp, "token": "once", "signature": sig},
            "event-data": FAILED,
        }
    )
    (event,) = parse_webhook({}, body, signing_keys=SIGNING)
    assert (event.hard, event.nonce) == (True, "mailgun-token:once")
    guard = Guard()
    verify = functools.partial(parse_webhook, signing_keys=SIGNING)
    assert await handle(guard, verify, {}, body.encode()) == (200, "ok 1 of 1\n")
    replay = tampered(body, recipient="victim@example.com", id="ev-other")
    assert await handle(guard, verify, {}, replay.encode()) == (200, "ok 0 of 1\n")
    assert not await guard.is_suppressed("victim@example.com")
