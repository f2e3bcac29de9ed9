"""sendguard-postmark against a local emulation of Postmark's API and webhook formats.

The responses and records follow Postmark's documentation: ``POST /email`` answers 200 with
``ErrorCode: 0``; 422 with ``ErrorCode`` 406 (inactive recipient) or 300 (invalid request);
401 with ``ErrorCode`` 10 (bad server token); 429 and 5xx under load.  Webhooks post Bounce,
SpamComplaint and Delivery records, authenticated by basic auth in the webhook URL.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from sendguard_postmark import PostmarkAdapter, parse_webhook

from sendguard import DeliveryStatus, Guard, RetryPolicy, WebhookAuthError
from sendguard.testing import AdapterConformance, FakeClock
from tests.conftest import message

TOKEN = "server-token-1"


class PostmarkAPI:
    """What Postmark's /email endpoint does, scripted per test."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.inactive: set[str] = set()
        self.status: list[tuple[int, dict[str, Any]]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/email"
        if request.headers.get("X-Postmark-Server-Token") != TOKEN:
            return httpx.Response(
                401, json={"ErrorCode": 10, "Message": "Bad or missing Server API token."}
            )
        body = json.loads(request.content)
        self.requests.append(body)
        if self.status:
            status, answer = self.status.pop(0)
            return httpx.Response(status, json=answer)
        everyone = [
            a.strip() for f in ("To", "Cc", "Bcc") for a in body.get(f, "").split(",") if a.strip()
        ]
        inactive = [a for a in everyone if a in self.inactive]
        if inactive:
            text = (
                "You tried to send to recipient(s) that have been marked as inactive. Found "
                f"inactive addresses: {', '.join(inactive)}. Inactive recipients are ones that "
                "have generated a hard bounce, a spam complaint, or a manual suppression."
            )
            return httpx.Response(422, json={"ErrorCode": 406, "Message": text})
        if not body.get("Subject"):
            return httpx.Response(422, json={"ErrorCode": 300, "Message": "Invalid email request"})
        return httpx.Response(
            200,
            json={
                "To": body["To"],
                "SubmittedAt": "2026-11-01T09:00:00Z",
                "MessageID": "0a129aee-e1cd-480d-b08d-4f48548ff48d",
                "ErrorCode": 0,
                "Message": "OK",
            },
        )


@pytest.fixture
def api() -> PostmarkAPI:
    return PostmarkAPI()


@pytest.fixture
def guard(api: PostmarkAPI, clock: FakeClock) -> Callable[..., Guard]:
    def make(token: str = TOKEN, **options: Any) -> Guard:
        adapter = PostmarkAdapter(
            server_token=token,
            base_url="https://postmark.test",
            transport=httpx.MockTransport(api.handle),
        )
        options.setdefault("retry", RetryPolicy(attempts=2, initial_wait=1, jitter=0))
        return Guard(adapter=adapter, clock=clock, sleep=clock.sleep, **options)

    return make


async def test_a_send_is_one_api_call_with_bcc_kept_out_of_the_headers(
    api: PostmarkAPI, guard: Callable[..., Guard]
) -> None:
    result = await guard().send(message("a@example.com", cc="b@example.com", bcc="c@example.com"))
    assert result.accepted == ["a@example.com", "b@example.com", "c@example.com"]
    (body,) = api.requests
    assert (body["To"], body["Cc"], body["Bcc"]) == (
        "a@example.com",
        "b@example.com",
        "c@example.com",
    )
    assert body["TextBody"] == "Hi there.\n"
    assert body["MessageStream"] == "outbound"
    assert all(h["Name"].lower() != "bcc" for h in body["Headers"])


async def test_an_inactive_recipient_is_suppressed_and_the_rest_sent_after(
    api: PostmarkAPI, guard: Callable[..., Guard]
) -> None:
    api.inactive.add("gone@example.com")
    g = guard()
    result = await g.send(message(["ok@example.com", "gone@example.com"]))
    gone = result.recipients["gone@example.com"]
    assert (gone.status, gone.reason, gone.suppressed) == (
        DeliveryStatus.REJECTED,
        "suppressed",
        True,
    )
    # Postmark sent nothing; the guard tried again without the inactive address.
    assert result.recipients["ok@example.com"].status is DeliveryStatus.ACCEPTED
    assert api.requests[-1]["To"] == "ok@example.com"
    entry = await g.suppression("gone@example.com")
    assert entry is not None
    assert entry.source == "postmark"  # learned from Postmark's API, not an SMTP reply


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_rate_limits_and_server_errors_are_temporary_and_suppress_nobody(
    status: int, api: PostmarkAPI, guard: Callable[..., Guard]
) -> None:
    api.status = [(status, {"ErrorCode": 429 if status == 429 else 100, "Message": "busy"})] * 2
    g = guard()
    result = await g.send(message("a@example.com"))
    rr = result.recipients["a@example.com"]
    assert rr.status in (DeliveryStatus.DEFERRED, DeliveryStatus.PAUSED)
    assert not await g.is_suppressed("a@example.com")


async def test_an_invalid_request_fails_the_message_only(
    api: PostmarkAPI, guard: Callable[..., Guard]
) -> None:
    g = guard()
    msg = message("a@example.com")
    del msg["Subject"]
    result = await g.send(msg)
    rr = result.recipients["a@example.com"]
    assert (rr.status, rr.suppressed) == (DeliveryStatus.REJECTED, False)
    assert len(api.requests) == 1


async def test_a_bad_token_never_suppresses(guard: Callable[..., Guard]) -> None:
    g = guard(token="wrong")
    result = await g.send(message("a@example.com"))
    assert not result.recipients["a@example.com"].suppressed
    assert not await g.is_suppressed("a@example.com")


async def test_unreachable_is_retried_then_deferred(clock: FakeClock) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    adapter = PostmarkAdapter(server_token=TOKEN, transport=httpx.MockTransport(down))
    g = Guard(
        adapter=adapter, clock=clock, sleep=clock.sleep, retry=RetryPolicy(attempts=2, jitter=0)
    )
    rr = (await g.send(message("a@example.com"))).recipients["a@example.com"]
    assert (rr.status, rr.attempts) == (DeliveryStatus.DEFERRED, 2)


# -- webhooks ----------------------------------------------------------------------------------

CREDENTIALS = [("hook", "old-secret"), ("hook", "new-secret")]
BOUNCE = {
    "RecordType": "Bounce",
    "ID": 4323372036854775807,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Name": "Hard bounce",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "MessageStream": "outbound",
    "Description": "The server was unable to deliver your message "
    "(ex: unknown user, mailbox not found).",
    "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    "Email": "john@example.com",
    "From": "sender@shop.example",
    "BouncedAt": "2026-11-01T09:00:00Z",
    "Inactive": True,
}


def auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def test_a_hard_bounce_record_with_either_rotated_secret() -> None:
    for _, password in CREDENTIALS:
        (bounce,) = parse_webhook(
            auth("hook", password), json.dumps(BOUNCE), credentials=CREDENTIALS
        )
        assert (bounce.type, bounce.recipient, bounce.reason, bounce.hard) == (
            "bounced",
            "john@example.com",
            "userunknown",
            True,
        )
        assert bounce.sender == "sender@shop.example"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth("hook", "guess"),
        auth("other", "new-secret"),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer new-secret"},
    ],
)
def test_forged_or_missing_credentials_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookAuthError):
        parse_webhook(headers, json.dumps(BOUNCE), credentials=CREDENTIALS)


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b'{"ID": 1}', json.dumps({"RecordType": "Bounce"})]
)
def test_malformed_bodies_are_refused(body: bytes | str) -> None:
    with pytest.raises(WebhookAuthError):
        parse_webhook(auth("hook", "new-secret"), body, credentials=CREDENTIALS)


