"""Delivery: hand the admitted recipients to the adapter, judge each reply, retry, conclude.

Every reply goes through the one verdict (:func:`sendguard._bounces.verdict.judge_reply`): accepted,
suppressed (the address is dead), a soft failure counted, a refusal of the sender (which
pauses the sender toward that domain and suppresses no one), or a temporary failure retried
with backoff.  :meth:`Deliverer.outcome` turns what a send learned (finished or cut off) into
the one store write that records it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from email.message import Message
from typing import TYPE_CHECKING

from sendguard._address import Address
from sendguard._bounces.classify import Classification
from sendguard._bounces.token import TOKEN_HEADER
from sendguard._bounces.verdict import Decision, counts_as_bounce, judge_reply, pause_for
from sendguard._errors import MessageEncodingError, SendGuardError
from sendguard._guard._common import (
    ACCEPTED,
    NOTHING,
    SendState,
    entry,
    final_result,
    log,
    paused_result,
)
from sendguard._message import serialize
from sendguard._models import DeliveryStatus, Envelope, Reply, Stage
from sendguard._store import Outcome, Pause

if TYPE_CHECKING:
    from sendguard._guard.facade import Guard

__all__ = ["Deliverer"]

_STATUS = {
    Decision.ACCEPT: DeliveryStatus.ACCEPTED,
    Decision.REJECT: DeliveryStatus.REJECTED,
    Decision.SUPPRESS: DeliveryStatus.REJECTED,
    Decision.UNCERTAIN: DeliveryStatus.DEFERRED,
}


class Deliverer:
    """Delivers one admitted send through the adapter and learns from every reply."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    async def transmit(
        self, state: SendState, message: Message, serialized: tuple[bytes, bool], now: datetime
    ) -> str:
        """Deliver *message* (its bytes and their mode) to the pending recipients; its ID."""
        data, smtputf8 = serialized
        if smtputf8 and not (
            state.sender.needs_smtputf8 or any(a.needs_smtputf8 for a in state.pending.values())
        ):
            # The recipients that needed SMTPUTF8 were held back: plain SMTP if it encodes so.
            with contextlib.suppress(MessageEncodingError):
                data, smtputf8 = serialize(message, message_id=None), False
        given = message.get("Message-ID")
        added_id = None if given else email.utils.make_msgid(domain=state.sender.domain)
        if added_id is not None:
            data = f"Message-ID: {added_id}\r\n".encode("ascii") + data
            state.headers = (("Message-ID", added_id),)
        await self._deliver(state, message, data, smtputf8, (str(given or added_id), now))
        return str(given or added_id)

    def outcome(self, state: SendState) -> Outcome:
        """What a send (finished, or stopped half-way) changes in the store."""
        guard = self._guard
        quota, reserved = state.quota, state.reserved
        if not (
            state.suppress or state.soft or state.pauses or state.slowdowns or state.had_soft
        ) and (quota is None or reserved == state.accepted + state.uncertain + state.in_flight):
            return NOTHING  # the common case: every recipient reserved was accepted
        accepted = [k for k, rr in state.results.items() if rr.status is ACCEPTED]
        # Quota stays spent for what was accepted, and for what may have been (no reply to
        # the final dot, or a delivery cut off while in flight); the rest is given back.
        spent = len(accepted) + state.uncertain + state.in_flight
        clock = guard._clock
        source = guard.adapter.source
        return Outcome(
            now=clock(),
            quota=quota,
            give_back=reserved - spent if quota else 0,
            suppressions=[entry(k, found, source, clock()) for k, found in state.suppress.items()],
            soft_failures=[entry(k, found, source, clock()) for k, found in state.soft.items()],
            soft_resets=[k for k in state.had_soft if k in accepted]
            if guard.adapter.confirms_delivery
            else [],
            pauses=list(state.pauses.values()),
            soft_policy=guard.soft_bounce,
            sender_domain=state.sender.domain,
            breaker=guard.breaker,
            # A reply is final when permanent: a deferred soft failure may still be delivered.
            bounces=sum(
                counts_as_bounce(f, final=f.permanent, suppressed=True)
                for f in state.suppress.values()
            )
            + sum(
                counts_as_bounce(f, final=f.permanent, suppressed=False)
                for f in state.soft.values()
            ),
            slowdowns=sorted(state.slowdowns),
            slow_max=guard.shaping.slow_factor_max if guard.shaping else 64,
            recover=guard.shaping.recover_every if guard.shaping else timedelta(minutes=10),
        )

    # -- one attempt ---------------------------------------------------------------------------

    def _envelopes(
        self,
        state: SendState,
        message: Message,
        data: bytes,
        smtputf8: bool,
        signing: tuple[str, datetime],
    ) -> list[Envelope]:
        """One envelope for the recipients still pending, or, when signing, one each.

        A bounce token binds the recipient it was sent to (so a recipient cannot forge
        bounces about anyone else), so signed mail is one transaction per recipient.
        """
        pending = list(state.pending.values())
        signer = self._guard._signer
        if signer is None:
            wires = tuple(a.wire for a in pending)
            return [
                Envelope(
                    state.sender.wire,
                    wires,
                    message,
                    data,
                    smtputf8,
                    headers=state.headers,
                    original=state.original,
                )
            ]
        message_id, issued = signing
        envelopes = []
        for a in pending:
            token = signer.sign(message_id, a.key, issued)
            envelopes.append(
                Envelope(
                    state.sender.wire,
                    (a.wire,),
                    message,
                    f"{TOKEN_HEADER}: {token}\r\n".encode() + data,
                    smtputf8,
                    headers=((TOKEN_HEADER, token), *state.headers),
                    original=state.original,
                )
            )
        return envelopes

    async def _call_adapter(self, envelope: Envelope) -> Mapping[str, Reply]:
        """The adapter's replies; an adapter that raises made the delivery uncertain."""
        adapter = self._guard.adapter
        try:
            return await adapter.deliver(envelope)
        except SendGuardError:
            raise
        except Exception as exc:  # noqa: BLE001 (any failure of the adapter's is an answer)
            log.exception("sendguard.adapter_error", adapter=repr(adapter))
            # It may have sent the message before it failed: never re-send automatically.
            detail = f"delivery uncertain: {adapter!r} raised {exc!r}"
            reply = Reply(None, detail, Stage.DATA_END)
            return dict.fromkeys(envelope.recipients, reply)

    def _learn(
        self, state: SendState, recipients: Mapping[str, Address], replies: Mapping[str, Reply]
    ) -> dict[str, Address]:
        """Decide each of *recipients* by its reply (in *replies*); those to retry."""
        guard = self._guard
        retry: dict[str, Address] = {}
        for key, address in recipients.items():
            reply = replies.get(address.wire) or Reply(
                None, f"{guard.adapter!r} gave no reply for this recipient", Stage.RCPT
            )
            attempts = state.attempts[key] = state.attempts.get(key, 0) + 1
            decision, found = judge_reply(reply, guard.rules)
            state.last[key] = (reply, found)
            if found is not None and found.reason == "ratelimited" and key in state.rate_of:
                state.slowdowns.add(state.rate_of[key])  # "slow down": halve the rate
            if decision is Decision.PAUSE and found is not None:
                pause = state.pauses.setdefault(
                    address.domain, self._pause(state.sender, address.domain, found)
                )
                state.results[key] = (
                    final_result(key, reply, found, DeliveryStatus.REJECTED, attempts)
                    if found.permanent
                    else paused_result(key, pause, attempts, reply, found)
                )
            elif decision is Decision.RETRY:
                if address.domain in state.pauses:  # refused the sender meanwhile
                    pause = state.pauses[address.domain]
                    state.results[key] = paused_result(key, pause, attempts, reply, found)
                else:
                    retry[key] = address
            else:
                state.results[key] = final_result(key, reply, found, _STATUS[decision], attempts)
                if decision is Decision.ACCEPT:
                    state.accepted += 1
                if decision is Decision.SUPPRESS and found is not None:
                    state.suppress[key] = found
                elif decision is Decision.UNCERTAIN:
                    state.uncertain += 1
                    state.results[key] = replace(state.results[key], uncertain=True)
                elif found is not None and found.soft:
                    state.soft[key] = found
        return retry

    # -- attempts, with retries ----------------------------------------------------------------

    async def _deliver(
        self,
        state: SendState,
        message: Message,
        data: bytes,
        smtputf8: bool,
        signing: tuple[str, datetime],
    ) -> None:
        """Attempt, and retry what the retry policy allows; what is left is DEFERRED."""
        guard = self._guard

        async def attempt() -> dict[str, Address]:
            envelopes = self._envelopes(state, message, data, smtputf8, signing)
            replies: dict[str, Reply] = {}

            async def one(envelope: Envelope) -> None:
                replies.update(await self._call_adapter(envelope))

            state.in_flight = len(state.pending)
            try:
                if len(envelopes) == 1:
                    await one(envelopes[0])  # the common case, without a task per attempt
                else:
                    await asyncio.gather(*(one(e) for e in envelopes))
            except asyncio.CancelledError:
                # What the copies that came back said is learned, even if the caller is gone.
                answered = {k: a for k, a in state.pending.items() if a.wire in replies}
                retry = self._learn(state, answered, replies)
                unanswered = {k: a for k, a in state.pending.items() if k not in answered}
                state.in_flight = len(unanswered)
                state.pending = {**unanswered, **retry}
                raise
            state.in_flight = 0
            retry = self._learn(state, state.pending, replies)
            if retry:
                log.info(
                    "sendguard.retry",
                    recipients=[guard._redact(k) for k in retry],
                    attempt=max(state.attempts[k] for k in retry),
                )
            state.pending = retry
            return retry

        def not_before(_: object) -> float | None:
            waits = [state.last[k][0].retry_after or 0.0 for k in state.pending]
            return max(waits, default=0.0) or None

        await guard.retry.run(
            attempt,
            should_retry=bool,
            clock=guard._clock,
            sleep=guard._sleep,
            not_before=not_before,
        )
        wait = max(guard.retry.defer_for, not_before(None) or 0.0)
        retry_at = guard._clock() + timedelta(seconds=wait)
        for key in state.pending:
            reply, found = state.last[key]
            state.results[key] = replace(
                final_result(key, reply, found, DeliveryStatus.DEFERRED, state.attempts[key]),
                retry_at=retry_at,
            )
            if found is not None and found.soft:
                state.soft[key] = found

    def _pause(self, sender: Address, recipient_domain: str, found: Classification) -> Pause:
        """The pause of *sender* toward *recipient_domain* that the refusal *found* calls for."""
        guard = self._guard
        return pause_for(
            sender.domain,
            recipient_domain,
            found,
            guard._clock(),
            (guard.pause_for, guard.transient_pause_for),
        )
