"""sendguard in one screen: no Redis, a local SMTP server, two sends.

The server accepts alice, answers bob with 550 5.1.1 (no such user) and carol with
451 4.7.1 (greylisted).  The first send suppresses bob and defers carol; the second send
skips bob without a single SMTP command for him.

Run: python3 dev.py demo   (or: python examples/quickstart.py in an environment with sendguard)
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

from sendguard import Guard, MemoryStore, RetryPolicy, SendResult, SMTPAdapter
from sendguard.testing import ScriptedSMTPServer


def show(title: str, result: SendResult, rcpts: list[str]) -> None:
    print(f"\n{title}")
    print(f"  {'recipient':<22} {'status':<11} {'reply':<9} {'tries':>5}  detail")
    for rr in result.recipients.values():
        reply = " ".join(str(c) for c in (rr.reply_code, rr.enhanced_code) if c)
        note = rr.detail + (" [suppressed now]" if rr.suppressed else "")
        print(f"  {rr.address:<22} {rr.status.value:<11} {reply:<9} {rr.attempts:>5}  {note}")
    print(f"  RCPT TO seen by the server: {', '.join(rcpts) or '(none)'}")


async def main() -> None:
    async with ScriptedSMTPServer() as server:
        server.script("bob@example.com", "550 5.1.1 <bob@example.com>: Recipient address rejected")
        server.script("carol@example.com", "451 4.7.1 Greylisted, please try again later")

        guard = Guard(
            adapter=SMTPAdapter("127.0.0.1", server.port),
            store=MemoryStore(),
            retry=RetryPolicy(attempts=2, initial_wait=0.1, max_wait=0.2, jitter=0.05),
        )
        async with guard:
            message = EmailMessage()
            message["From"] = "News <news@shop.example>"
            message["To"] = "alice@example.com, Bob@Example.com, carol@example.com"
            message["Subject"] = "Our autumn sale"
            message.set_content("Everything must go.\n")

            first = await guard.send(message)
            show("First send", first, server.rcpt_log)

            server.rcpt_log.clear()
            second = await guard.send(message)
            show("Second send", second, server.rcpt_log)

            entry = await guard.suppression("bob@example.com")
            assert entry is not None
            print(
                f"\nbob@example.com is suppressed: reason={entry.reason}, "
                f"reply={entry.reply_code} {entry.enhanced_code}, source={entry.source}"
            )


if __name__ == "__main__":
    asyncio.run(main())
