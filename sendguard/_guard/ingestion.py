"""Ingestion: bounces, complaints and provider events that arrive after the send.

Each observation goes through the one verdict (:mod:`sendguard._bounces.verdict`) and is recorded in
one store call, idempotently: a bounce read twice or an event delivered twice counts once.
With a bounce secret, a bounce changes something only for the recipient whose signed token
it brings back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import replace
from email.message import Message
from typing import TYPE_CHECKING

from sendguard._bounces.dsn import BounceReport, bounce_id, bounce_message, parse_bounce
from sendguard._bounces.events import DeliveryEvent
from sendguard._bounces.token import find_token
from sendguard._bounces.verdict import Verdict, judge_event, judge_report, pause_for
from sendguard._guard._common import bounce_key, entry, log, newly_suppressed
from sendguard._guard.recording import log_pause
from sendguard._models import Suppression
from sendguard._store import Outcome, Pause

if TYPE_CHECKING:
    from sendguard._guard.facade import Guard
    from sendguard._guard.recording import Recorder

__all__ = ["Ingester"]


class Ingester:
    """Records what bounce reports and provider events say about addresses and senders."""

    def __init__(self, guard: Guard, recorder: Recorder) -> None:
        self._guard = guard
        self._recorder = recorder

    # -- bounce e-mails ------------------------------------------------------------------------

    async def ingest_bounce(self, raw: bytes | str | Message) -> list[BounceReport]:
        """Read a bounce and record what its trusted reports say; its reports, marked."""
        redact = self._guard._redact
        reports, found, identity = await asyncio.to_thread(self._read_bounce, raw)
        if not reports:
            return []
        trust = self._trusted(found, reports)
        if not all(ok for ok, _ in trust):
            log.warning(
                "sendguard.bounce_untrusted",
                recipients=[
                    redact(r.recipient)
                    for r, (ok, _) in zip(reports, trust, strict=True)
                    if r.recipient and not ok
                ],
                reasons=[r.reason for r, (ok, _) in zip(reports, trust, strict=True) if not ok],
                why="no token of this guard for that recipient in the returned headers",
            )
        trusted = [(r, key) for r, (ok, key) in zip(reports, trust, strict=True) if ok]
        outcome = self._bounce_outcome(trusted, identity)
        newly: set[str] = set()
        if not outcome.empty:
            settled = await self._recorder.bounded(self._recorder.record(outcome), "settle")
            newly = set(newly_suppressed(outcome, settled))
            for pause in outcome.pauses if not settled.duplicate else ():
                log_pause(pause)
        result = []
        for report, (ok, key) in zip(reports, trust, strict=True):
            if not ok:
                result.append(replace(report, trusted=False))
                continue
            done = key is not None and key in newly
            result.append(replace(report, trusted=True, suppressed=done))
            log.info(
                "sendguard.bounce",
                recipient=redact(key) if key else None,
                forwarded_to=(
                    redact(report.recipient)
                    if report.recipient and key != bounce_key(report.recipient)
                    else None
                ),
                action=report.action,
                reason=report.reason,
                status=report.status,
                hard=report.hard,
                suppressed=done,
            )
        return result

    def _read_bounce(
        self, raw: bytes | str | Message
    ) -> tuple[list[BounceReport], tuple[str, str] | None, str]:
        """The bounce's reports, its token (when signing) and its id, off the event loop."""
        message = bounce_message(raw)
        reports = parse_bounce(message, rules=self._guard.rules)
        found = find_token(message) if reports and self._guard._signer is not None else None
        return reports, found, bounce_id(message, reports) if reports else ""

    def _trusted(
        self, found: tuple[str, str] | None, reports: Sequence[BounceReport]
    ) -> list[tuple[bool, str | None]]:
        """Per report, whether it is trusted, and the key of the address it speaks for.

        A report about forwarded mail names two addresses: the one sent to
        (``original_recipient``) and the one it was forwarded to (``recipient``).  With a
        secret, a report is trusted when the bounce's token (*found*) is this guard's for
        either, and speaks for that one alone: the token was made for one address, so a forger
        who names their own address beside someone else's speaks for their own only.  Without
        a secret every report is trusted and speaks for the address sent to.
        """
        signer = self._guard._signer
        if signer is None:
            return [
                (True, bounce_key(r.original_recipient) or bounce_key(r.recipient)) for r in reports
            ]
        now = self._guard._clock()
        trust: list[tuple[bool, str | None]] = []
        for report in reports:
            verified = None
            for key in map(bounce_key, (report.recipient, report.original_recipient)):
                if found and key and signer.verify(found[0], found[1], key, now):
                    verified = key
                    break
            trust.append((verified is not None, verified))
        return trust

    def _bounce_outcome(
        self, reports: Sequence[tuple[BounceReport, str | None]], identity: str = ""
    ) -> Outcome:
        """What trusted *reports* record, each under the key of the address it speaks for."""
        # One bounce speaks for an address once, by its weightiest report: a token holder who
        # writes a group for their own address a thousand times (or names it as the original
        # recipient of a thousand others) is one bounce, not enough to trip the breaker.
        weightiest: dict[str, tuple[BounceReport, Verdict]] = {}
        for report, key in reports:
            if key is not None:
                verdict = judge_report(report)
                known = weightiest.get(key)
                if known is None or verdict.weight > known[1].weight:
                    weightiest[key] = (report, verdict)
        judged = [
            (
                key,
                verdict,
                "complaint" if verdict.complaint else "bounce",
                report.original_sender.rpartition("@")[2].lower(),
            )
            for key, (report, verdict) in weightiest.items()
        ]
        senders = {r.original_sender.rpartition("@")[2].lower() for r, _ in reports}
        outcome = self._observed(judged, sender=senders.pop() if len(senders) == 1 else "")
        # A bounce fed again (re-delivered, or read twice) records nothing the second time,
        # as a provider's event does; one that changes nothing needs no id kept.
        changes = any(verdict.changes for _, verdict, _, _ in judged)
        return replace(outcome, event_id=f"bounce\t{identity}" if identity and changes else "")

    # -- provider events -----------------------------------------------------------------------

    async def ingest_events(self, events: Iterable[DeliveryEvent]) -> list[DeliveryEvent]:
        """Record each event in one atomic step; the events, marked."""
        redact = self._guard._redact
        done: list[DeliveryEvent] = []
        for event in events:
            key = bounce_key(event.recipient)
            verdict = judge_event(event, self._guard.rules)
            outcome = self._event_outcome(event, key, verdict)
            settled = await self._recorder.bounded(self._recorder.record(outcome), "settle")
            if outcome.pauses and not settled.duplicate:
                log_pause(outcome.pauses[0])
            found = verdict.found
            marked = replace(
                event,
                reason=found.reason if found is not None else event.reason,
                hard=verdict.suppress and not verdict.complaint,
                classification=found if found is not None else event.classification,
                ingested=not settled.duplicate,
                suppressed=key is not None and key in newly_suppressed(outcome, settled),
            )
            log.info(
                "sendguard.event",
                provider=event.provider,
                event_id=event.event_id,
                type=event.type,
                recipient=redact(key) if key else None,
                reason=marked.reason,
                duplicate=settled.duplicate,
                suppressed=marked.suppressed,
            )
            done.append(marked)
        return done

    def _event_outcome(self, event: DeliveryEvent, key: str | None, verdict: Verdict) -> Outcome:
        """What one provider event records (as its *verdict* says), once per event id."""
        sender = event.sender.rpartition("@")[2].lower()
        judged = [(key, verdict, f"{event.provider}:webhook".lower(), sender)] if key else []
        return replace(
            self._observed(judged, sender=sender, detail=event.detail),
            event_id=f"{event.provider}\t{event.event_id}".lower(),
            nonce=f"nonce\t{event.nonce}" if event.nonce else "",
        )

    # -- both ----------------------------------------------------------------------------------

    def _observed(
        self,
        judged: Sequence[tuple[str, Verdict, str, str]],
        *,
        sender: str,
        detail: str | None = None,
    ) -> Outcome:
        """The outcome of later observations: ``(key, verdict, source, sender domain)`` each.

        A refusal of the sender pauses that sender domain toward the recipient's domain, as on
        the send path; with no sender known there is nobody to pause.  The breaker counts for
        *sender* (the one sender of every observation), when known.
        """
        guard = self._guard
        suppressions: list[Suppression] = []
        soft: list[Suppression] = []
        resets: list[str] = []
        pauses: dict[tuple[str, str], Pause] = {}
        bounces = complaints = 0
        now = guard._clock()
        for key, verdict, source, sender_domain in judged:
            found = verdict.found
            if found is None:
                continue
            record = entry(key, found, source, guard._clock())
            if detail is not None:
                record = replace(record, detail=detail)
            if verdict.suppress:
                suppressions.append(record)
            elif verdict.soft:
                soft.append(record)
            elif verdict.reset:
                resets.append(key)
            elif verdict.pause and sender_domain:
                domain = key.rpartition("@")[2]
                pauses.setdefault(
                    (sender_domain, domain),
                    pause_for(
                        sender_domain,
                        domain,
                        found,
                        now,
                        (guard.pause_for, guard.transient_pause_for),
                    ),
                )
            bounces += verdict.bounce
            complaints += verdict.complaint
        return Outcome(
            now=now,
            suppressions=suppressions,
            soft_failures=soft,
            soft_resets=resets,
            pauses=list(pauses.values()),
            soft_policy=guard.soft_bounce,
            sender_domain=sender,
            breaker=guard.breaker if sender else None,
            bounces=bounces,
            complaints=complaints,
        )
