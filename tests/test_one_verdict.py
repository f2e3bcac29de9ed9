"""One verdict on every path: the same observation leaves the same store state.

Each row of ``OBSERVATIONS`` is one thing a receiving server said about one recipient; each
entry of ``PATHS`` is one way it can reach the guard (an SMTP reply, an HTTP adapter's reply, a
DSN, a signed provider webhook, an anymail tracking signal).  Every pair runs on a fresh guard
with the README's user rule and a breaker, and must leave the row's state: the suppression
entry's reason, the soft-bounce count, the sender's pauses and the breaker's counts.

Django's and Flask-Mailman's own SMTP backends, configured as the backend the guard delivers
through (``SENDGUARD["BACKEND"]``, ``SENDGUARD_BACKEND``), are paths too: the server's reply
reaches the guard as smtplib's exception, read by the framework backend adapter.  (anymail's
test backend is not: its per-recipient statuses carry no server reply to classify.)

To add a path, write one ``Path``
subclass whose ``observe`` feeds a row through it and returns ``state(...)`` of its guard, and
append an instance to ``PATHS``; say in ``knows_sender`` whether the sender reaches the guard
(without it nobody can be paused and the breaker has nobody to count for).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path as FilePath
from typing import Any

import flask_mailman
import pytest
import sendguard_django.signals
from anymail.signals import AnymailTrackingEvent, tracking
from django.core import mail as django_mail
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.test import override_settings
from flask import Flask
from sendguard_django import BackendAdapter
from sendguard_flask.mailman import BackendAdapter as MailmanAdapter
from sendguard_postmark import parse_webhook as postmark_webhook

from sendguard import (
    Breaker,
    DeliveryEvent,
    Guard,
    MemoryStore,
    Reply,
    Rule,
    Rules,
    SMTPAdapter,
    SQLiteStore,
    Stage,
    Store,
    SyncGuard,
    event_from,
)
from sendguard.testing import RecordingAdapter, ScriptedSMTPServer, make_arf, make_dsn
from tests.conftest import scratch_redis_store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SENDER = "news@sender.example"
RCPT = "rcpt@example.net"
RULES = Rules([Rule("mailboxfull", r"casella piena")])  # the README's own example
CREDENTIALS = [("hook", "s3cret")]


@dataclass(frozen=True)
class State:
    """What the store holds about the recipient and the sender after one observation."""

    suppressed: str | None
    soft_bounces: int
    pauses: tuple[tuple[str, str], ...]
    bounces: int
    complaints: int


@dataclass(frozen=True)
class Observation:
    name: str
    kind: str
    """``failure`` (a reply), ``complaint`` or ``delivery``."""
    reply: str
    postmark_type: str
    expected: State
    seed_soft: bool = False
    """Start with one soft bounce on record (so that a delivery has something to reset)."""


NO_PAUSE: tuple[tuple[str, str], ...] = ()
OBSERVATIONS = [
    Observation(
        "hard 5.1.1",
        "failure",
        "550 5.1.1 <rcpt@example.net>: Recipient address rejected: User unknown",
        "HardBounce",
        State("userunknown", 0, NO_PAUSE, 1, 0),
    ),
    Observation(
        "user rule",
        "failure",
        "550 5.1.1 casella piena",
        "HardBounce",
        State(None, 1, NO_PAUSE, 1, 0),
    ),
    Observation(
        "blocklisted IP",
        "failure",
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        "HardBounce",
        State(None, 0, (("example.net", "blocked"),), 0, 0),
    ),
    Observation(
        "mailbox full",
        "failure",
        "552 5.2.2 Mailbox full",
        "SoftBounce",
        State(None, 1, NO_PAUSE, 1, 0),
    ),
    Observation("complaint", "complaint", "", "", State("feedback", 0, NO_PAUSE, 0, 1)),
    Observation(
        "delivery", "delivery", "250 2.0.0 Ok", "", State(None, 0, NO_PAUSE, 0, 0), seed_soft=True
    ),
]


def original(message_id: str = "<1@sender.example>") -> bytes:
    return (
        f"Return-Path: <{SENDER}>\nFrom: {SENDER}\nTo: {RCPT}\nMessage-ID: {message_id}\n"
        "Subject: hello\n\nhello\n"
    ).encode()


def message() -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = SENDER, RCPT, "hello"
    mail.set_content("hello")
    return mail


StoreFactory = Callable[[], Store]


def options(store: Store) -> dict[str, Any]:
    """The guard every path runs: the user rule, a breaker, no waiting between retries."""
    return {"store": store, "rules": RULES, "breaker": Breaker()}


def seed_event() -> DeliveryEvent:
    """One soft bounce for the recipient, from a provider that names no sender."""
    return event_from(
        provider="seed",
        event_id="seed",
        type="bounced",
        recipient=RCPT,
        timestamp=dt.datetime.now(dt.UTC),
        diagnostic="452 4.2.2 mailbox full",
        permanent=False,
    )


async def seed(guard: Guard) -> None:
    await guard.ingest_events([seed_event()])
    assert await guard.soft_bounces(RCPT) == 1


async def state(guard: Guard) -> State:
    entry = await guard.suppression(RCPT)
    volume = (await guard.status("sender.example")).volume
    return State(
        entry.reason if entry else None,
        await guard.soft_bounces(RCPT),
        tuple((p.recipient_domain, p.reason) for p in await guard.pauses("sender.example")),
        volume.bounces,
        volume.complaints,
    )


def sync_state(guard: SyncGuard) -> State:
    entry = guard.suppression(RCPT)
    volume = guard.status("sender.example").volume
    return State(
        entry.reason if entry else None,
        guard.soft_bounces(RCPT),
        tuple((p.recipient_domain, p.reason) for p in guard.pauses("sender.example")),
        volume.bounces,
        volume.complaints,
    )


class Path:
    name = ""
    knows_sender = True

    def supports(self, row: Observation) -> bool:
        return True

    async def observe(self, row: Observation, store: Store) -> State:
        raise NotImplementedError


class SMTP(Path):
    """The reply of a real SMTP server (aiosmtpd, scripted) at RCPT."""

    name = "smtp"

    def supports(self, row: Observation) -> bool:
        return row.kind != "complaint"

    async def observe(self, row: Observation, store: Store) -> State:
        async with ScriptedSMTPServer() as server:
            if row.kind == "failure":
                server.script(RCPT, row.reply)
            adapter = SMTPAdapter("127.0.0.1", server.port, confirms_delivery=True)
            async with Guard(adapter=adapter, **options(store)) as guard:
                if row.seed_soft:
                    await seed(guard)
                await guard.send(message())
                return await state(guard)


class HTTP(Path):
    """An HTTP adapter's per-recipient reply (its provider's SMTP-style answer)."""

    name = "http"

    def supports(self, row: Observation) -> bool:
        return row.kind != "complaint"

    async def observe(self, row: Observation, store: Store) -> State:
        code = int(row.reply[:3])
        adapter = RecordingAdapter({RCPT: [Reply(code, row.reply, Stage.RCPT)]})
        adapter.confirms_delivery = True
        async with Guard(adapter=adapter, **options(store)) as guard:
            if row.seed_soft:
                await seed(guard)
            await guard.send(message())
            return await state(guard)


class DSN(Path):
    """A bounce e-mail behind a relay: a DSN (RFC 3464), or an ARF report for a complaint."""

    name = "dsn"

    async def observe(self, row: Observation, store: Store) -> State:
        if row.kind == "complaint":
            raw = make_arf(original(), RCPT)
        else:
            action = "delivered" if row.kind == "delivery" else "failed"
            raw = make_dsn(original(), {RCPT: row.reply}, action=action)
        async with Guard(**options(store)) as guard:
            if row.seed_soft:
                await seed(guard)
            reports = await guard.ingest_bounce(raw)
            assert reports, "the bounce was read"
            return await state(guard)


class Postmark(Path):
    """A real Postmark webhook request (Basic auth) through the adapter's parse_webhook."""

    name = "webhook"

    async def observe(self, row: Observation, store: Store) -> State:
        record: dict[str, Any]
        if row.kind == "complaint":
            record = {"RecordType": "SpamComplaint", "ID": 7, "Email": RCPT, "From": SENDER}
        elif row.kind == "delivery":
            record = {
                "RecordType": "Delivery",
                "MessageID": "m1",
                "Recipient": RCPT,
                "DeliveredAt": "2026-11-01T09:00:00Z",
                "Details": row.reply,
            }
        else:
            record = {
                "RecordType": "Bounce",
                "ID": 7,
                "Type": row.postmark_type,
                "Details": f"smtp;{row.reply}",
                "Email": RCPT,
                "From": SENDER,
                "BouncedAt": "2026-11-01T09:00:00Z",
            }
        headers = {"Authorization": "Basic aG9vazpzM2NyZXQ=", "Content-Type": "application/json"}
        events = postmark_webhook(headers, json.dumps(record), credentials=CREDENTIALS)
        async with Guard(**options(store)) as guard:
            if row.seed_soft:
                await seed(guard)
            marked = await guard.ingest_events(events)
            assert all(e.ingested for e in marked)
            return await state(guard)