def test_no_configured_credentials_refuses_everything() -> None:
    with pytest.raises(WebhookAuthError):
        parse_webhook(auth("hook", "new-secret"), json.dumps(BOUNCE), credentials=[])


async def test_webhook_events_reach_the_suppression_list_once(
    make_guard: Callable[..., Guard],
) -> None:
    g = make_guard()
    complaint = {
        "RecordType": "SpamComplaint",
        "ID": 42,
        "Email": "angry@example.com",
        "From": "sender@shop.example",
        "BouncedAt": "2026-11-01T09:00:00Z",
    }
    blocked = {
        **BOUNCE,
        "ID": 7,
        "Type": "Blocked",
        "Email": "fine@example.com",
        "Details": "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org",
    }
    for record in (BOUNCE, complaint, blocked, BOUNCE):
        events = parse_webhook(
            auth("hook", "new-secret"), json.dumps(record), credentials=CREDENTIALS
        )
        await g.ingest_events(events)
    assert (await g.suppression("john@example.com")).reason == "userunknown"  # type: ignore[union-attr]
    assert (await g.suppression("angry@example.com")).reason == "feedback"  # type: ignore[union-attr]
    assert not await g.is_suppressed("fine@example.com")


class TestPostmarkConformance(AdapterConformance):
    def make_adapter(self, behaviour: str) -> PostmarkAdapter:
        api = PostmarkAPI()
        if behaviour == "throttle":
            api.status = [(429, {"ErrorCode": 429, "Message": "Rate limit exceeded"})]
        elif behaviour == "refuse":
            api.status = [(422, {"ErrorCode": 300, "Message": "Invalid email request"})]
        return PostmarkAdapter(server_token=TOKEN, transport=httpx.MockTransport(api.handle))

    def webhook(self, *, genuine: bool) -> tuple[dict[str, str], bytes]:
        record = {**BOUNCE, "Email": "bounced@example.com"}
        return auth("hook", "new-secret" if genuine else "forged"), json.dumps(record).encode()

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Any]:
        return parse_webhook(headers, body, credentials=CREDENTIALS)


