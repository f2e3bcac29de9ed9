"""The webhook endpoints: verify, record, then acknowledge (framework-neutral, Django, Flask)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, MutableMapping
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import path
from flask import Flask
from sendguard_django import get_guard, reset_guard
from sendguard_django.webhooks import webhook_view
from sendguard_flask import SendGuard, current_guard, webhook_blueprint
from sendguard_postmark import parse_webhook
from structlog.testing import capture_logs

from sendguard import DeliveryEvent, Guard, RedisStore, SyncGuard
from sendguard.webhooks import Verify, handle, handle_sync
from tests.conftest import free_port

VERIFY = partial(parse_webhook, credentials=[("hook", "s3cret")])
BOUNCE = json.dumps(
    {
        "RecordType": "Bounce",
        "ID": 1,
        "Type": "HardBounce",
        "Email": "gone@example.com",
        "Details": "smtp;550 5.1.1 user unknown",
        "From": "news@shop.example",
        "BouncedAt": "2026-11-01T09:00:00Z",
    }
).encode()


def auth(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"hook:{password}".encode()).decode()}


async def test_handle_records_then_acknowledges_and_refuses_forgeries() -> None:
    guard = Guard()
    assert (await handle(guard, VERIFY, auth("s3cret"), BOUNCE)).status == 200
    assert await guard.is_suppressed("gone@example.com")
    again = await handle(guard, VERIFY, auth("s3cret"), BOUNCE)
    assert again == (200, "ok 0 of 1\n")  # a re-send: acknowledged, nothing recorded
    assert (await handle(guard, VERIFY, auth("guess"), BOUNCE)).status == 401


def test_a_store_that_cannot_record_asks_for_a_resend() -> None:
    down = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    with SyncGuard(store=down) as guard:
        assert handle_sync(guard, VERIFY, auth("s3cret"), BOUNCE).status == 503


urlpatterns = [path("hooks/postmark", webhook_view(VERIFY))]


@pytest.fixture
def django_guard(tmp_path: Path) -> Iterator[None]:
    reset_guard()
    with override_settings(ROOT_URLCONF=__name__, SENDGUARD={}, BASE_DIR=tmp_path):
        yield
    reset_guard()


@pytest.mark.usefixtures("django_guard")
def test_the_django_view() -> None:
    client = Client()
    forged = client.post(
        "/hooks/postmark", BOUNCE, content_type="application/json", headers=auth("guess")
    )
    assert forged.status_code == 401
    assert not get_guard().is_suppressed("gone@example.com")
    ok = client.post(
        "/hooks/postmark", BOUNCE, content_type="application/json", headers=auth("s3cret")
    )
    assert ok.status_code == 200
    assert get_guard().is_suppressed("gone@example.com")
    assert client.get("/hooks/postmark").status_code == 405


def test_the_flask_blueprint(tmp_path: Path) -> None:
    app = Flask("hooks", instance_path=str(tmp_path))
    SendGuard(app)
    app.register_blueprint(webhook_blueprint("postmark", VERIFY, url_prefix="/hooks/postmark"))
    client = app.test_client()
    assert client.post("/hooks/postmark/", data=BOUNCE, headers=auth("guess")).status_code == 401
    assert client.post("/hooks/postmark/", data=BOUNCE, headers=auth("s3cret")).status_code == 200
    assert current_guard(app).is_suppressed("gone@example.com")
    current_guard(app).close()


FAILURES = [
    KeyError("Signature"),
    TypeError("'NoneType' object is not subscriptable"),
    RuntimeError("cannot reach vault at https://vault.internal/?token=hunter2"),
    ValueError("secret key hunter2 is not base64"),
    RecursionError("maximum recursion depth exceeded"),
    OSError(111, "Connection refused"),
]


def failing(failure: Exception) -> Verify:
    def verify(headers: Mapping[str, str], body: bytes) -> list[DeliveryEvent]:
        raise failure

    return verify


def failed_entry(logs: list[MutableMapping[str, Any]], failure: Exception) -> None:
    (entry,) = [e for e in logs if e["event"] == "sendguard.webhook_failed"]
    assert entry["log_level"] == "error"
    assert entry["exc_info"] is failure


@pytest.mark.parametrize("failure", FAILURES, ids=lambda e: type(e).__name__)
async def test_a_verifier_that_fails_is_a_500_that_names_nothing(failure: Exception) -> None:
    # Our side failed, not the request: a provider retries a 5xx (and drops a 4xx).
    guard = Guard()
    with capture_logs() as logs:
        answer = await handle(guard, failing(failure), auth("s3cret"), BOUNCE)
    assert answer == (500, "failed, send again\n")
    failed_entry(logs, failure)
    assert not await guard.is_suppressed("gone@example.com")


@pytest.mark.parametrize("failure", FAILURES[:2], ids=lambda e: type(e).__name__)
def test_a_verifier_that_fails_is_a_500_in_sync_code_too(failure: Exception) -> None:
    with SyncGuard() as guard, capture_logs() as logs:
        assert handle_sync(guard, failing(failure), {}, BOUNCE) == (500, "failed, send again\n")
    failed_entry(logs, failure)


@pytest.mark.parametrize("stop", [SystemExit(3), KeyboardInterrupt()])
async def test_what_is_not_an_exception_goes_through(stop: BaseException) -> None:
    def verify(headers: Mapping[str, str], body: bytes) -> list[DeliveryEvent]:
        raise stop

    with pytest.raises(type(stop)):
        await handle(Guard(), verify, {}, BOUNCE)


def test_the_framework_views_answer_a_failing_verifier_500_without_details(
    tmp_path: Path,
) -> None:
    app = Flask("hooks", instance_path=str(tmp_path))
    SendGuard(app)
    verify = failing(RuntimeError("token=hunter2"))
    app.register_blueprint(webhook_blueprint("broken", verify, url_prefix="/hooks/broken"))
    answer = app.test_client().post("/hooks/broken/", data=BOUNCE)
    assert (answer.status_code, answer.text) == (500, "failed, send again\n")
    current_guard(app).close()
