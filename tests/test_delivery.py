"""Delivery against a real SMTP server: accept, retry 4xx, suppress recipient 5xx, never more."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest
from aiosmtpd.smtp import SMTP
from structlog.testing import capture_logs

from sendguard import Action, DeliveryStatus, Guard, RetryPolicy, SMTPAdapter, Stage, classify
from sendguard.testing import DROP, FakeClock, RecordingAdapter, ScriptedSMTPServer
from tests.conftest import free_port, message

pytestmark = pytest.mark.usefixtures("smtp_server")


async def test_250_is_accepted_and_the_message_arrives(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    result = await make_guard().send(message("alice@example.com", body="Line\n.starts with dot\n"))
    rr = result.recipients["alice@example.com"]
    assert (rr.status, rr.reply_code, rr.attempts, rr.suppressed) == (
        DeliveryStatus.ACCEPTED,
        250,
        1,
        False,
    )
    (received,) = smtp_server.received
    assert received.mail_from == "news@sender.example"
    assert received.message.get_content() == "Line\n.starts with dot\n"


@pytest.mark.parametrize(
    "reply",
    [
        "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
        "550 No such user here",
        "551 User not local",
        "553 mailbox name not allowed",
        "550 5.2.1 mailbox disabled",  # an account disabled for good is a dead address
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound",
        # Microsoft's Directory-Based Edge Blocking: the mailbox does not exist.
        "550 5.4.1 Recipient address rejected: Access denied",
        "550 5.1.2 Host unknown",
    ],
)
async def test_recipient_5xx_rejects_and_suppresses(
    reply: str, store: object, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("bob@example.com", reply)
    guard = make_guard(store=store)
    result = await guard.send(message(["alice@example.com", "bob@example.com"]))
    rr = result.recipients["bob@example.com"]
    assert rr.status is DeliveryStatus.REJECTED
    assert rr.suppressed
    assert rr.reply_code == int(reply[:3])
    assert result.recipients["alice@example.com"].status is DeliveryStatus.ACCEPTED
    entry = await guard.suppression("BOB@example.com")
    assert entry is not None
    assert (entry.reply_code, entry.source) == (int(reply[:3]), "smtp")
    assert entry.reason in ("userunknown", "hostunknown", "suspend")
    assert entry.reason == rr.reason
    assert entry.detail == reply[4:]

    smtp_server.rcpt_log.clear()
    again = await guard.send(message(["alice@example.com", "bob@example.com"]))
    assert again.recipients["bob@example.com"].status is DeliveryStatus.SUPPRESSED
    assert not again.recipients["bob@example.com"].suppressed
    assert smtp_server.rcpt_log == ["alice@example.com"]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            "blocked",
        ),
        ("550 5.7.1 Message rejected due to DMARC policy", "authfailure"),
        ("550 5.7.26 This message does not have authentication information", "authfailure"),
        ("550 5.7.25 The IP address sending this message does not have a PTR record", "requireptr"),
        ("550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent.", "blocked"),
    ],
)
async def test_sender_side_5xx_pauses_that_domain_and_suppresses_nobody(
    reply: str,
    reason: str,
    *,
    store: object,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    clock: FakeClock,
) -> None:
    smtp_server.script("bob@example.com", reply)
    guard = make_guard(store=store, pause_for=timedelta(hours=2))
    result = await guard.send(message(["bob@example.com", "carol@other.example"]))
    rr = result.recipients["bob@example.com"]
    assert (rr.status, rr.suppressed, rr.reason) == (DeliveryStatus.REJECTED, False, reason)
    assert result.recipients["carol@other.example"].status is DeliveryStatus.ACCEPTED
    assert not await guard.is_suppressed("bob@example.com")
    (pause,) = await guard.pauses("sender.example")
    assert (pause.recipient_domain, pause.reason) == ("example.com", reason)
    assert pause.until == clock.now + timedelta(hours=2)

    # During the pause nobody at example.com is sent to; other domains are.
    smtp_server.rcpt_log.clear()
    again = await guard.send(message(["alice@example.com", "carol@other.example"]))
    held = again.recipients["alice@example.com"]
    assert (held.status, held.retry_at, held.reason) == (
        DeliveryStatus.PAUSED,
        pause.until,
        reason,
    )
    assert smtp_server.rcpt_log == ["carol@other.example"]

    # When the pause is over, example.com gets mail again.
    clock.advance(7201)
    smtp_server.rcpt_log.clear()
    later = await guard.send(message("alice@example.com"))
    assert later.accepted == ["alice@example.com"]
    assert await guard.pauses("sender.example") == []


async def test_resume_lifts_a_pause_at_once(
    store: object, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("bob@example.com", "554 5.7.1 Client host blocked using bl.spamcop.net")
    guard = make_guard(store=store)
    await guard.send(message("bob@example.com"))
    assert len(await guard.pauses("SENDER.example")) == 1
    assert await guard.resume("sender.example") == 1
    result = await guard.send(message("alice@example.com"))
    assert result.accepted == ["alice@example.com"]


async def test_4xx_rate_limit_pauses_briefly_instead_of_retrying(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer, clock: FakeClock
) -> None:
    smtp_server.script(
        "bob@yahoo.example",
        "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
        "volume or user complaints",
    )
    guard = make_guard(transient_pause_for=timedelta(minutes=20))
    result = await guard.send(message("bob@yahoo.example"))
    rr = result.recipients["bob@yahoo.example"]
    assert (rr.status, rr.reason, rr.attempts) == (DeliveryStatus.PAUSED, "badreputation", 1)
    assert rr.retry_at == clock.now + timedelta(minutes=20)
    assert clock.sleeps == []
    assert not await guard.is_suppressed("bob@yahoo.example")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("554 Transaction failed", "systemerror"),
        ("552 5.3.4 Message size exceeds fixed limit", "emailtoolarge"),
        ("554 5.7.1 Message rejected as spam by Content Filtering", "spamdetected"),
        ("550 5.2.1 Mailbox is frozen", "suspend"),  # may come back: soft, not suppressed
    ],
)
async def test_refused_message_rejects_without_suppressing_or_pausing(
    reply: str, reason: str, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("bob@example.com", reply)
    guard = make_guard()
    result = await guard.send(message("bob@example.com"))
    rr = result.recipients["bob@example.com"]
    assert (rr.status, rr.suppressed, rr.reason) == (DeliveryStatus.REJECTED, False, reason)
    assert not await guard.is_suppressed("bob@example.com")
    assert await guard.pauses("sender.example") == []


async def test_4xx_is_retried_for_that_recipient_only(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer, clock: FakeClock
) -> None:
    smtp_server.script("grey@example.com", "451 4.7.1 Greylisted, try again", "250 2.1.5 OK")
    result = await make_guard().send(message(["alice@example.com", "grey@example.com"]))
    assert result.recipients["grey@example.com"].status is DeliveryStatus.ACCEPTED
    assert result.recipients["grey@example.com"].attempts == 2
    assert result.recipients["alice@example.com"].attempts == 1
    assert [m.rcpt_tos for m in smtp_server.received] == [
        ["alice@example.com"],
        ["grey@example.com"],
    ]
    assert len(clock.sleeps) == 1
    assert 1 <= clock.sleeps[0] <= 2  # initial_wait 1 s plus up to 1 s of jitter


async def test_4xx_that_persists_is_deferred_with_retry_at(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer, clock: FakeClock
) -> None:
    smtp_server.script("full@example.com", "452 4.2.2 Mailbox full")
    start = clock.now
    guard = make_guard(
        retry=RetryPolicy(attempts=4, initial_wait=2, max_wait=5, jitter=0, defer_for=600)
    )
    result = await guard.send(message("full@example.com"))
    rr = result.recipients["full@example.com"]
    assert (rr.status, rr.reply_code, rr.enhanced_code, rr.attempts) == (
        DeliveryStatus.DEFERRED,
        452,
        "4.2.2",
        4,
    )
    assert clock.sleeps == [2, 4, 5]  # exponential, capped at max_wait
    assert rr.retry_at == start + timedelta(seconds=2 + 4 + 5 + 600)
    assert smtp_server.rcpt_log == ["full@example.com"] * 4
    assert smtp_server.received == []
    assert not await guard.is_suppressed("full@example.com")


async def test_retries_stop_when_the_total_time_is_spent(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer, clock: FakeClock
) -> None:
    smtp_server.script("slow@example.com", "421 4.7.0 Try again later")
    guard = make_guard(
        retry=RetryPolicy(attempts=10, initial_wait=30, max_wait=30, jitter=0, max_total=60)
    )
    result = await guard.send(message("slow@example.com"))
    assert result.recipients["slow@example.com"].attempts == 3  # at t=0, 30 and 60 s
    assert clock.sleeps == [30, 30]


async def test_accepted_recipient_is_not_sent_again_when_data_fails_for_others(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("grey@example.com", "450 4.2.0 later", "250 OK")
    result = await make_guard().send(message(["alice@example.com", "grey@example.com"]))
    assert result.accepted == ["alice@example.com", "grey@example.com"]
    assert smtp_server.accepted == ["alice@example.com", "grey@example.com"]


async def test_4xx_at_data_end_retries_everyone_in_that_transaction(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script_data("451 4.3.0 Temporary local problem")
    result = await make_guard().send(message(["alice@example.com", "bob@example.com"]))
    assert result.accepted == ["alice@example.com", "bob@example.com"]
    assert all(r.attempts == 2 for r in result.recipients.values())
    assert len(smtp_server.received) == 1


async def test_5xx_at_data_end_rejects_without_suppressing(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script_data("554 5.6.0 Message content rejected")
    guard = make_guard()
    result = await guard.send(message(["alice@example.com", "bob@example.com"]))
    for rr in result.recipients.values():
        assert (rr.status, rr.suppressed, rr.reply_code) == (DeliveryStatus.REJECTED, False, 554)
    assert not await guard.is_suppressed("alice@example.com")


async def test_drop_before_data_is_retried(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("flaky@example.com", DROP, "250 OK")
    result = await make_guard().send(message(["alice@example.com", "flaky@example.com"]))
    assert result.accepted == ["alice@example.com", "flaky@example.com"]
    assert result.recipients["alice@example.com"].attempts == 2
    assert smtp_server.accepted == ["alice@example.com", "flaky@example.com"]
    assert smtp_server.connections == 2


async def test_drop_after_data_is_uncertain_and_never_resent(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script_data(DROP)
    guard = make_guard()
    result = await guard.send(message(["alice@example.com", "bob@example.com"]))
    for rr in result.recipients.values():
        assert rr.status is DeliveryStatus.DEFERRED
        assert rr.attempts == 1
        assert rr.reply_code is None
        assert rr.retry_at is None
        assert "uncertain" in rr.detail
    assert len(smtp_server.received) == 1
    assert smtp_server.received[0].dropped


async def test_connection_refused_is_retried_then_deferred(
    make_guard: Callable[..., Guard], clock: FakeClock
) -> None:
    guard = make_guard(adapter=SMTPAdapter("127.0.0.1", free_port(), timeout=2))
    result = await guard.send(message("alice@example.com"))
    rr = result.recipients["alice@example.com"]
    assert (rr.status, rr.reply_code, rr.attempts) == (DeliveryStatus.DEFERRED, None, 3)
    assert rr.detail


async def test_5xx_at_mail_from_rejects_everyone_without_suppressing(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    class RefuseSender:
        async def handle_MAIL(
            self,
            server: object,
            session: object,
            envelope: object,
            address: str,
            options: list[str],
        ) -> str:
            return "550 5.7.1 Sender address rejected: domain blacklisted"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(RefuseSender(), loop=loop), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    guard = make_guard(adapter=SMTPAdapter("127.0.0.1", port))
    result = await guard.send(message(["alice@example.com", "bob@example.com"]))
    for rr in result.recipients.values():
        assert (rr.status, rr.reply_code, rr.suppressed) == (DeliveryStatus.REJECTED, 550, False)
    assert not await guard.is_suppressed("alice@example.com")
    await guard.aclose()
    server.close()
    await server.wait_closed()


async def test_everyone_suppressed_opens_no_connection(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard()
    await guard.suppress("alice@example.com")
    await guard.suppress("bob@example.com", reason="complaint")
    result = await guard.send(message(["alice@example.com", "Bob@Example.com"]))
    assert [r.status for r in result.recipients.values()] == [DeliveryStatus.SUPPRESSED] * 2
    assert result.recipients["bob@example.com"].detail == "suppressed: complaint"
    assert smtp_server.connections == 0
    assert result.message_id is None


async def test_pooled_connection_is_reused_and_a_stale_one_replaced(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard()
    await guard.send(message("alice@example.com"))
    await guard.send(message("bob@example.com"))
    assert smtp_server.connections == 1
    for session in smtp_server._sessions:
        session.transport.abort()
    result = await guard.send(message("carol@example.com"))
    assert result.accepted == ["carol@example.com"]
    assert result.recipients["carol@example.com"].attempts == 1
    assert smtp_server.connections == 2


async def test_every_decision_is_logged_with_addresses_redacted(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("bob@example.com", "550 5.1.1 unknown")
    with capture_logs() as logs:
        await make_guard().send(message(["alice@example.com", "bob@example.com"]))
    events = [e for e in logs if e["event"] == "sendguard.recipient"]
    assert {(e["recipient"], e["status"], e["reply_code"]) for e in events} == {
        ("a***@example.com", "accepted", 250),
        ("b***@example.com", "rejected", 550),
    }
    assert "alice@example.com" not in repr(logs)
    assert "bob@example.com" not in repr(logs)


async def test_redaction_can_be_turned_off(
    make_guard: Callable[..., Guard],
) -> None:
    with capture_logs() as logs:
        await make_guard(redact_addresses=False).send(message("alice@example.com"))
    assert any(e.get("recipient") == "alice@example.com" for e in logs)


@pytest.mark.parametrize("start_tls", [False, None])
async def test_the_adapter_greets_the_server_whatever_the_tls_setting(
    start_tls: bool | None, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    # aiosmtplib's connect() says EHLO only when it considers STARTTLS; a server refuses
    # MAIL before EHLO ("503 Error: send HELO first").
    adapter = SMTPAdapter("127.0.0.1", smtp_server.port, start_tls=start_tls)
    result = await make_guard(adapter=adapter).send(message("alice@example.com"))
    assert result.accepted == ["alice@example.com"]


async def test_a_connection_whose_recipients_were_all_refused_is_pooled_not_leaked(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("gone@example.com", "550 5.1.1 User unknown")
    guard = make_guard()
    await guard.send(message("gone@example.com"))
    again = await guard.send(message("alice@example.com"))
    assert again.accepted == ["alice@example.com"]
    assert smtp_server.connections == 1


def test_a_protocol_error_at_mail_from_pauses_nobody() -> None:
    found = classify("503 Error: send HELO first", stage="mail")
    assert found.action is not Action.PAUSE_SENDER


def test_adapter_options_are_validated() -> None:
    from sendguard import ConfigurationError  # noqa: PLC0415

    with pytest.raises(ConfigurationError, match="exclude each other"):
        SMTPAdapter("smtp.example.com", use_tls=True, start_tls=True)
    with pytest.raises(ConfigurationError, match="both username and password"):
        SMTPAdapter("smtp.example.com", username="u")
    with pytest.raises(ConfigurationError, match="pool_size"):
        SMTPAdapter(pool_size=0)
    assert SMTPAdapter(use_tls=True).port == 465
    assert SMTPAdapter(start_tls=True).port == 587
    assert SMTPAdapter().port == 25


def test_stage_of_a_reply_is_kept() -> None:
    from sendguard import Reply  # noqa: PLC0415

    assert Reply.from_smtp(550, "5.1.1 no", Stage.RCPT).enhanced_code == "5.1.1"
    assert Reply.from_smtp(550, "no such user", Stage.RCPT).enhanced_code is None


async def test_the_adapter_gets_the_callers_object_and_the_headers_the_guard_added() -> None:
    adapter = RecordingAdapter()
    original = object()
    async with Guard(adapter=adapter, bounce_secret="s" * 32) as guard:
        await guard.send(message(to="a@example.com, b@example.com"), original=original)
    assert len(adapter.envelopes) == 2  # signed: one copy each
    for envelope in adapter.envelopes:
        assert envelope.original is original
        names = [name for name, _ in envelope.headers]
        assert names == ["X-Sendguard-Token", "Message-ID"]
        for name, value in envelope.headers:
            assert f"{name}: {value}\r\n".encode() in envelope.data
    mail = message(to="c@example.com")
    mail["Message-ID"] = "<given@sender.example>"
    async with Guard(adapter=adapter) as guard:
        await guard.send(mail)
    assert adapter.envelopes[-1].original is None
    assert adapter.envelopes[-1].headers == ()  # the message had its own Message-ID
