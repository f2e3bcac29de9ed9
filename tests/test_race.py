"""Eight processes spending one cap at once, through one real Redis and a Redis Cluster."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from sendguard.testing import ScriptedSMTPServer
from tests.conftest import scratch_redis_store

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("server", ["redis", "cluster"])
@pytest.mark.parametrize(
    ("kind", "per_worker", "cap"),
    [("quota", 1000, 5000), ("rate", 200, 700)],
    ids=["daily-cap", "provider-rate"],
)
async def test_eight_processes_spend_a_cap_exactly(
    server: str,
    kind: str,
    per_worker: int,
    cap: int,
    *,
    request: pytest.FixtureRequest,
    prefix: str,
    smtp_server: ScriptedSMTPServer,
) -> None:
    url = request.getfixturevalue("redis_cluster_url" if server == "cluster" else "redis_url")
    workers = 8
    async with scratch_redis_store(url, prefix, cluster=server == "cluster"):
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.race_worker",
                url,
                prefix,
                str(smtp_server.port),
                str(w),
                str(per_worker),
                str(cap),
                kind,
                server,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for w in range(workers)
        ]
        totals: Counter[str] = Counter()
        for proc in procs:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
            assert proc.returncode == 0, err.decode()
            totals.update(json.loads(out))
    assert totals == {"accepted": cap, "throttled": workers * per_worker - cap}
    assert len(smtp_server.accepted) == cap
    assert len(set(smtp_server.accepted)) == cap
