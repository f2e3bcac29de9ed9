"""Soft-bounce escalation through the guard: N soft failures over M days suppress an address."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from sendguard import DeliveryStatus, Guard, RetryPolicy, SMTPAdapter, SoftBouncePolicy, Store
from sendguard.testing import FakeClock, ScriptedSMTPServer
from tests.conftest import message

pytestmark = pytest.mark.usefixtures("smtp_server")

FULL = "552 5.2.2 Mailbox full"
ONCE = RetryPolicy(attempts=1)


async def test_five_soft_bounces_over_a_week_suppress_the_address(
    store: Store,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    clock: FakeClock,
) -> None:
    smtp_server.script("full@example.com", FULL)
    guard = make_guard(store=store, retry=ONCE)
    for day in range(4):
        result = await guard.send(message("full@example.com"))
        rr = result.recipients["full@example.com"]
        assert (rr.status, rr.reason, rr.suppressed) == (
            DeliveryStatus.REJECTED,
            "mailboxfull",
            False,
        )
        assert await guard.soft_bounces("full@example.com") == day + 1
        clock.advance(days=2)
    # The fifth, on day 8: five soft bounces spread over more than seven days.
    result = await guard.send(message("full@example.com"))
    rr = result.recipients["full@example.com"]
    assert rr.suppressed
    entry = await guard.suppression("full@example.com")
    assert entry is not None
    assert entry.reason == "softbounce"
    assert "Mailbox full" in entry.detail

    smtp_server.rcpt_log.clear()
    after = await guard.send(message("full@example.com"))
    assert after.recipients["full@example.com"].status is DeliveryStatus.SUPPRESSED
    assert smtp_server.rcpt_log == []


async def test_many_soft_bounces_in_one_day_do_not_suppress(
    store: Store, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("full@example.com", FULL)
    guard = make_guard(store=store, retry=ONCE)
    for _ in range(12):
        await guard.send(message("full@example.com"))
    assert await guard.soft_bounces("full@example.com") == 12
    assert not await guard.is_suppressed("full@example.com")


async def test_a_delivery_resets_the_count(
    store: Store,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    clock: FakeClock,
) -> None:
    smtp_server.script("box@example.com", FULL, FULL, FULL, FULL, "250 OK", FULL)
    mx = SMTPAdapter("127.0.0.1", smtp_server.port, confirms_delivery=True)
    guard = make_guard(store=store, retry=ONCE, adapter=mx)
    for _ in range(4):
        await guard.send(message("box@example.com"))
        clock.advance(days=3)
    assert await guard.soft_bounces("box@example.com") == 4
    delivered = await guard.send(message("box@example.com"))
    assert delivered.accepted == ["box@example.com"]
    assert await guard.soft_bounces("box@example.com") == 0
    clock.advance(days=3)
    await guard.send(message("box@example.com"))
    assert await guard.soft_bounces("box@example.com") == 1
    assert not await guard.is_suppressed("box@example.com")


async def test_a_relay_accepting_the_message_is_no_proof_of_delivery(
    store: Store, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    # The relay queues the message; its bounce may arrive later.  The count must survive.
    smtp_server.script("box@example.com", FULL, "250 OK")
    guard = make_guard(store=store, retry=ONCE)
    await guard.send(message("box@example.com"))
    accepted = await guard.send(message("box@example.com"))
    assert accepted.accepted == ["box@example.com"]
    assert await guard.soft_bounces("box@example.com") == 1


async def test_a_temporary_soft_bounce_counts_once_per_send_after_its_retries(
    store: Store, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("full@example.com", "452 4.2.2 Mailbox full")
    guard = make_guard(store=store, retry=RetryPolicy(attempts=3, jitter=0))
    result = await guard.send(message("full@example.com"))
    assert result.recipients["full@example.com"].status is DeliveryStatus.DEFERRED
    assert result.recipients["full@example.com"].attempts == 3
    assert await guard.soft_bounces("full@example.com") == 1


async def test_the_policy_is_configurable(
    store: Store,
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    clock: FakeClock,
) -> None:
    smtp_server.script("full@example.com", FULL)
    guard = make_guard(
        store=store, retry=ONCE, soft_bounce=SoftBouncePolicy(threshold=2, span=timedelta(hours=1))
    )
    await guard.send(message("full@example.com"))
    clock.advance(3600)
    second = await guard.send(message("full@example.com"))
    assert second.recipients["full@example.com"].suppressed


async def test_unsuppress_forgets_the_soft_bounces_too(
    store: Store, make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("full@example.com", FULL)
    guard = make_guard(store=store, retry=ONCE)
    await guard.send(message("full@example.com"))
    await guard.suppress("full@example.com")
    assert await guard.unsuppress("full@example.com")
    assert await guard.soft_bounces("full@example.com") == 0
