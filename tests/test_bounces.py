"""Bounces that arrive after the send: parsing, trust (signed tokens) and what they record."""

from __future__ import annotations

import base64
import codecs
import email
import hashlib
import hmac
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sendguard import (
    BounceParseError,
    Breaker,
    ConfigurationError,
    Guard,
    RetryPolicy,
    Store,
    parse_bounce,
)
from sendguard._bounces.dsn import bounce_message
from sendguard._bounces.token import BounceSigner
from sendguard.testing import FakeClock, ScriptedSMTPServer, make_arf, make_dsn
from tests.conftest import message

CORPUS = Path(__file__).parent / "corpus" / "emails"
SECRET = "a secret of at least sixteen bytes"


def sample(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


# -- parse_bounce on real bounces ------------------------------------------------------------


def test_postfix_dsn_gives_one_report_per_recipient() -> None:
    (report,) = parse_bounce(sample("lhost-postfix-04.eml"))
    assert report.action == "failed"
    assert report.recipient.endswith("@example.jp") or "@" in report.recipient
    assert report.reporting_mta
    assert report.original_message_id.startswith("<")


def test_dsn_groups_written_without_blank_lines_are_split() -> None:
    reports = parse_bounce(sample("lhost-aol-03.eml"))
    assert [(r.recipient, r.reason, r.status, r.hard) for r in reports] == [
        ("sabineko@example.jp", "mailboxfull", "5.2.2", False),
        ("mikeneko@example.jp", "userunknown", "5.1.1", True),
    ]
    assert reports[1].remote_mta == "mx.example.jp"


def test_exim_notice_without_dsn_names_each_recipient() -> None:
    reports = parse_bounce(sample("lhost-exim-02.eml"))
    assert [(r.recipient, r.reason, r.reply_code) for r in reports] == [
        ("kijitora@example.jp", "userunknown", 550),
        ("sabatora@example.jp", "userunknown", 550),
    ]
    assert all(r.action == "failed" and r.hard for r in reports)


def test_qmail_notice() -> None:
    (report,) = parse_bounce(sample("lhost-qmail-01.eml"))
    assert (report.recipient, report.reason, report.hard) == (
        "kijitora@example.ne.jp",
        "userunknown",
        True,
    )


def test_gmail_delay_notice_is_delayed_and_temporary() -> None:
    (report,) = parse_bounce(sample("lhost-gmail-09.eml"))
    assert (report.action, report.reason, report.status) == ("delayed", "expired", "4.0.947")
    assert not report.hard


def test_dmarc_refusal_is_sender_side_and_never_hard() -> None:
    (report,) = parse_bounce(sample("lhost-dragonfly-01.eml"))
    assert report.reason == "authfailure"
    assert report.status == "5.7.26"
    assert not report.hard


def test_arf_complaint() -> None:
    (report,) = parse_bounce(sample("arf-02.eml"))
    assert (report.action, report.reason, report.feedback_type) == (
        "complaint",
        "feedback",
        "abuse",
    )
    assert "@" in report.recipient


def test_rfc3834_auto_reply_is_reported_and_never_hard() -> None:
    (report,) = parse_bounce(sample("rfc3834-01.eml"))
    assert (report.action, report.reason, report.hard) == ("autoreply", "vacation", False)


def test_amazon_ses_notifications() -> None:
    (bounce,) = parse_bounce(sample("lhost-amazonses-10.eml"))
    assert (bounce.action, bounce.reason, bounce.hard) == ("failed", "userunknown", True)
    (complaint,) = parse_bounce(sample("lhost-amazonses-11.eml"))
    assert (complaint.action, complaint.recipient) == (
        "complaint",
        "complaint@simulator.amazonses.com",
    )
    (delivered,) = parse_bounce(sample("lhost-amazonses-13.eml"))
    assert (delivered.action, delivered.status) == ("delivered", "2.6.0")


def test_declared_boundary_missing_from_the_body_is_repaired() -> None:
    (report,) = parse_bounce(sample("rhost-google-02.eml"))
    assert (report.reason, report.status, report.hard) == ("userunknown", "5.1.1", True)


def test_an_ordinary_message_is_not_a_bounce() -> None:
    assert parse_bounce(message("alice@example.com").as_bytes()) == []


def test_parse_accepts_str_bytes_and_message() -> None:
    raw = sample("lhost-postfix-04.eml")
    from_bytes = parse_bounce(raw)
    assert parse_bounce(raw.decode("utf-8", "surrogateescape")) == from_bytes
    assert parse_bounce(email.message_from_bytes(raw)) == from_bytes


def test_a_leading_byte_order_mark_is_read_past() -> None:
    raw = sample("lhost-postfix-04.eml")
    expected = parse_bounce(raw)
    assert expected
    assert parse_bounce(codecs.BOM_UTF8 + raw) == expected
    assert parse_bounce("\ufeff" + raw.decode("utf-8", "surrogateescape")) == expected
    assert bounce_message(codecs.BOM_UTF8 + raw).items() == bounce_message(raw).items()
    assert bounce_message("\ufeff" + raw.decode("utf-8", "surrogateescape"))["From"]
    mbox = b"".join(b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n" + raw + b"\n" for _ in "ab")
    assert parse_bounce(codecs.BOM_UTF8 + mbox) == expected * 2
    # Only a leading mark, and only one: a second is not a header field name.
    with pytest.raises(BounceParseError):
        parse_bounce(codecs.BOM_UTF8 * 2 + raw)


@pytest.mark.usefixtures("smtp_server")
async def test_a_signed_bounce_behind_a_byte_order_mark_is_ingested(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(bounce_secret=SECRET)
    original = await sent(guard, smtp_server)
    dsn = make_dsn(original, {"bob@example.com": "550 5.1.1 User unknown"})
    (report,) = await guard.ingest_bounce(codecs.BOM_UTF8 + dsn)
    assert (report.trusted, report.suppressed) == (True, True)


@pytest.mark.parametrize(
    "junk",
    [b"", b"\x00\x01\x02", b"hello world", b"<html></html>", "\u2603".encode(), b"\n\n\n"],
)
def test_input_that_is_not_an_email_raises_a_typed_error(junk: bytes) -> None:
    with pytest.raises(BounceParseError):
        parse_bounce(junk)


def test_wrong_input_type_raises_a_typed_error() -> None:
    with pytest.raises(BounceParseError):
        parse_bounce(12)  # type: ignore[arg-type]


# -- ingestion: what a bounce records ------------------------------------------------------


async def copies(
    guard: Guard, smtp_server: ScriptedSMTPServer, to: str | list[str]
) -> dict[str, bytes]:
    """Send through *guard*; each recipient's copy exactly as the server received it."""
    smtp_server.received.clear()
    await guard.send(message(to))
    found: dict[str, bytes] = {}
    for received in smtp_server.received:
        for rcpt in received.rcpt_tos:
            found[rcpt] = received.data
    return found


async def sent(guard: Guard, smtp_server: ScriptedSMTPServer, to: str = "bob@example.com") -> bytes:
    """Send through *guard* to one recipient and return the message as the server got it."""
    (data,) = (await copies(guard, smtp_server, to)).values()
    return data


@pytest.mark.usefixtures("smtp_server")
async def test_signed_hard_bounce_suppresses(
    store: Store, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(store=store, bounce_secret=SECRET)
    sent_to = await copies(guard, smtp_server, ["bob@example.com", "carol@example.com"])
    assert all(b"X-Sendguard-Token: v2." in data for data in sent_to.values())
    assert len(smtp_server.received) == 2  # one transaction (one token) per recipient
    (bob,) = await guard.ingest_bounce(
        make_dsn(
            sent_to["bob@example.com"],
            {
                "bob@example.com": "550 5.1.1 <bob@example.com>: Recipient address rejected: "
                "User unknown"
            },
        )
    )
    (carol,) = await guard.ingest_bounce(
        make_dsn(
            sent_to["carol@example.com"],
            {
                "carol@example.com": "554 5.7.1 Service unavailable; Client host blocked "
                "using zen.spamhaus.org"
            },
        )
    )
    assert (bob.trusted, bob.suppressed, bob.reason) == (True, True, "userunknown")
    assert (carol.trusted, carol.suppressed, carol.reason) == (True, False, "blocked")
    entry = await guard.suppression("bob@example.com")
    assert entry is not None
    assert (entry.reason, entry.source, entry.enhanced_code) == ("userunknown", "bounce", "5.1.1")
    assert not await guard.is_suppressed("carol@example.com")


@pytest.mark.usefixtures("smtp_server")
async def test_unsigned_or_forged_bounces_are_reported_but_change_nothing(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(bounce_secret=SECRET)
    other = make_guard(bounce_secret="another secret, sixteen bytes+")
    genuine = await sent(guard, smtp_server)
    foreign = await sent(other, smtp_server)
    unsigned = message("bob@example.com").as_bytes()
    tampered = genuine.replace(b"X-Sendguard-Token: v2.", b"X-Sendguard-Token: v2.1")
    other_id = genuine.replace(b"Message-ID: <", b"Message-ID: <x")
    user_unknown = {"bob@example.com": "550 5.1.1 User unknown"}
    for original in (unsigned, foreign, tampered, other_id):
        with capture_logs() as logs:
            (report,) = await guard.ingest_bounce(make_dsn(original, user_unknown))
        assert (report.reason, report.trusted, report.suppressed) == ("userunknown", False, False)
        assert any(e["event"] == "sendguard.bounce_untrusted" for e in logs)
    assert not await guard.is_suppressed("bob@example.com")


@pytest.mark.usefixtures("smtp_server")
async def test_a_token_expires(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer, clock: FakeClock
) -> None:
    guard = make_guard(bounce_secret=SECRET)
    original = await sent(guard, smtp_server)
    clock.advance(days=31)
    (report,) = await guard.ingest_bounce(make_dsn(original, {"bob@example.com": "550 5.1.1 x"}))
    assert not report.trusted
    assert not await guard.is_suppressed("bob@example.com")


@pytest.mark.usefixtures("smtp_server")
async def test_a_bounce_cannot_vouch_for_itself_with_its_own_header(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(bounce_secret=SECRET)
    original = await sent(guard, smtp_server)
    token = next(line for line in original.split(b"\r\n") if line.startswith(b"X-Sendguard-Token"))
    bare = message("bob@example.com").as_bytes()
    forged = token + b"\n" + make_dsn(bare, {"bob@example.com": "550 5.1.1 User unknown"})
    (report,) = await guard.ingest_bounce(forged)
    assert not report.trusted


@pytest.mark.usefixtures("smtp_server")
async def test_without_a_secret_every_bounce_is_trusted(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard()
    original = await sent(guard, smtp_server)
    assert b"X-Sendguard-Token" not in original
    (report,) = await guard.ingest_bounce(make_dsn(original, {"bob@example.com": "550 5.1.1 no"}))
    assert report.suppressed
    assert await guard.is_suppressed("bob@example.com")


@pytest.mark.usefixtures("smtp_server")
async def test_signed_complaint_suppresses_with_reason_feedback(
    store: Store, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(store=store, bounce_secret=SECRET)
    original = await sent(guard, smtp_server)
    (report,) = await guard.ingest_bounce(make_arf(original, "bob@example.com"))
    assert (report.action, report.suppressed) == ("complaint", True)
    entry = await guard.suppression("bob@example.com")
    assert entry is not None
    assert (entry.reason, entry.source) == ("feedback", "complaint")


@pytest.mark.usefixtures("smtp_server")
async def test_a_complaint_suppresses_only_the_complainer(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(bounce_secret=SECRET)
    sent_to = await copies(guard, smtp_server, ["alice@example.com", "bob@example.com"])
    (report,) = await guard.ingest_bounce(
        make_arf(sent_to["alice@example.com"], "alice@example.com")
    )
    assert report.recipient == "alice@example.com"
    assert await guard.is_suppressed("alice@example.com")
    assert not await guard.is_suppressed("bob@example.com")


def test_a_complaint_naming_nobody_does_not_fall_back_to_a_list_of_recipients() -> None:
    original = message(["alice@example.com", "bob@example.com"]).as_bytes()
    raw = make_arf(original, "alice@example.com").replace(
        b"Original-Rcpt-To: alice@example.com\n", b""
    )
    (report,) = parse_bounce(raw)
    assert (report.action, report.recipient) == ("complaint", "")


@pytest.mark.usefixtures("smtp_server")
async def test_soft_bounces_from_dsns_count_and_escalate(
    store: Store,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    clock: FakeClock,
) -> None:
    guard = make_guard(store=store, bounce_secret=SECRET, retry=RetryPolicy(attempts=1))
    for day in range(5):
        original = await sent(guard, smtp_server)
        full = make_dsn(original, {"bob@example.com": "552 5.2.2 Mailbox full"})
        (report,) = await guard.ingest_bounce(full)
        assert report.reason == "mailboxfull"
        assert report.suppressed == (day == 4)
        clock.advance(days=2)
    entry = await guard.suppression("bob@example.com")
    assert entry is not None
    assert entry.reason == "softbounce"


@pytest.mark.usefixtures("smtp_server")
async def test_a_delivery_report_resets_soft_bounces(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard()
    original = await sent(guard, smtp_server)
    await guard.ingest_bounce(make_dsn(original, {"bob@example.com": "452 4.2.2 Mailbox full"}))
    assert await guard.soft_bounces("bob@example.com") == 1
    delivered = make_dsn(original, {"bob@example.com": "250 2.0.0 Ok"}, action="delivered")
    (report,) = await guard.ingest_bounce(delivered)
    assert report.action == "delivered"
    assert await guard.soft_bounces("bob@example.com") == 0


async def test_auto_replies_change_nothing(make_guard: Callable[..., Guard]) -> None:
    guard = make_guard()
    (report,) = await guard.ingest_bounce(sample("rfc3834-01.eml"))
    assert (report.action, report.suppressed) == ("autoreply", False)
    assert not await guard.is_suppressed(report.recipient)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="16 bytes"):
        Guard(bounce_secret="short")


# -- a token speaks for its own recipient only ------------------------------------------------


@pytest.mark.usefixtures("smtp_server")
async def test_a_subscriber_cannot_suppress_others_with_the_token_of_their_copy(
    store: Store, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(store=store, bounce_secret=SECRET)
    others = [f"reader{i}@example.org" for i in range(40)]
    sent_to = await copies(guard, smtp_server, ["mallory@example.com", *others])
    assert len(set(sent_to.values())) == 41  # every copy carries a token of its own
    own = sent_to["mallory@example.com"]
    victims = dict.fromkeys(others, "550 5.1.1 User unknown")
    for forged in (
        make_dsn(own, victims),
        make_dsn(own, {**victims, "mallory@example.com": "550 5.1.1 User unknown"}),
        make_dsn(sent_to[others[0]], {others[1]: "550 5.1.1 User unknown"}),
    ):
        reports = await guard.ingest_bounce(forged)
        for report in reports:
            assert report.trusted == (report.recipient == "mallory@example.com")
    for address in others:
        assert not await guard.is_suppressed(address)


@pytest.mark.usefixtures("smtp_server")
async def test_a_forged_complaint_naming_many_counts_only_the_token_holder(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    breaker = Breaker(min_volume=5, complaint_warn=0.1, complaint_pause=0.5)
    guard = make_guard(bounce_secret=SECRET, breaker=breaker)
    named = [f"r{i}@example.com" for i in range(5)]
    sent_to = await copies(guard, smtp_server, ["mallory@example.com", *named])
    arf = make_arf(sent_to["mallory@example.com"], "mallory@example.com")
    rcpts = "".join(f"Original-Rcpt-To: {a}\n" for a in named).encode()
    arf = arf.replace(b"Original-Rcpt-To: mallory@example.com\n", rcpts)
    with capture_logs() as logs:
        reports = await guard.ingest_bounce(arf)
    assert reports
    assert not any(r.trusted for r in reports)
    assert not any(e["event"] == "sendguard.breaker" for e in logs)
    status = await guard.status("sender.example")
    assert (status.volume.complaints, status.paused_until) == (0, None)
    for address in named:
        assert not await guard.is_suppressed(address)


@pytest.mark.usefixtures("smtp_server")
async def test_a_token_holder_is_one_bounce_however_often_the_bounce_names_them(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    breaker = Breaker(min_volume=5, bounce_warn=0.25, bounce_pause=0.5)
    guard = make_guard(bounce_secret=SECRET, breaker=breaker)
    others = [f"r{i}@example.org" for i in range(50)]
    sent_to = await copies(guard, smtp_server, ["mallory@example.com", *others[:9]])
    own = sent_to["mallory@example.com"]
    group = "Final-Recipient: rfc822; {to}\nOriginal-Recipient: rfc822;mallory@example.com\n"
    dsn = make_dsn(own, {"mallory@example.com": "550 5.1.1 User unknown"}).decode()
    one = dsn[dsn.index("Final-Recipient") : dsn.index("\n\n", dsn.index("Final-Recipient"))]
    # Her own group fifty times, then as the original recipient of fifty others.
    for groups in (
        [one] * 50,
        [one.replace(group.format(to="mallory@example.com"), group.format(to=a)) for a in others],
    ):
        await guard.unsuppress("mallory@example.com")
        with capture_logs() as logs:
            reports = await guard.ingest_bounce(dsn.replace(one, "\n\n".join(groups)))
        assert len(reports) == 50
        assert all(r.trusted for r in reports)
        assert await guard.is_suppressed("mallory@example.com")
        assert not any(e["event"] == "sendguard.breaker" for e in logs)
    status = await guard.status("sender.example")
    assert (status.volume.sends, status.volume.bounces, status.paused_until) == (10, 2, None)
    for address in others:
        assert not await guard.is_suppressed(address)


@pytest.mark.usefixtures("smtp_server")
async def test_tokens_of_the_message_bound_format_are_no_longer_accepted(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer, clock: FakeClock
) -> None:
    guard = make_guard(bounce_secret=SECRET)
    original = await sent(guard, smtp_server)
    signer = BounceSigner.from_secret(SECRET)
    message_id = email.message_from_bytes(original)["Message-ID"]
    issued = int(clock().timestamp())
    digest = hmac.new(signer.secret, f"v1\n{message_id}\n{issued}".encode(), hashlib.sha256)
    v1 = f"v1.{issued}.{base64.urlsafe_b64encode(digest.digest()[:18]).decode().rstrip('=')}"
    old = re.sub(rb"X-Sendguard-Token: \S+", f"X-Sendguard-Token: {v1}".encode(), original)
    (report,) = await guard.ingest_bounce(make_dsn(old, {"bob@example.com": "550 5.1.1 x"}))
    assert not report.trusted


# -- forwarded and aliased mail ----------------------------------------------------------------


def forwarded_dsn(
    original: bytes, sent_to: str, forwarded_to: str, reply: str = "550 5.1.1 User unknown"
) -> bytes:
    """A DSN as Postfix writes it when the MX of *sent_to* forwarded the mail to *forwarded_to*
    (a .forward, a virtual alias), whose MX refused it with *reply*."""
    dsn = make_dsn(original, {forwarded_to: reply})
    dsn = dsn.replace(
        f"<{forwarded_to}>: host".encode(),
        f"<{forwarded_to}> (expanded from <{sent_to}>): host".encode(),
    )
    return dsn.replace(
        f"Original-Recipient: rfc822;{forwarded_to}".encode(),
        f"Original-Recipient: rfc822;{sent_to}".encode(),
    )


def notice_of(original: bytes, body: str) -> bytes:
    """A notice without a DSN part: *body*, then the original's headers inline."""
    headers = original.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode()
    return (
        "From: Mail Delivery System <Mailer-Daemon@mx.forwarder.example>\n"
        "To: news@sender.example\nSubject: Mail delivery failed: returning message to sender\n\n"
        f"{body}\n\n------ This is a copy of the message, including all the headers. ------\n\n"
        f"{headers}\n\nHi there.\n"
    ).encode()


POSTFIX_NOTICE = """This is the mail system at host mx.forwarder.example.

<{to}> (expanded from
    <{sent}>): host mx.to.example[192.0.2.7] said: 550 5.1.1
    <{to}>: Recipient address rejected: User unknown (in reply to RCPT TO
    command)"""
EXIM_NOTICE = """This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {to}
    ({how}generated from {sent})
    host mx.to.example [192.0.2.7]
    SMTP error from remote mail server after RCPT TO:<{to}>:
    550 5.1.1 <{to}>: Recipient address rejected: User unknown"""
SENDMAIL_NOTICE = """   ----- The following addresses had permanent fatal errors -----
{to}
    (reason: 550 5.1.1 <{to}>... User Unknown)
    (expanded from: <{sent}>)"""


def test_a_dsn_of_forwarded_mail_names_the_address_sent_to() -> None:
    original = message("alice@example.com").as_bytes()
    (report,) = parse_bounce(
        forwarded_dsn(original, "alice@example.com", "alice@forwarded.example")
    )
    assert (report.recipient, report.original_recipient) == (
        "alice@forwarded.example",
        "alice@example.com",
    )
    assert (report.reason, report.hard) == ("userunknown", True)
    # RFC 6533's utf-8 address type, its \x{HHHH} escapes decoded, as for Final-Recipient.
    utf8 = forwarded_dsn(original, "x@x.example", "alice@forwarded.example").replace(
        b"Original-Recipient: rfc822;x@x.example",
        b"Original-Recipient: utf-8; j\\x{00F6}rg@example.de",
    )
    assert parse_bounce(utf8)[0].original_recipient == "jörg@example.de"
    # The same address twice, or none, is no forwarding.
    (plain,) = parse_bounce(make_dsn(original, {"alice@example.com": "550 5.1.1 User unknown"}))
    assert (plain.recipient, plain.original_recipient) == ("alice@example.com", "")
    # Real ones: Postfix's virtual alias; sendmail's alias, where Final-Recipient is the address
    # sent to and X-Actual-Recipient the one it expanded to.
    (postfix,) = parse_bounce(sample("lhost-postfix-49.eml"))
    assert (postfix.recipient, postfix.original_recipient) == (
        "kijitora-neko-nyaan@ntt.example.ne.jp",
        "toraneko@neko.example.co.jp",
    )
    (sendmail,) = parse_bounce(sample("lhost-sendmail-03.eml"))
    assert (sendmail.recipient, sendmail.original_recipient) == ("bounce0@example.org", "")


@pytest.mark.parametrize(
    "body",
    [
        POSTFIX_NOTICE,
        EXIM_NOTICE.replace("{how}", ""),
        EXIM_NOTICE.replace("{how}", "ultimately "),
        SENDMAIL_NOTICE,
    ],
    ids=["postfix", "exim", "exim-ultimately", "sendmail"],
)
def test_a_notice_of_forwarded_mail_names_the_address_sent_to(body: str) -> None:
    text = body.format(to="alice@forwarded.example", sent="alice@example.com")
    original = message("alice@example.com").as_bytes()
    (report,) = parse_bounce(notice_of(original, text))
    assert (report.recipient, report.original_recipient, report.reason) == (
        "alice@forwarded.example",
        "alice@example.com",
        "userunknown",
    )
    # Beside a recipient that was not forwarded, before or after it: each keeps its own.
    bob = "<bob@example.org>: host mx.example.org[192.0.2.8] said: 550 5.1.1 User unknown"
    for both in (f"{bob}\n\n{text}", f"{text}\n\n{bob}"):
        reports = parse_bounce(notice_of(original, both))
        assert sorted((r.recipient, r.original_recipient, r.reason) for r in reports) == [
            ("alice@forwarded.example", "alice@example.com", "userunknown"),
            ("bob@example.org", "", "userunknown"),
        ]


@pytest.mark.usefixtures("smtp_server")
async def test_a_signed_bounce_of_forwarded_mail_suppresses_the_address_sent_to(
    store: Store, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(store=store, bounce_secret=SECRET)
    exim = EXIM_NOTICE.format(to="alice@forwarded.example", sent="alice@example.com", how="")
    for shape in ("dsn", "notice"):
        await guard.unsuppress("alice@example.com")
        sent_to = await copies(guard, smtp_server, ["alice@example.com", "bob@example.com"])
        copy = sent_to["alice@example.com"]
        if shape == "dsn":
            bounce = forwarded_dsn(copy, "alice@example.com", "alice@forwarded.example")
        else:
            bounce = notice_of(copy, exim)
        with capture_logs() as logs:
            (report,) = await guard.ingest_bounce(bounce)
        assert (report.trusted, report.suppressed) == (True, True)
        assert (report.recipient, report.original_recipient) == (
            "alice@forwarded.example",
            "alice@example.com",
        )
        entry = await guard.suppression("alice@example.com")
        assert entry is not None
        assert (entry.reason, entry.source) == ("userunknown", "bounce")
        assert not await guard.is_suppressed("alice@forwarded.example")
        (event,) = [e for e in logs if e["event"] == "sendguard.bounce"]
        assert (event["recipient"], event["forwarded_to"]) == (
            "a***@example.com",
            "a***@forwarded.example",
        )
    assert not await guard.is_suppressed("bob@example.com")


@pytest.mark.usefixtures("smtp_server")
async def test_forwarding_fields_do_not_widen_what_a_token_speaks_for(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard(bounce_secret=SECRET)
    sent_to = await copies(
        guard, smtp_server, ["mallory@example.com", "victim@example.org", "other@example.net"]
    )
    own = sent_to["mallory@example.com"]
    # Someone else's address as Original-Recipient, beside a third party's or the victim's.
    for sent, forwarded in (
        ("victim@example.org", "other@example.net"),
        ("victim@example.org", "victim@forwarded.example"),
        ("other@example.net", "victim@example.org"),
    ):
        (report,) = await guard.ingest_bounce(forwarded_dsn(own, sent, forwarded))
        assert (report.trusted, report.suppressed) == (False, False)
        (report,) = await guard.ingest_bounce(
            notice_of(own, POSTFIX_NOTICE.format(to=forwarded, sent=sent))
        )
        assert (report.trusted, report.suppressed) == (False, False)
    # The forger's own address on either side: it speaks for that address alone.
    for sent, forwarded in (
        ("mallory@example.com", "victim@example.org"),
        ("victim@example.org", "mallory@example.com"),
    ):
        await guard.unsuppress("mallory@example.com")
        (report,) = await guard.ingest_bounce(forwarded_dsn(own, sent, forwarded))
        assert (report.trusted, report.suppressed) == (True, True)
        assert await guard.is_suppressed("mallory@example.com")
    for address in ("victim@example.org", "victim@forwarded.example", "other@example.net"):
        assert not await guard.is_suppressed(address)
    # A victim's genuine copy cannot be pointed at anyone else either.
    victim = sent_to["victim@example.org"]
    (report,) = await guard.ingest_bounce(forwarded_dsn(victim, "other@example.net", "x@y.example"))
    assert not report.trusted
    assert not await guard.is_suppressed("other@example.net")


@pytest.mark.usefixtures("smtp_server")
async def test_without_a_secret_a_forwarded_bounce_suppresses_the_address_sent_to(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    guard = make_guard()
    original = await sent(guard, smtp_server, "alice@example.com")
    (report,) = await guard.ingest_bounce(
        forwarded_dsn(original, "alice@example.com", "alice@forwarded.example")
    )
    assert (report.trusted, report.suppressed) == (True, True)
    assert await guard.is_suppressed("alice@example.com")
    assert not await guard.is_suppressed("alice@forwarded.example")


@pytest.mark.usefixtures("smtp_server")
async def test_a_real_postfix_dsn_of_a_virtual_alias_suppresses_the_address_sent_to(
    store: Store, make_guard: Callable[..., Guard]
) -> None:
    """tests/data/postfix-forwarded-01.eml is real: a guard with SECRET, on the fake clock's
    start, sent to alice@example.com through Postfix 3.7 (Debian, run privately), whose
    virtual_alias_maps forwarded it to alice@forwarded.example at an aiosmtpd server that
    answered 550 5.1.1; Postfix returned this DSN."""
    raw = (Path(__file__).parent / "data" / "postfix-forwarded-01.eml").read_bytes()
    (parsed,) = parse_bounce(raw)
    assert (parsed.recipient, parsed.original_recipient, parsed.reason, parsed.hard) == (
        "alice@forwarded.example",
        "alice@example.com",
        "userunknown",
        True,
    )
    other = make_guard(store=store, bounce_secret="another secret, sixteen bytes+")
    (report,) = await other.ingest_bounce(raw)
    assert not report.trusted
    guard = make_guard(store=store, bounce_secret=SECRET)
    (report,) = await guard.ingest_bounce(raw)
    assert (report.trusted, report.suppressed) == (True, True)
    entry = await guard.suppression("alice@example.com")
    assert entry is not None
    assert (entry.reason, entry.enhanced_code) == ("userunknown", "5.1.1")
    assert not await guard.is_suppressed("alice@forwarded.example")
