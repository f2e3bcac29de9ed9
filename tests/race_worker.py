"""One process of a race: send N one-recipient messages at once, print the outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from collections import Counter

import structlog

from sendguard import Guard, RedisStore, RetryPolicy, Shaping, SMTPAdapter, WarmupSchedule
from tests.conftest import message


async def main(
    redis_url: str,
    prefix: str,
    port: int,
    *,
    worker: int,
    count: int,
    cap: int,
    kind: str,
    cluster: bool,
) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    today = dt.datetime.now(dt.UTC).date()
    warmup = shaping = None
    if kind == "quota":
        warmup = WarmupSchedule.from_table({1: cap}, started_on=today)
    else:  # a rate whose burst is the cap and whose refill is negligible during the race
        shaping = Shaping({"*": f"{cap}/day"}, burst=cap)
    async with Guard(
        adapter=SMTPAdapter("127.0.0.1", port, pool_size=4),
        store=RedisStore.from_url(redis_url, prefix=prefix, cluster=cluster),
        retry=RetryPolicy.never(),
        warmup=warmup,
        shaping=shaping,
    ) as guard:
        results = await asyncio.gather(
            *(guard.send(message(f"w{worker}-{i}@example.com")) for i in range(count))
        )
    statuses = Counter(str(rr.status) for r in results for rr in r.recipients.values())
    print(json.dumps(statuses))


if __name__ == "__main__":
    url, prefix, port, worker, count, cap, kind, cluster = sys.argv[1:]
    asyncio.run(
        main(
            url,
            prefix,
            int(port),
            worker=int(worker),
            count=int(count),
            cap=int(cap),
            kind=kind,
            cluster=cluster == "cluster",
        )
    )
