"""The webhook endpoints: verify, record, then acknowledge (framework-neutral, Django, Flask)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from django.test import Client, override_settings
from django.urls import path
from flask import Flask
from sendguard_django import get_guard, reset_guard
from sendguard_django.webhooks import webhook_view
from sendguard_flask import SendGuard, current_guard, webhook_blueprint
from sendguard_postmark import parse_webhook

from sendguard import Guard, RedisStore, SyncGuard
from sendguard.webhooks import handle, handle_sync
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