class Anymail(Path):
    """django-anymail's tracking signal, as its webhook views send it."""

    name = "anymail"
    knows_sender = True  # from the ESP's raw event (Postmark's "From"), where anymail keeps it

    async def observe(self, row: Observation, store: Store) -> State:
        # anymail says "bounced" for a final failure, soft or hard; "deferred" while it retries.
        kind = {"complaint": "complained", "delivery": "delivered"}.get(row.kind, "bounced")
        event = AnymailTrackingEvent(
            event_type=kind,
            recipient=RCPT,
            event_id="ev-1",
            mta_response=row.reply or None,
            esp_event={"RecordType": "Bounce", "Email": RCPT, "From": SENDER},
            timestamp=dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC),
        )

        def work() -> State:
            guard = SyncGuard(**options(store))
            try:
                if row.seed_soft:
                    guard.ingest_events([seed_event()])
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(sendguard_django.signals, "get_guard", lambda: guard)
                    tracking.send(sender=object(), event=event, esp_name="Postmark")
                return sync_state(guard)
            finally:
                guard.close()

        return await asyncio.to_thread(work)


class RelayBackend(DjangoSMTPBackend):  # type: ignore[misc]  # django is untyped here
    """Django's SMTP backend under another name: the guard delivers through it."""


class DjangoBackend(Path):
    """A Django EmailMessage through a Django backend as the guard's adapter, to a real server."""

    name = "django-backend"

    def supports(self, row: Observation) -> bool:
        return row.kind != "complaint"

    async def observe(self, row: Observation, store: Store) -> State:
        async with ScriptedSMTPServer() as server:
            if row.kind == "failure":
                server.script(RCPT, row.reply)
            adapter = BackendAdapter(f"{__name__}.RelayBackend")
            adapter.confirms_delivery = True  # it talks to the recipient's server itself here
            mail = django_mail.EmailMessage("hello", "hello", SENDER, [RCPT])
            with override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port):
                async with Guard(adapter=adapter, **options(store)) as guard:
                    if row.seed_soft:
                        await seed(guard)
                    await guard.send(mail.message(), recipients=[RCPT], original=mail)
                    return await state(guard)


