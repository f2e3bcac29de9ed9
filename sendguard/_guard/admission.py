"""Admission: which valid recipients a send may deliver to now, and why the others wait.

Before anything leaves, one store call (``Store.reserve``) checks every recipient against the
suppression list, the sender's pauses, today's warmup quota and the rates the send is held to,
and reserves what it clears.  Outcomes still waiting in the journal hold back what they would
have recorded.  A reservation nobody waited for (a cancelled caller) gives its quota back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sendguard._address import Address, normalize_address
from sendguard._errors import InvalidAddressError, StoreError
from sendguard._guard._common import EPOCH, SendState, log, next_midnight, paused_result
from sendguard._models import DeliveryStatus, RecipientResult
from sendguard._pacing.breaker import SenderStatus, Volume
from sendguard._store import Admission, Admit, Outcome, Quota, Ramp, Reservation, Shape

if TYPE_CHECKING:
    from sendguard._guard.facade import Guard
    from sendguard._guard.recording import Recorder

__all__ = ["Admitter", "validate"]


def validate(wanted: Iterable[str]) -> tuple[dict[str, RecipientResult], dict[str, Address]]:
    """Results for the invalid recipients, and the valid ones by key (first of duplicates)."""
    results: dict[str, RecipientResult] = {}
    valid: dict[str, Address] = {}
    for raw in wanted:
        try:
            address = normalize_address(raw)
        except InvalidAddressError as exc:
            key = raw.strip()
            results.setdefault(key, RecipientResult(key, DeliveryStatus.INVALID, detail=str(exc)))
            continue
        if address.key not in valid:
            valid[address.key] = address
            results[address.key] = RecipientResult(address.key, DeliveryStatus.DEFERRED)
    return results, valid


def _share(cap: int, share: float) -> int:
    """*share* of *cap*, rounded down, but at least 1 of a positive cap."""
    return max(1, math.floor(cap * share)) if cap > 0 else cap


class Admitter:
    """Reserves what a send may deliver: suppressions, pauses, warmup quota and rates."""

    def __init__(self, guard: Guard, recorder: Recorder) -> None:
        self._guard = guard
        self._recorder = recorder

    async def admit(
        self, state: SendState, valid: dict[str, Address], now: datetime, *, share: float = 1.0
    ) -> dict[str, RecipientResult]:
        """Make the recipients the store cleared pending in *state*; the results of the others.

        Sets ``state.quota`` (``None`` when no warmup applies, or the store was down and
        ``on_store_error="send"`` sent without a verdict) and ``state.reserved``.  The send's
        stream may take *share* of the day's cap (what is left stays for the streams before).
        """
        guard = self._guard
        held = self._journal_holds(valid, state.sender, now) if self._recorder.journal else {}
        quota = self.quota(state.sender, now)
        ramp = self.ramp(now)
        if share < 1 and quota is not None:
            # One counter for every stream: a lower stream just stops earlier in it (never
            # at 0 of a positive cap, or a ramp of one stream's mail would never start).
            quota = replace(quota, cap=_share(quota.cap, share))
            if ramp is not None:
                ramp = replace(ramp, caps=tuple(_share(c, share) for c in ramp.caps))
        shapes, shape_of, spread = await self._shapes(state.sender, valid, quota, state)
        admissions = await self._reserve(
            Reservation(
                keys=list(valid),
                now=now,
                quota=quota,
                sender_domain=state.sender.domain,
                bucket=guard.breaker.bucket(now) if guard.breaker else None,
                bucket_seconds=guard.breaker.bucket_seconds if guard.breaker else 0,
                shapes=shapes,
                shape_of=shape_of,
                spread=spread,
                recover=guard.shaping.recover_every if guard.shaping else timedelta(minutes=10),
                ramp=ramp,
            )
        )
        if admissions is None:
            quota = None  # the store is down and on_store_error="send": nothing was reserved
        clear = [Admission(Admit.CLEAR)] * len(valid)
        for key, admission in zip(valid, admissions or clear, strict=True):
            if admission.verdict is Admit.CLEAR:
                state.pending[key] = valid[key]
                if admission.soft:
                    state.had_soft.append(key)
            else:
                held[key] = self._held(key, admission, quota, now)
        state.quota = quota
        state.reserved = len(state.pending) if quota is not None else 0
        return held

    # -- warmup --------------------------------------------------------------------------------

    def ramp(self, now: datetime) -> Ramp | None:
        """The ramp of sending days the store counts, when the schedule counts them."""
        warmup = self._guard.warmup
        if warmup is None or warmup.counting != "sending":
            return None
        today = now.astimezone(UTC).date()
        return Ramp(warmup.caps, (today - EPOCH).days, warmup.idle_restart)

    def quota(self, sender: Address, now: datetime) -> Quota | None:
        """Today's warmup quota of *sender*, when a warmup schedule applies."""
        warmup = self._guard.warmup
        if warmup is None:
            return None
        today = now.astimezone(UTC).date()
        return Quota(sender.domain, today, warmup.cap_on(today))

    async def status(self, sender: str) -> SenderStatus:
        """Where *sender* (a domain) stands: ramp day, sent and cap today, rates, pauses."""
        guard = self._guard
        store = guard.store
        now = guard._clock()
        day = sent = cap = None
        if guard.warmup is not None:
            quota = Quota(sender, now.astimezone(UTC).date(), 0)
            ramp = self.ramp(now)
            day = (
                await store.ramp_day(sender, ramp)
                if ramp is not None
                else guard.warmup.day_of(quota.day)
            )
            cap = guard.warmup.cap_for(day)
            sent = await store.quota_used(quota)
        volume = Volume()
        if guard.breaker is not None:
            volume = await store.volume(sender, guard.breaker.bucket(now))
        pauses = await store.pauses(sender, now)
        whole = next((p for p in pauses if p.recipient_domain == "*"), None)
        why = whole.detail or whole.reason if whole else ""
        if not why and guard.breaker is not None:
            verdict = guard.breaker.verdict(volume)
            why = verdict[1] if verdict else ""
        return SenderStatus(
            sender_domain=sender,
            day=day,
            sent_today=sent,
            cap_today=cap,
            volume=volume,
            paused_until=whole.until if whole else None,
            why=why,
            domain_pauses=tuple(
                (p.recipient_domain, p.until, p.reason) for p in pauses if p.recipient_domain != "*"
            ),
        )

    # -- the reservation -----------------------------------------------------------------------

    def _journal_holds(
        self, valid: dict[str, Address], sender: Address, now: datetime
    ) -> dict[str, RecipientResult]:
        """Take out of *valid* the recipients that outcomes still in the journal hold back."""
        journal = self._recorder.journal
        held: dict[str, RecipientResult] = {}
        for key, address in list(valid.items()):
            entry = journal.suppression(key)
            pause = journal.pause(sender.domain, address.domain, now)
            if entry is not None:
                held[key] = RecipientResult(
                    key,
                    DeliveryStatus.SUPPRESSED,
                    detail=f"suppressed: {entry.reason} (not yet recorded in the store)",
                    reason=entry.reason,
                )
            elif pause is not None:
                held[key] = paused_result(key, pause, attempts=0)
            else:
                continue
            del valid[key]
        return held

    async def _shapes(
        self,
        sender: Address,
        valid: dict[str, Address],
        quota: Quota | None,
        state: SendState,
    ) -> tuple[list[Shape], list[int], int]:
        """The rates this send is held to, each key's rate (1-based), and the spread's."""
        guard = self._guard
        shapes: list[Shape] = []
        index: dict[str, int] = {}
        shape_of: list[int] = []
        if guard.shaping is not None:
            for key, address in valid.items():
                provider = await guard.shaping.resolve(address.domain)
                limit = guard.shaping.limit_for(provider)
                if limit is None:
                    shape_of.append(0)
                    continue
                rate = f"{sender.domain}\t{provider}"
                if rate not in index:
                    shapes.append(Shape(rate, limit.interval, limit.burst, adaptive=True))
                    index[rate] = len(shapes)
                shape_of.append(index[rate])
                state.rate_of[key] = rate
        spread = 0
        if guard.spread_over is not None and quota is not None and quota.cap > 0:
            burst = max(1, math.ceil(quota.cap * guard.spread_burst))
            interval = guard.spread_over.total_seconds() / quota.cap
            shapes.append(Shape(f"{sender.domain}\t@day", interval, burst))
            spread = len(shapes)
        return shapes, shape_of if any(shape_of) else [], spread

    async def _reserve(self, request: Reservation) -> list[Admission] | None:
        """The store's admissions; ``None`` when it failed and the guard sends regardless."""
        if not request.keys:
            return []
        # Given up on (cancelled, or too slow), the reservation may be made all the same: the
        # store then hands it to request.abandoned, which gives its quota back.
        request = replace(
            request, abandoned=lambda admissions: self._unreserve(request, admissions)
        )
        try:
            return await self._recorder.bounded(self._guard.store.reserve(request), "reserve")
        except StoreError as exc:
            if self._guard.on_store_error == "raise":
                raise
            log.warning(
                "sendguard.store_error",
                operation="reserve",
                error=str(exc),
                action="sending without a suppression verdict",
            )
            return None

    def _unreserve(self, request: Reservation, admissions: Sequence[Admission]) -> None:
        """Give back the quota of a reservation nobody waited for."""
        if request.quota is None:
            return
        taken = sum(1 for a in admissions if a.verdict is Admit.CLEAR)
        if taken:
            give_back = Outcome(now=self._guard._clock(), quota=request.quota, give_back=taken)
            self._recorder.spawn(self._recorder.settle(give_back))

    @staticmethod
    def _held(
        key: str, admission: Admission, quota: Quota | None, now: datetime
    ) -> RecipientResult:
        """The result of a recipient the store did not clear for delivery."""
        if admission.verdict is Admit.PAUSED:
            return paused_result(key, admission.pause, attempts=0)
        if admission.verdict is Admit.SUPPRESSED:
            reason = admission.suppression.reason if admission.suppression else "listed"
            return RecipientResult(
                key, DeliveryStatus.SUPPRESSED, detail=f"suppressed: {reason}", reason=reason
            )
        if admission.retry_at is not None:
            return RecipientResult(
                key,
                DeliveryStatus.THROTTLED,
                detail="held back by the sender's rate toward this provider "
                "(shaping, or the day's cap spread over the day)",
                retry_at=admission.retry_at,
            )
        return RecipientResult(
            key,
            DeliveryStatus.THROTTLED,
            detail=f"warmup cap of {quota.cap if quota else 0} for "
            f"{quota.sender_domain if quota else 'the sender'} reached for today",
            retry_at=next_midnight(now),
        )
