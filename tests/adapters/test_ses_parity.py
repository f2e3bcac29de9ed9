"""SES notifications read the same whether they arrive by SNS (HTTPS) or as e-mail.

The same notification goes to one guard through the SES adapter's SNS verifier and
``ingest_events`` and to another as the e-mail SNS sends (``ingest_bounce``); after each, the
two stores must say the same about every address and the sender: suppressed and why, soft
bounces on record, pauses, and what the breaker counted.
"""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from typing import Any

import pytest
from sendguard_ses import SNSVerifier

from sendguard import Breaker, Guard, MemoryStore, Rule, Rules
from tests.adapters.test_ses import NOW, TOPIC, Fetcher, sns

SENDER = "news@shop.example"
ADDRESSES = ("gone@example.com", "full@example.com", "angry@example.com", "ok@example.com")


def bounce(
    recipient: str, kind: str, subtype: str, diagnostic: str, status: str = ""
) -> dict[str, Any]:
    return {
        "bounce": {
            "bounceType": kind,
            "bounceSubType": subtype,
            "reportingMTA": "dsn; a1-2.smtp-out.eu-west-1.amazonses.com",
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": diagnostic,
                }
            ],
        },
        "eventType": "Bounce",
    }


def delay(recipient: str, diagnostic: str) -> dict[str, Any]:
    return {
        "eventType": "DeliveryDelay",
        "deliveryDelay": {
            "delayType": "TransientCommunicationFailure",
            "delayedRecipients": [
                {"emailAddress": recipient, "status": "4.4.7", "diagnosticCode": diagnostic}
            ],
        },
    }


def complaint(recipient: str) -> dict[str, Any]:
    return {
        "eventType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": recipient}],
            "complaintFeedbackType": "abuse",
        },
    }


def delivery(recipient: str) -> dict[str, Any]:
    return {
        "eventType": "Delivery",
        "delivery": {"recipients": [recipient], "smtpResponse": "250 2.0.0 OK queued"},
    }


NOTIFICATIONS: list[tuple[str, dict[str, Any]]] = [
    ("hard", bounce("gone@example.com", "Permanent", "General", "smtp; 550 5.1.1 no such user")),
    ("soft", bounce("full@example.com", "Transient", "MailboxFull", "smtp; 452 4.2.2 over quota")),
    ("delay", delay("full@example.com", "smtp; 421 4.2.2 mailbox full, try later")),
    ("soft-again", bounce("full@example.com", "Transient", "General", "smtp; 452 4.2.2 full")),
    ("delivered", delivery("full@example.com")),
    ("listed", bounce("ok@example.com", "Permanent", "Suppressed", "Amazon SES suppressed it")),
    (
        "sender-blocked",
        bounce(
            "angry@example.com",
            "Permanent",
            "General",
            "smtp; 550 5.7.1 Service unavailable; client host [192.0.2.1] blocked using "
            "zen.spamhaus.org",
        ),
    ),
    (
        "user-rule",
        bounce("full@example.com", "Permanent", "General", "smtp; 550 casella piena"),
    ),
    ("complaint", complaint("angry@example.com")),
]


def guard() -> Guard:
    return Guard(
        store=MemoryStore(),
        rules=Rules([Rule("mailboxfull", r"casella piena")]),
        breaker=Breaker(),
        clock=lambda: NOW,
    )


async def state(g: Guard) -> dict[str, object]:
    seen: dict[str, object] = {}
    for address in ADDRESSES:
        entry = await g.suppression(address)
        seen[address] = (entry.reason if entry else None, await g.soft_bounces(address))
    status = await g.status("shop.example")
    seen["pauses"] = sorted((p.recipient_domain, p.reason) for p in await g.pauses("shop.example"))
    seen["volume"] = (status.volume.bounces, status.volume.complaints)
    return seen


def as_email(body: str) -> EmailMessage:
    """What SNS sends to an e-mail subscription of the topic (the JSON, then a footer)."""
    mail = EmailMessage()
    mail["From"] = "AWS Notifications <no-reply@sns.amazonaws.com>"
    mail["To"] = "bounces@shop.example"
    mail["Subject"] = "AWS Notification Message"
    mail["Message-ID"] = f"<{abs(hash(body))}@email.amazonses.com>"
    mail.set_content(body + "\n\n--\nIf you wish to stop receiving notifications ...\n")
    return mail


async def test_sns_and_email_leave_the_same_state_after_every_notification() -> None:
    over_sns, by_email = guard(), guard()
    verifier = SNSVerifier(topic_arns=[TOPIC], fetch=Fetcher(), clock=lambda: NOW)
    try:
        for i, (name, facts) in enumerate(NOTIFICATIONS):
            payload = {
                **facts,
                "mail": {
                    "timestamp": (NOW - dt.timedelta(minutes=1)).isoformat(),
                    "source": SENDER,
                    "messageId": f"m{i}",
                },
            }
            body = sns("Notification", payload, message_id=f"sns-{i}")
            await over_sns.ingest_events(verifier.parse({}, body))
            await by_email.ingest_bounce(as_email(body))
            assert await state(over_sns) == await state(by_email), name
        final = await state(by_email)
    finally:
        await over_sns.aclose()
        await by_email.aclose()
    # And the state is the one the verdict calls for, not merely the same wrong one.
    assert final["gone@example.com"] == ("userunknown", 0)
    assert final["ok@example.com"] == ("suppressed", 0)  # SES's own suppression list
    assert final["angry@example.com"] == ("feedback", 0)  # blocked the sender, then complained
    # The user's rule read "casella piena" as a full mailbox on both paths: a soft bounce
    # counted after the delivery reset the earlier ones, not a suppression.
    assert final["full@example.com"] == (None, 1)
    assert final["pauses"] == [("example.com", "blocked")]


@pytest.mark.parametrize("name", [n for n, _ in NOTIFICATIONS])
async def test_each_notification_alone(name: str) -> None:
    payload = dict(NOTIFICATIONS)[name]
    payload = {**payload, "mail": {"source": SENDER, "messageId": "m-alone"}}
    body = sns("Notification", payload)
    verifier = SNSVerifier(topic_arns=[TOPIC], fetch=Fetcher(), clock=lambda: NOW)
    over_sns, by_email = guard(), guard()
    try:
        await over_sns.ingest_events(verifier.parse({}, body))
        await by_email.ingest_bounce(as_email(body))
        assert await state(over_sns) == await state(by_email)
    finally:
        await over_sns.aclose()
        await by_email.aclose()
