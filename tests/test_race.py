"""Eight processes spending one daily cap at once, through one real Redis."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

from sendguard.testing import ScriptedSMTPServer

ROOT = Path(__file__).resolve().parent.parent


async def test_eight_processes_share_a_daily_cap_exactly(
    redis_store: object, redis_url: str, prefix: str, smtp_server: ScriptedSMTPServer
) -> None:
    workers, per_worker, cap = 8, 25, 100
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.race_worker",
            redis_url,
            prefix,
            str(smtp_server.port),
            str(w),
            str(per_worker),
            str(cap),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for w in range(workers)
    ]
    totals: Counter[str] = Counter()
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
        totals.update(json.loads(out))
    assert totals == {"accepted": cap, "throttled": workers * per_worker - cap}
    assert len(smtp_server.accepted) == cap
    assert len(set(smtp_server.accepted)) == cap
