"""The guard: validate, check suppressions, reserve warmup quota, deliver, retry, record."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from email.message import Message
from types import TracebackType
from typing import Literal, Self

import structlog

from sendguard._adapter import Adapter
from sendguard._address import Address, normalize_address, redact
from sendguard._errors import ConfigurationError, InvalidAddressError, NoRecipientsError, StoreError
from sendguard._memory import MemoryStore
from sendguard._message import check_headers, envelope_recipients, envelope_sender, serialize
from sendguard._models import (
    DeliveryStatus,
    Envelope,
    RecipientResult,
    Reply,
    SendResult,
    Stage,
    Suppression,
)
from sendguard._policy import Verdict, decide
from sendguard._retry import RetryPolicy
from sendguard._smtp import SMTPAdapter
from sendguard._store import Quota, Store
from sendguard._warmup import WarmupSchedule

__all__ = ["Guard"]

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _next_midnight(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=UTC)


@dataclass
class _Delivery:
    """The mutable state of one send while it is being delivered."""

    sender: Address
    pending: dict[str, Address]
    results: dict[str, RecipientResult] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    last: dict[str, Reply] = field(default_factory=dict)
    suppress: dict[str, Reply] = field(default_factory=dict)
    uncertain: int = 0


class Guard:
    """Stands between an application and its mail provider and keeps the sender's name clean.

    ``send`` validates every recipient, drops those on the suppression list, holds back those
    over today's warmup quota, delivers to the rest through the adapter, retries temporary
    failures with backoff, and suppresses addresses the receiving server says do not exist.
    """

    def __init__(
        self,
        *,
        adapter: Adapter | None = None,
        store: Store | None = None,
        retry: RetryPolicy | None = None,
        warmup: WarmupSchedule | None = None,
        on_store_error: Literal["raise", "send"] = "raise",
        redact_addresses: bool = True,
        clock: Clock = _utcnow,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if on_store_error not in ("raise", "send"):
            raise ConfigurationError(
                f"on_store_error must be 'raise' or 'send', not {on_store_error!r}"
            )
        if clock().utcoffset() is None:
            raise ConfigurationError("clock must return timezone-aware datetimes")
        self.adapter = adapter if adapter is not None else SMTPAdapter()
        self.store = store if store is not None else MemoryStore()
        self.retry = retry if retry is not None else RetryPolicy()
        self.warmup = warmup
        self.on_store_error = on_store_error
        self._redact = redact if redact_addresses else str
        self._clock = clock
        self._sleep = sleep
        self._log = structlog.get_logger("sendguard")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the adapter's connections and the store's."""
        try:
            await self.adapter.aclose()
        finally:
            await self.store.aclose()

    # -- the suppression list ------------------------------------------------------------------

    async def suppress(
        self, address: str, *, reason: str = "manual", detail: str = "", source: str = "manual"
    ) -> Suppression:
        """Put *address* on the suppression list (replacing any entry it had)."""
        entry = Suppression(
            address=normalize_address(address).key,
            reason=reason,
            detail=detail,
            source=source,
            created_at=self._clock(),
        )
        await self.store.add([entry], replace=True)
        self._log.info(
            "sendguard.suppressed",
            recipient=self._redact(entry.address),
            reason=reason,
            source=source,
        )
        return entry

    async def unsuppress(self, address: str) -> bool:
        """Take *address* off the suppression list; False if it was not on it."""
        key = normalize_address(address).key
        removed = await self.store.remove(key)
        self._log.info("sendguard.unsuppressed", recipient=self._redact(key), removed=removed)
        return removed

    async def is_suppressed(self, address: str) -> bool:
        """Whether *address* is on the suppression list."""
        return await self.suppression(address) is not None

    async def suppression(self, address: str) -> Suppression | None:
        """The suppression entry of *address*, if it is on the list."""
        return await self.store.get(normalize_address(address).key)

    # -- sending -------------------------------------------------------------------------------

    async def send(
        self,
        message: Message,
        /,
        *,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
    ) -> SendResult:
        """Send *message* to every recipient that may receive it; one result per recipient.

        Recipients are To, Cc and Bcc unless *recipients* is given; Bcc is never transmitted.
        The envelope sender is *sender*, else the message's Sender, else its first From.

        Raises :class:`MessageError` (a header with CR/LF, an invalid sender, no recipients)
        before anything is sent, and :class:`StoreError` when the store gives no verdict.
        """
        check_headers(message)
        envelope_from = normalize_address(
            sender if sender is not None else envelope_sender(message)
        )
        wanted = list(recipients) if recipients is not None else envelope_recipients(message)
        if not wanted:
            raise NoRecipientsError("the message has no recipients (To, Cc, Bcc or recipients=)")

        now = self._clock()
        results: dict[str, RecipientResult] = {}
        valid: dict[str, Address] = {}
        for raw in wanted:
            try:
                address = normalize_address(raw)
            except InvalidAddressError as exc:
                key = raw.strip()
                results.setdefault(
                    key, RecipientResult(key, DeliveryStatus.INVALID, detail=str(exc))
                )
                continue
            if address.key not in valid:
                valid[address.key] = address
                results[address.key] = RecipientResult(address.key, DeliveryStatus.DEFERRED)

        quota = self._quota(envelope_from, now)
        verdicts = await self._reserve(list(valid), quota)
        if verdicts is None:
            quota = None  # the store is down and on_store_error="send": nothing was reserved
        state = _Delivery(sender=envelope_from, pending={})
        for key, verdict in zip(valid, verdicts or [True] * len(valid), strict=True):
            if isinstance(verdict, Suppression):
                results[key] = RecipientResult(
                    key, DeliveryStatus.SUPPRESSED, detail=f"suppressed: {verdict.reason}"
                )
            elif verdict:
                state.pending[key] = valid[key]
            else:
                results[key] = RecipientResult(
                    key,
                    DeliveryStatus.THROTTLED,
                    detail=f"warmup cap of {quota.cap if quota else 0} for {envelope_from.domain} "
                    "reached for today",
                    retry_at=_next_midnight(now),
                )
        reserved = len(state.pending) if quota is not None else 0

        message_id: str | None = None
        if state.pending:
            message_id = message.get("Message-ID")
            added_id = None if message_id else email.utils.make_msgid(domain=envelope_from.domain)
            smtputf8 = envelope_from.needs_smtputf8 or any(
                a.needs_smtputf8 for a in state.pending.values()
            )
            data = serialize(message, message_id=added_id, utf8=smtputf8)
            message_id = message_id or added_id
            await self._deliver(state, message, data, smtputf8)
        results.update(state.results)

        result = SendResult(sender=envelope_from.key, message_id=message_id, recipients=results)
        # Quota stays spent for what was accepted, and for what may have been (no reply to
        # the final dot); everything else reserved is given back.
        give_back = reserved - len(result.accepted) - state.uncertain
        for key in await self._settle(result, quota, give_back, state):
            results[key] = replace(results[key], suppressed=True)
        for rr in results.values():
            self._log_result(rr, message_id)
        return result

    def _quota(self, sender: Address, now: datetime) -> Quota | None:
        if self.warmup is None:
            return None
        today = now.astimezone(UTC).date()
        return Quota(sender.domain, today, self.warmup.cap_on(today))

    async def _reserve(
        self, keys: Sequence[str], quota: Quota | None
    ) -> list[Suppression | bool] | None:
        if not keys:
            return []
        try:
            return await self.store.reserve(keys, quota)
        except StoreError as exc:
            if self.on_store_error == "raise":
                raise
            self._log.warning(
                "sendguard.store_error",
                operation="reserve",
                error=str(exc),
                action="sending without a suppression verdict",
            )
            return None

    async def _deliver(
        self, state: _Delivery, message: Message, data: bytes, smtputf8: bool
    ) -> None:
        async def attempt() -> dict[str, Address]:
            envelope = Envelope(
                sender=state.sender.wire,
                recipients=tuple(a.wire for a in state.pending.values()),
                message=message,
                data=data,
                smtputf8=smtputf8,
            )
            replies = await self.adapter.deliver(envelope)
            retry: dict[str, Address] = {}
            for key, address in state.pending.items():
                reply = replies.get(address.wire) or Reply(
                    None, f"{self.adapter!r} gave no reply for this recipient", Stage.RCPT
                )
                state.attempts[key] = state.attempts.get(key, 0) + 1
                state.last[key] = reply
                verdict = decide(reply)
                if verdict is Verdict.RETRY:
                    retry[key] = address
                    continue
                state.results[key] = self._final(key, reply, verdict, state.attempts[key])
                if verdict is Verdict.SUPPRESS:
                    state.suppress[key] = reply
                elif verdict is Verdict.UNCERTAIN:
                    state.uncertain += 1
            if retry:
                self._log.info(
                    "sendguard.retry",
                    recipients=[self._redact(k) for k in retry],
                    attempt=max(state.attempts[k] for k in retry),
                )
            state.pending = retry
            return retry

        await self.retry.run(attempt, should_retry=bool, clock=self._clock, sleep=self._sleep)
        retry_at = self._clock() + timedelta(seconds=self.retry.defer_for)
        for key in state.pending:
            reply = state.last[key]
            state.results[key] = RecipientResult(
                key,
                DeliveryStatus.DEFERRED,
                reply_code=reply.code,
                enhanced_code=reply.enhanced_code,
                detail=reply.text,
                attempts=state.attempts[key],
                retry_at=retry_at,
            )

    def _final(self, key: str, reply: Reply, verdict: Verdict, attempts: int) -> RecipientResult:
        status = {
            Verdict.ACCEPT: DeliveryStatus.ACCEPTED,
            Verdict.REJECT: DeliveryStatus.REJECTED,
            Verdict.SUPPRESS: DeliveryStatus.REJECTED,
            Verdict.UNCERTAIN: DeliveryStatus.DEFERRED,
        }[verdict]
        return RecipientResult(
            key,
            status,
            reply_code=reply.code,
            enhanced_code=reply.enhanced_code,
            detail=reply.text,
            attempts=attempts,
        )

    async def _settle(
        self, result: SendResult, quota: Quota | None, give_back: int, state: _Delivery
    ) -> list[str]:
        """Record the outcome in one store call; the keys this send newly suppressed."""
        entries = [
            Suppression(
                address=key,
                reason="userunknown",
                reply_code=reply.code,
                enhanced_code=reply.enhanced_code,
                detail=reply.text,
                source="smtp",
                created_at=self._clock(),
            )
            for key, reply in state.suppress.items()
        ]
        give_back = give_back if quota is not None else 0
        if not entries and give_back <= 0:
            return []  # the common case: everything accepted, nothing to record
        try:
            added = await self.store.settle(quota, give_back, entries)
        except StoreError as exc:
            self._log.error(
                "sendguard.store_error",
                operation="settle",
                error=str(exc),
                unrecorded=[self._redact(e.address) for e in entries],
            )
            if self.on_store_error == "raise":
                raise StoreError(str(exc), result=result) from exc
            return []
        return [entry.address for entry, new in zip(entries, added, strict=True) if new]

    def _log_result(self, rr: RecipientResult, message_id: str | None) -> None:
        level = (
            "warning" if rr.status in (DeliveryStatus.REJECTED, DeliveryStatus.DEFERRED) else "info"
        )
        getattr(self._log, level)(
            "sendguard.recipient",
            recipient=self._redact(rr.address),
            status=str(rr.status),
            reply_code=rr.reply_code,
            enhanced_code=rr.enhanced_code,
            attempts=rr.attempts,
            suppressed=rr.suppressed,
            message_id=message_id,
        )
