"""A race: processes sending one-recipient messages at once, all spending one cap.

``python -m tests.race_worker STORE_URL PREFIX PORT WORKER COUNT CAP KIND`` is one process:
it sends COUNT messages at once and prints the outcome; :func:`race` runs several.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from collections import Counter

from sendguard import Guard, RetryPolicy, Shaping, SMTPAdapter, WarmupSchedule, open_store
from tests.conftest import message, python_module


async def race(
    store_url: str, prefix: str, port: int, *, workers: int, per_worker: int, cap: int, kind: str
) -> Counter[str]:
    """Run *workers* processes at once; the statuses of all their recipients."""
    procs = [
        await python_module(
            "tests.race_worker",
            *(store_url, prefix, str(port), str(w), str(per_worker), str(cap), kind),
        )
        for w in range(workers)
    ]
    totals: Counter[str] = Counter()
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
        assert proc.returncode == 0, err.decode()
        totals.update(json.loads(out))
    return totals


async def main(
    store_url: str, prefix: str, port: int, *, worker: int, count: int, cap: int, kind: str
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    warmup = shaping = None
    if kind == "quota":
        warmup = WarmupSchedule.from_table({1: cap}, started_on=today)
    else:  # a rate whose burst is the cap and whose refill is negligible during the race
        shaping = Shaping({"*": f"{cap}/day"}, burst=cap)
    async with Guard(
        adapter=SMTPAdapter("127.0.0.1", port, pool_size=4),
        store=open_store(store_url, prefix=prefix),
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
    url, prefix, port, worker, count, cap, kind = sys.argv[1:]
    asyncio.run(
        main(url, prefix, int(port), worker=int(worker), count=int(count), cap=int(cap), kind=kind)
    )
