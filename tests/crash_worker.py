"""A process that sends to dead addresses and reports each suppression, until it is killed.

``python -m tests.crash_worker STORE_URL PREFIX PORT COUNT``: eight sends in flight at a time;
one line on stdout per suppression the guard reported, written as soon as it is reported.
"""

from __future__ import annotations

import asyncio
import sys

from sendguard import Guard, RetryPolicy, SMTPAdapter, open_store
from tests.conftest import message


async def main(store_url: str, prefix: str, port: int, count: int) -> None:
    in_flight = asyncio.Semaphore(8)
    async with Guard(
        adapter=SMTPAdapter("127.0.0.1", port, pool_size=8),
        store=open_store(store_url, prefix=prefix),
        retry=RetryPolicy.never(),
    ) as guard:

        async def one(i: int) -> None:
            async with in_flight:
                result = await guard.send(message(f"dead{i}@example.com"))
            for address, outcome in result.recipients.items():
                if outcome.suppressed:
                    sys.stdout.write(f"{address}\n")
                    sys.stdout.flush()

        await asyncio.gather(*(one(i) for i in range(count)))


if __name__ == "__main__":
    url, prefix, port, count = sys.argv[1:]
    asyncio.run(main(url, prefix, int(port), int(count)))