async def test_a_short_retry_after_is_waited_out(api: PostmarkAPI, clock: FakeClock) -> None:
    calls: list[float] = []

    def busy_once(request: httpx.Request) -> httpx.Response:
        calls.append(clock.now.timestamp())
        if len(calls) == 1:
            answer = {"ErrorCode": 100, "Message": "Maintenance"}
            return httpx.Response(503, headers={"Retry-After": "7"}, json=answer)
        return api.handle(request)

    adapter = PostmarkAdapter(server_token=TOKEN, transport=httpx.MockTransport(busy_once))
    policy = RetryPolicy(attempts=3, initial_wait=1, max_wait=30, jitter=0)
    g = Guard(adapter=adapter, clock=clock, sleep=clock.sleep, retry=policy)
    rr = (await g.send(message("a@example.com"))).recipients["a@example.com"]
    assert (rr.status, rr.attempts) == (DeliveryStatus.ACCEPTED, 2)
    assert clock.sleeps == [7]  # not the policy's 1 s: the server said 7


async def test_a_retry_after_longer_than_the_policy_defers_without_sleeping(
    clock: FakeClock,
) -> None:
    def later(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503, headers={"Retry-After": "3600"}, json={"ErrorCode": 100, "Message": "Maintenance"}
        )

    adapter = PostmarkAdapter(server_token=TOKEN, transport=httpx.MockTransport(later))
    g = Guard(
        adapter=adapter,
        clock=clock,
        sleep=clock.sleep,
        retry=RetryPolicy(attempts=3, initial_wait=1, max_wait=30, jitter=0, defer_for=60),
    )
    start = clock.now
    rr = (await g.send(message("a@example.com"))).recipients["a@example.com"]
    assert (rr.status, rr.attempts) == (DeliveryStatus.DEFERRED, 1)
    assert clock.sleeps == []
    assert rr.retry_at == start + dt.timedelta(seconds=3600)