class FlaskMailman(Path):
    """A Flask-Mailman message through its SMTP backend as the guard's adapter."""

    name = "flask-mailman"

    def supports(self, row: Observation) -> bool:
        return row.kind != "complaint"

    async def observe(self, row: Observation, store: Store) -> State:
        async with ScriptedSMTPServer() as server:
            if row.kind == "failure":
                server.script(RCPT, row.reply)
            app = Flask("one_verdict")
            app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port)
            flask_mailman.Mail(app)
            adapter = MailmanAdapter(app, "smtp")
            adapter.confirms_delivery = True
            with app.app_context():
                mail = flask_mailman.EmailMessage("hello", "hello", SENDER, [RCPT])
                async with Guard(adapter=adapter, **options(store)) as guard:
                    if row.seed_soft:
                        await seed(guard)
                    await guard.send(mail.message(), recipients=[RCPT], original=mail)
                    return await state(guard)


PATHS: list[Path] = [
    SMTP(),
    HTTP(),
    DSN(),
    Postmark(),
    Anymail(),
    DjangoBackend(),
    FlaskMailman(),
]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: FilePath, prefix: str
) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        yield SQLiteStore(tmp_path / "sendguard.db")
    else:
        async with scratch_redis_store(request.getfixturevalue("redis_url"), prefix) as redis:
            yield redis


def expected(row: Observation, path: Path) -> State:
    if path.knows_sender:
        return row.expected
    return replace(row.expected, pauses=NO_PAUSE, bounces=0, complaints=0)


def cases() -> Iterator[Any]:
    for row in OBSERVATIONS:
        for path in PATHS:
            if path.supports(row):
                yield pytest.param(row, path, id=f"{row.name}-{path.name}")


@pytest.mark.parametrize(("row", "path"), list(cases()))
async def test_one_observation_one_state_on_every_path(
    row: Observation, path: Path, store: Store
) -> None:
    assert await path.observe(row, store) == expected(row, path)


BLOCKED = "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"


async def test_a_forged_dsn_pauses_nobody_and_a_signed_one_does() -> None:
    adapter = RecordingAdapter()
    async with Guard(adapter=adapter, bounce_secret="s" * 32) as guard:
        forged = await guard.ingest_bounce(make_dsn(original(), {RCPT: BLOCKED}))
        assert [r.trusted for r in forged] == [False]
        assert await guard.pauses("sender.example") == []
        await guard.send(message())
        signed = make_dsn(adapter.envelopes[0].data, {RCPT: BLOCKED})
        assert [r.trusted for r in await guard.ingest_bounce(signed)] == [True]
        assert [p.reason for p in await guard.pauses("sender.example")] == ["blocked"]


def anymail_event(event_id: str | None) -> AnymailTrackingEvent:
    return AnymailTrackingEvent(
        event_type="bounced",
        recipient=RCPT,
        event_id=event_id,
        mta_response="552 5.2.2 Mailbox full",
        timestamp=dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC),
    )


@pytest.mark.parametrize("ids", [["a", "a"], [None, None], ["a", "b"]])
def test_an_anymail_event_sent_twice_counts_once(ids: list[str | None]) -> None:
    guard = SyncGuard(rules=RULES)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sendguard_django.signals, "get_guard", lambda: guard)
            for event_id in ids:
                tracking.send(sender=object(), event=anymail_event(event_id), esp_name="SendGrid")
        assert guard.soft_bounces(RCPT) == len(set(ids))
    finally:
        guard.close()
