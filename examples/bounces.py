"""Bounces that come back later: classify them, trust only your own, suppress the dead.

A guard with a bounce secret sends one message to three recipients through a local SMTP server
(which accepts everyone, as a relay does); each copy carries a token for its own recipient.
Then these e-mails arrive in the bounce mailbox:

* DSNs for that message: bob's mailbox does not exist, carol's server blocked our IP;
* a forged DSN claiming dave is unknown, without any token;
* a forged DSN in which alice returns her own copy's token but names dave;
* an ARF complaint from alice's provider.

Run: python3 dev.py run python examples/bounces.py
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

from sendguard import BounceReport, Guard, SMTPAdapter, classify
from sendguard.testing import ScriptedSMTPServer, make_arf, make_dsn

SECRET = "change me: at least sixteen bytes"  # noqa: S105 (a demo's secret)


def show(title: str, reports: list[BounceReport]) -> None:
    print(f"\n{title}")
    for r in reports:
        print(
            f"  {r.recipient:<20} {r.action:<9} {r.status:<6} {r.reason:<12} "
            f"hard={'yes' if r.hard else 'no ':<3} trusted={'yes' if r.trusted else 'no ':<3} "
            f"suppressed={'yes' if r.suppressed else 'no'}"
        )


async def main() -> None:
    for reply in (
        "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
    ):
        found = classify(reply)
        print(f"classify: {reply[:40]}... -> {found.reason}, {found.action}")

    async with ScriptedSMTPServer() as server:
        guard = Guard(adapter=SMTPAdapter("127.0.0.1", server.port), bounce_secret=SECRET)
        async with guard:
            message = EmailMessage()
            message["From"] = "news@shop.example"
            message["To"] = "alice@example.com, bob@example.com, carol@example.com"
            message["Subject"] = "Our autumn sale"
            message.set_content("Everything must go.\n")
            await guard.send(message)
            # Each copy as it went out, with the X-Sendguard-Token of its recipient.
            sent = {m.rcpt_tos[0]: m.data for m in server.received}

            for rcpt, reply in (
                ("bob@example.com", "550 5.1.1 <bob@example.com>: User unknown"),
                ("carol@example.com", "554 5.7.1 Client host blocked using zen.spamhaus.org"),
            ):
                dsn = make_dsn(sent[rcpt], {rcpt: reply})
                show(f"A DSN for our message to {rcpt}", await guard.ingest_bounce(dsn))

            unknown = {"dave@example.com": "550 5.1.1 User unknown"}
            forged = make_dsn(message.as_bytes(), unknown)  # the same text, no token of ours
            show("A forged DSN", await guard.ingest_bounce(forged))
            borrowed = make_dsn(sent["alice@example.com"], unknown)  # alice's token, not dave's
            show("A DSN with alice's token about dave", await guard.ingest_bounce(borrowed))

            complaint = make_arf(sent["alice@example.com"], "alice@example.com")
            show("A complaint", await guard.ingest_bounce(complaint))

            print("\nSuppression list now:")
            for address in (
                "alice@example.com",
                "bob@example.com",
                "carol@example.com",
                "dave@example.com",
            ):
                entry = await guard.suppression(address)
                print(f"  {address:<20} {entry.reason if entry else '-'}")


if __name__ == "__main__":
    asyncio.run(main())
