"""One process of the warmup race: send N one-recipient messages at once, print the outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from collections import Counter

import structlog

from sendguard import Guard, RedisStore, RetryPolicy, SMTPAdapter, WarmupSchedule
from tests.conftest import message


async def main(
    redis_url: str, prefix: str, port: int, *, worker: int, count: int, cap: int
) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    today = dt.datetime.now(dt.UTC).date()
    async with Guard(
        adapter=SMTPAdapter("127.0.0.1", port, pool_size=4),
        store=RedisStore.from_url(redis_url, prefix=prefix),
        warmup=WarmupSchedule.from_table({1: cap}, started_on=today),
        retry=RetryPolicy.never(),
    ) as guard:
        results = await asyncio.gather(
            *(guard.send(message(f"w{worker}-{i}@example.com")) for i in range(count))
        )
    statuses = Counter(str(rr.status) for r in results for rr in r.recipients.values())
    print(json.dumps(statuses))


if __name__ == "__main__":
    url, prefix, port, worker, count, cap = sys.argv[1:]
    asyncio.run(main(url, prefix, int(port), worker=int(worker), count=int(count), cap=int(cap)))
