"""sendguard-django against a real aiosmtpd server and real Redis (pytest-django)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from anymail.message import AnymailRecipientStatus
from anymail.signals import AnymailTrackingEvent, tracking
from django.conf import settings
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings
from django.utils.log import configure_logging
from sendguard_django import get_guard, reset_guard

from sendguard import DeliveryStatus, NotSentError, StoreError
from sendguard.testing import ScriptedSMTPServer
from tests.conftest import free_port, in_forked_child, scratch_redis_store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAST_RETRY = {"attempts": 2, "initial_wait": 0.01, "max_wait": 0.02, "jitter": 0}
# Django's test setup switches EMAIL_BACKEND to locmem; these tests put sendguard's back.
OURS = "sendguard_django.EmailBackend"


@pytest.fixture
def server() -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer().in_thread() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_guard(tmp_path: Path) -> Iterator[None]:
    """A guard built afresh for each test; a store not configured is a file in its tmp_path."""
    reset_guard()
    with override_settings(BASE_DIR=tmp_path):
        yield
    reset_guard()


@pytest.fixture
def smtp_settings(server: ScriptedSMTPServer, redis_url: str, prefix: str) -> Iterator[None]:
    conf = {"REDIS_URL": redis_url, "PREFIX": prefix, "RETRY": FAST_RETRY}
    with override_settings(EMAIL_BACKEND=OURS, EMAIL_PORT=server.port, SENDGUARD=conf):
        yield
    reset_guard()

    async def clean() -> None:
        async with scratch_redis_store(redis_url, prefix):
            pass

    asyncio.run(clean())


@pytest.mark.usefixtures("smtp_settings")
def test_a_550_suppresses_and_suppressed_recipients_never_reach_the_server(
    server: ScriptedSMTPServer,
) -> None:
    server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
    sent = mail.send_mail("Hi", "Body", None, ["ok@example.com", "gone@example.com"])
    assert sent == 1
    assert server.accepted == ["ok@example.com"]
    assert get_guard().is_suppressed("gone@example.com")

    server.rcpt_log.clear()
    message = mail.EmailMessage("Again", "Body", None, ["gone@example.com"])
    # It reached no one and nothing was kept: raised, as Django's SMTP backend raises
    # SMTPRecipientsRefused.
    with pytest.raises(NotSentError) as refused:
        message.send()
    assert server.rcpt_log == []
    result = message.sendguard_result
    assert refused.value.result is result
    assert not refused.value.kept
    assert result.recipients["gone@example.com"].status is DeliveryStatus.SUPPRESSED
    assert result.kept == []
    silent = mail.get_connection(fail_silently=True)
    assert silent.send_messages([message]) == 0
    assert message.sendguard_result is not result  # sent again, and suppressed again
    assert message.sendguard_result.recipients["gone@example.com"].status is (
        DeliveryStatus.SUPPRESSED
    )
    assert server.rcpt_log == []


@pytest.mark.usefixtures("smtp_settings")
def test_a_451_is_retried(server: ScriptedSMTPServer) -> None:
    server.script("grey@example.com", "451 4.7.1 Greylisted", "250 OK")
    message = mail.EmailMessage("Hi", "Body", None, ["grey@example.com"])
    assert message.send() == 1
    rr = message.sendguard_result.recipients["grey@example.com"]
    assert (rr.status, rr.attempts) == (DeliveryStatus.ACCEPTED, 2)


def test_fail_silently_hides_delivery_errors_only(server: ScriptedSMTPServer) -> None:
    broken = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "RETRY": FAST_RETRY}
    with override_settings(EMAIL_BACKEND=OURS, EMAIL_PORT=server.port, SENDGUARD=broken):
        with pytest.raises(StoreError):
            mail.send_mail("Hi", "Body", None, ["ok@example.com"])
        assert mail.send_mail("Hi", "Body", None, ["ok@example.com"], fail_silently=True) == 0
    typo = override_settings(EMAIL_BACKEND=OURS, SENDGUARD={"REDIS": "typo"})
    with typo, pytest.raises(ImproperlyConfigured):
        mail.send_mail("Hi", "Body", None, ["ok@example.com"], fail_silently=True)
    assert server.received == []


@pytest.fixture
def locmem(redis_url: str, prefix: str) -> Iterator[None]:
    conf = {
        "BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "REDIS_URL": redis_url,
        "PREFIX": prefix,
    }
    with override_settings(EMAIL_BACKEND=OURS, SENDGUARD=conf):
        mail.outbox = []
        yield


@pytest.mark.usefixtures("locmem")
def test_another_backend_gets_only_the_recipients_that_may_receive() -> None:
    get_guard().suppress("gone@example.com")
    message = mail.EmailMessage(
        "Hi", "Body", None, ["Ok <ok@example.com>", "gone@example.com"], cc=["GONE@example.com"]
    )
    assert message.send() == 1
    (delivered,) = mail.outbox
    assert (delivered.to, delivered.cc) == (["Ok <ok@example.com>"], [])
    statuses = {a: r.status for a, r in message.sendguard_result.recipients.items()}
    assert statuses == {
        "ok@example.com": DeliveryStatus.ACCEPTED,
        "gone@example.com": DeliveryStatus.SUPPRESSED,
    }
    get_guard().unsuppress("gone@example.com")


@pytest.fixture
def anymail_backend(redis_url: str, prefix: str) -> Iterator[None]:
    conf = {
        "BACKEND": "anymail.backends.test.EmailBackend",
        "REDIS_URL": redis_url,
        "PREFIX": prefix,
    }
    anymail = {"IGNORE_RECIPIENT_STATUS": False}
    with override_settings(EMAIL_BACKEND=OURS, SENDGUARD=conf, ANYMAIL=anymail):
        mail.outbox = []
        yield


@pytest.mark.usefixtures("anymail_backend")
def test_anymail_per_recipient_status_is_mapped_and_rejected_is_suppressed() -> None:
    message = mail.EmailMessage("Hi", "Body", None, ["ok@example.com", "listed@example.com"])
    message.anymail_test_response = {
        "recipient_status": {
            "ok@example.com": AnymailRecipientStatus("id1", "queued"),
            "listed@example.com": AnymailRecipientStatus("id1", "rejected"),
        }
    }
    assert message.send() == 1
    recipients = message.sendguard_result.recipients
    assert recipients["ok@example.com"].status is DeliveryStatus.ACCEPTED
    assert recipients["listed@example.com"].status is DeliveryStatus.REJECTED
    assert recipients["listed@example.com"].suppressed
    entry = get_guard().suppression("listed@example.com")
    assert entry is not None
    # Through the guard's send path, recorded as learned from anymail's answer.
    assert (entry.reason, entry.source) == ("suppressed", "anymail")


@pytest.mark.usefixtures("anymail_backend")
@pytest.mark.parametrize(
    "statuses",
    [
        {"typo@example.com": "invalid"},
        {"typo@example.com": "invalid", "listed@example.com": "rejected"},
        {"ok@example.com": "queued", "typo@example.com": "invalid"},
    ],
)
def test_an_address_anymail_calls_invalid_is_never_suppressed(statuses: dict[str, str]) -> None:
    # Anymail raises "every recipient refused" when all are invalid or rejected; each
    # recipient's own status still decides, and the guard's backend raises NotSentError then.
    message = mail.EmailMessage("Hi", "Body", None, list(statuses))
    message.anymail_test_response = {
        "recipient_status": {a: AnymailRecipientStatus("id1", s) for a, s in statuses.items()}
    }
    # Not fail_silently: anymail raises, and the guard reads its statuses.
    if "queued" in statuses.values():
        assert message.send() == 1
    else:
        with pytest.raises(NotSentError) as refused:
            message.send()
        assert refused.value.result is message.sendguard_result
        assert not refused.value.kept
    recipients = message.sendguard_result.recipients
    typo = recipients["typo@example.com"]
    # A permanent failure (553 5.1.3, syntaxerror) that lists nobody.
    assert (typo.status, typo.reason, typo.suppressed) == (
        DeliveryStatus.REJECTED,
        "syntaxerror",
        False,
    )
    assert get_guard().suppression("typo@example.com") is None
    if "listed@example.com" in statuses:
        assert get_guard().suppression("listed@example.com") is not None


def track(**fields: Any) -> None:
    tracking.send(sender=object(), event=AnymailTrackingEvent(**fields), esp_name="SendGrid")


@pytest.mark.usefixtures("anymail_backend")
def test_anymail_tracking_events_feed_the_suppression_list() -> None:
    track(event_type="bounced", recipient="dead@example.com", mta_response="550 5.1.1 user unknown")
    track(event_type="complained", recipient="angry@example.com")
    track(
        event_type="bounced",
        recipient="fine@example.com",
        mta_response="554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org",
    )
    track(event_type="rejected", recipient="spam@example.com", reject_reason="spam")
    guard = get_guard()
    dead = guard.suppression("dead@example.com")
    angry = guard.suppression("angry@example.com")
    assert dead is not None
    assert angry is not None
    assert (dead.reason, dead.source) == ("userunknown", "anymail:sendgrid:webhook")
    assert angry.reason == "feedback"
    assert not guard.is_suppressed("fine@example.com")  # the sender was blocked, not the address
    assert not guard.is_suppressed("spam@example.com")


BLOCKED = "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org"


@pytest.mark.usefixtures("anymail_backend")
@pytest.mark.parametrize(
    ("esp_name", "esp_event"),
    [
        ("Postmark", {"RecordType": "Bounce", "From": "News <news@shop.example>"}),
        ("Mailgun", {"event-data": {"envelope": {"sender": "news@shop.example"}}}),
        ("Amazon SES", {"mail": {"source": "news@shop.example"}}),
        (
            "SparkPost",
            {
                "msys": {
                    "message_event": {
                        "friendly_from": "Shop <news@shop.example>",
                        "msg_from": "msprvs1=abc=bounces-123@sparkpostmail.com",
                    }
                }
            },
        ),
        ("Mandrill", {"msg": {"sender": "news@shop.example"}}),
        ("Resend", {"data": {"from": "Shop <news@shop.example>"}}),
    ],
)
def test_an_anymail_event_that_names_its_sender_pauses_it(
    esp_name: str, esp_event: dict[str, Any]
) -> None:
    fields = {"event_type": "bounced", "recipient": "fine@example.com", "esp_event": esp_event}
    tracking.send(
        sender=object(),
        event=AnymailTrackingEvent(mta_response=BLOCKED, event_id="e1", **fields),
        esp_name=esp_name,
    )
    tracking.send(
        sender=object(),
        event=AnymailTrackingEvent(
            mta_response="550 5.1.1 user unknown",
            event_id="e2",
            **{**fields, "recipient": "dead@example.com"},
        ),
        esp_name=esp_name,
    )
    guard = get_guard()
    assert [(p.recipient_domain, p.reason) for p in guard.pauses("shop.example")] == [
        ("example.com", "blocked")
    ]
    assert not guard.is_suppressed("fine@example.com")
    assert guard.is_suppressed("dead@example.com")


@pytest.mark.usefixtures("anymail_backend")
@pytest.mark.parametrize(
    ("esp_name", "esp_event"),
    [
        ("SendGrid", {"email": "fine@example.com", "from": "news@shop.example"}),
        ("Postmark", {"From": "not an address"}),
        ("Postmark", {"From": "a@b.example, c@d.example"}),
        ("Mailgun", {"event-data": ["news@shop.example"]}),
        ("Postmark", None),
    ],
)
def test_an_anymail_event_without_a_readable_sender_pauses_nobody(
    esp_name: str, esp_event: object
) -> None:
    event = AnymailTrackingEvent(
        event_type="bounced",
        recipient="fine@example.com",
        mta_response=BLOCKED,
        event_id="e1",
        esp_event=esp_event,
    )
    tracking.send(sender=object(), event=event, esp_name=esp_name)
    guard = get_guard()
    assert guard.pauses("shop.example") == []
    assert not guard.is_suppressed("fine@example.com")


@pytest.mark.usefixtures("anymail_backend")
def test_anymail_pre_send_drops_suppressed_recipients() -> None:
    get_guard().suppress("gone@example.com")
    # Through anymail directly (not through the sendguard backend): pre_send does the work.
    connection = mail.get_connection("anymail.backends.test.EmailBackend")
    kept = mail.EmailMessage("Hi", "Body", None, ["ok@example.com", "gone@example.com"])
    assert connection.send_messages([kept]) == 1
    assert mail.outbox[-1].to == ["ok@example.com"]
    cancelled = mail.EmailMessage("Hi", "Body", None, ["gone@example.com"])
    assert connection.send_messages([cancelled]) == 0


@pytest.mark.usefixtures("smtp_settings")
def test_manage_py_sendguard(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        call_command("sendguard", "suppress", "add", "x@example.com")
    assert done.value.code == 0
    assert "suppressed x@example.com" in capsys.readouterr().out
    assert get_guard().is_suppressed("x@example.com")


def test_without_a_store_the_list_is_a_file_in_base_dir_and_survives_a_restart(
    server: ScriptedSMTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
    conf = {"RETRY": FAST_RETRY}
    with override_settings(EMAIL_BACKEND=OURS, EMAIL_PORT=server.port, SENDGUARD=conf):
        with pytest.raises(NotSentError) as refused:
            mail.send_mail("Hi", "Body", None, ["gone@example.com"])
        gone = refused.value.result.recipients["gone@example.com"]
        assert (gone.status, gone.reason, gone.kept) == (
            DeliveryStatus.REJECTED,
            "userunknown",
            False,
        )
        reset_guard()  # as a restart: the next use builds the guard again
        assert (tmp_path / "sendguard.db").is_file()
        assert get_guard().is_suppressed("gone@example.com")
        with pytest.raises(SystemExit) as done:
            call_command("sendguard", "suppress", "check", "gone@example.com")
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("suppressed gone@example.com reason=userunknown")


def test_store_and_redis_url_together_is_improperly_configured() -> None:
    both = {"STORE": "memory://", "REDIS_URL": "redis://localhost"}
    with (
        override_settings(EMAIL_BACKEND=OURS, SENDGUARD=both),
        pytest.raises(ImproperlyConfigured, match="not both"),
    ):
        get_guard()


def test_a_worker_forked_after_the_guard_was_built_gets_its_own(
    server: ScriptedSMTPServer,
) -> None:
    server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
    conf = {"RETRY": FAST_RETRY}
    with override_settings(EMAIL_BACKEND=OURS, EMAIL_PORT=server.port, SENDGUARD=conf):
        assert mail.send_mail("Hi", "Body", None, ["parent@example.com"]) == 1

        def worker() -> None:
            assert mail.send_mail("Hi", "Body", None, ["gone@example.com", "ok@example.com"]) == 1
            assert get_guard().is_suppressed("gone@example.com")
            reset_guard()

        in_forked_child(worker)
        assert server.accepted == ["parent@example.com", "ok@example.com"]
        assert get_guard().is_suppressed("gone@example.com")  # the parent's, on the same file


@pytest.mark.usefixtures("smtp_settings")
def test_logging_routes_sendguard_records_to_the_apps_handler(server: ScriptedSMTPServer) -> None:
    logging_ = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"kept": {"class": "tests.adapters.test_django.Kept"}},
        "loggers": {"sendguard": {"handlers": ["kept"], "level": "INFO", "propagate": False}},
    }
    root = logging.getLogger("sendguard")
    before = (root.handlers[:], root.level, root.propagate)
    Kept.records.clear()
    server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
    try:
        with override_settings(LOGGING=logging_):
            configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)  # as django.setup does
            mail.send_mail("Hi", "Body", None, ["ok@example.com", "gone@example.com"])
    finally:
        root.handlers[:], root.level, root.propagate = before
    seen = {
        (r.name, r.levelname, r.recipient, r.status)  # type: ignore[attr-defined]
        for r in Kept.records
        if getattr(r, "event", None) == "sendguard.recipient"
    }
    assert seen == {
        ("sendguard.guard", "INFO", "o***@example.com", "accepted"),
        ("sendguard.guard", "WARNING", "g***@example.com", "rejected"),
    }


class Kept(logging.Handler):
    """A handler named in the test's LOGGING; keeps what it is handed."""

    records: ClassVar[list[logging.LogRecord]] = []

    def emit(self, record: logging.LogRecord) -> None:
        Kept.records.append(record)
