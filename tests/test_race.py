"""Eight processes spending one cap at once, through one real Redis and a Redis Cluster."""

from __future__ import annotations

import pytest

from sendguard.testing import ScriptedSMTPServer
from tests.conftest import scratch_redis_store
from tests.race_worker import race


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
    store_url = url.replace("redis://", "redis+cluster://") if server == "cluster" else url
    async with scratch_redis_store(url, prefix, cluster=server == "cluster"):
        totals = await race(
            store_url,
            prefix,
            smtp_server.port,
            workers=workers,
            per_worker=per_worker,
            cap=cap,
            kind=kind,
        )
    assert totals == {"accepted": cap, "throttled": workers * per_worker - cap}
    assert len(smtp_server.accepted) == cap
    assert len(set(smtp_server.accepted)) == cap
