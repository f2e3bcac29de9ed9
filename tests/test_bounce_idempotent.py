"""A bounce fed twice records once, as a provider's event does; different bounces never merge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from sendguard import Breaker, Guard, SQLiteStore, Store
from sendguard.cli import app
from sendguard.testing import FakeClock, make_arf, make_dsn
from tests.conftest import message

EXPIRED = {"bob@example.com": "451 4.4.7 Delivery time expired (message in the queue too long)"}
UNKNOWN = {
    "bob@example.com": "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown"
}


def original(number: int) -> bytes:
    msg = message("bob@example.com")
    msg["Message-ID"] = f"<{number}@sender.example>"
    return msg.as_bytes()


def without_ids(raw: bytes, own: str | None) -> bytes:
    """*raw* without the original's Message-ID, and with *own* as the bounce's own (or none)."""
    lines = [line for line in raw.split(b"\n") if not line.lower().startswith(b"message-id:")]
    head = [f"Message-ID: {own}".encode()] if own else []
    return b"\n".join(head + lines)


async def test_one_expiry_ingested_three_times_counts_once(
    store: Store, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(store=store)
    bounce = make_dsn(original(1), EXPIRED)
    for _ in range(3):
        (report,) = await guard.ingest_bounce(bounce)
        assert (report.action, report.reason) == ("failed", "expired")
    assert await guard.soft_bounces("bob@example.com") == 1
    # Parsed again from a str, or as an mbox of one, it is still the same bounce.
    await guard.ingest_bounce(bounce.decode())
    await guard.ingest_bounce(b"From MAILER-DAEMON Mon Nov  2 10:00:00 2026\n" + bounce)
    assert await guard.soft_bounces("bob@example.com") == 1


async def test_one_hard_bounce_ingested_twice_suppresses_once(
    store: Store, make_guard: Callable[..., Guard]
) -> None:
    guard = make_guard(store=store)
    bounce = make_dsn(original(1), UNKNOWN)
    (first,) = await guard.ingest_bounce(bounce)
    (again,) = await guard.ingest_bounce(bounce)
    assert (first.suppressed, again.suppressed) == (True, False)
    assert await guard.is_suppressed("bob@example.com")


async def test_different_bounces_are_not_duplicates(
    store: Store, make_guard: Callable[..., Guard], clock: FakeClock
) -> None:
    guard = make_guard(store=store)
    # A delay, then the failure of the same message: the failure counts.
    await guard.ingest_bounce(make_dsn(original(1), EXPIRED, action="delayed"))
    await guard.ingest_bounce(make_dsn(original(1), EXPIRED))
    assert await guard.soft_bounces("bob@example.com") == 1
    # The failure of a later send (a new Message-ID), days later, counts again.
    clock.advance(days=2)
    await guard.ingest_bounce(make_dsn(original(2), EXPIRED))
    assert await guard.soft_bounces("bob@example.com") == 2
    # A failure of the same send for another recipient is another bounce too.
    await guard.ingest_bounce(
        make_dsn(original(2), {"carol@example.com": EXPIRED["bob@example.com"]})
    )
    assert await guard.soft_bounces("carol@example.com") == 1


async def test_without_the_original_message_id_the_bounce_own_id_tells(
    store: Store, make_guard: Callable[..., Guard], clock: FakeClock
) -> None:
    guard = make_guard(store=store)
    first = without_ids(make_dsn(original(1), EXPIRED), "<dsn-1@mx.example>")
    second = without_ids(make_dsn(original(1), EXPIRED), "<dsn-2@mx.example>")
    (report,) = await guard.ingest_bounce(first)
    assert report.original_message_id == ""
    await guard.ingest_bounce(first)
    assert await guard.soft_bounces("bob@example.com") == 1
    clock.advance(days=2)
    await guard.ingest_bounce(second)
    assert await guard.soft_bounces("bob@example.com") == 2
    # No Message-ID at all: the same bytes are the same bounce; another date, another one.
    bare = without_ids(make_dsn(original(1), EXPIRED), None)
    dated = b"Date: Mon, 9 Nov 2026 10:00:00 +0000\n" + bare
    for raw in (bare, bare, dated, dated):
        await guard.ingest_bounce(raw)
    assert await guard.soft_bounces("bob@example.com") == 4


def test_the_cli_ingests_a_bounce_once(tmp_path: Path) -> None:
    path = tmp_path / "expired.eml"
    path.write_bytes(make_dsn(original(1), EXPIRED))
    url = f"sqlite:///{tmp_path / 'sendguard.db'}"
    for _ in range(3):
        result = CliRunner().invoke(app, ["ingest", "--apply", "--store", url, str(path)])
        assert result.exit_code == 0, result.stderr

    async def count() -> int:
        store = SQLiteStore(tmp_path / "sendguard.db")
        try:
            async with Guard(store=store) as guard:
                return await guard.soft_bounces("bob@example.com")
        finally:
            await store.aclose()

    assert asyncio.run(count()) == 1


async def test_a_complaint_fed_twice_counts_once_for_the_breaker(
    make_guard: Callable[..., Guard],
) -> None:
    guard = make_guard(breaker=Breaker(min_volume=1))
    arf = make_arf(original(1), "bob@example.com")
    reports = [await guard.ingest_bounce(arf) for _ in range(2)]
    assert [r.suppressed for (r,) in reports] == [True, False]
    status = await guard.status("sender.example")
    assert status.volume.complaints == 1
