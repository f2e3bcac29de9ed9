"""The one place that decides what an observation means for the sender's reputation.

Every observation reaches the guard through one of three doors, and each door hands its raw
facts here, classified with the guard's own :class:`Rules`:

* an adapter's :class:`Reply` for one recipient, at its stage (:func:`judge_reply`), on the
  send path;
* a :class:`BounceReport` read from a DSN, an MTA notice, an ARF complaint or SES JSON that
  arrived by e-mail (:func:`judge_report`);
* a :class:`DeliveryEvent` from a provider's webhook, SES over SNS, or an anymail tracking
  signal (:func:`judge_event`): its diagnostic text, the provider's permanent flag and its own
  verdict (``suppressed``), never the default-rules classification made when it was parsed.

The answer is one :class:`Verdict`: suppress the address, count a soft failure, reset the soft
count, pause the sender toward the recipient's domain, count a bounce or complaint for the
breaker, or nothing.  The rules of the split (see :mod:`sendguard._policy`'s old doc, now
here):

* a permanent fault of the recipient itself (user unknown, domain gone) suppresses it for
  good, but a reply only when it came at RCPT or after the message;
* a refusal of the *sender* (blocklisted IP, failed SPF/DKIM/DMARC, missing PTR, rate limits)
  pauses that sender toward that recipient domain and never suppresses, whichever door it came
  through: behind a relay the refusal arrives as a DSN, not as a reply;
* a refused message (content, size, policy) is rejected, the address left alone;
* a temporary failure is retried with backoff on the send path; arriving later (a delay
  notice, a deferral) it changes nothing;
* a bounce counts for the breaker when it is final and about the address (it suppresses or is
  a soft failure); a complaint always counts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

from sendguard._bounces.classify import (
    HARD_REASONS,
    Action,
    Classification,
    Rules,
    action_for,
    classify,
)
from sendguard._models import Reply, Stage
from sendguard._store import Pause

if TYPE_CHECKING:
    from sendguard._bounces.dsn import BounceReport
    from sendguard._bounces.events import DeliveryEvent

__all__ = [
    "Decision",
    "Verdict",
    "counts_as_bounce",
    "event_classification",
    "hard_failure",
    "judge_event",
    "judge_reply",
    "judge_report",
    "pause_for",
]

DIAGNOSTIC_LIMIT = 2000
"""A provider's diagnostic is an SMTP reply, a few hundred characters; a longer one is read no
further, so an event costs the classifier the same whatever its sender makes it."""


class Decision(Enum):
    """What the guard does with one recipient after one reply (the send path)."""

    ACCEPT = "accept"
    RETRY = "retry"
    REJECT = "reject"
    SUPPRESS = "suppress"
    PAUSE = "pause"
    UNCERTAIN = "uncertain"


_NO_CAUSE = frozenset({"onhold", "undefined"})
_SUPPRESS_STAGES = frozenset({Stage.RCPT, Stage.DATA, Stage.DATA_END})


def judge_reply(reply: Reply, rules: Rules) -> tuple[Decision, Classification | None]:
    """The decision for one recipient given the server's (or the provider's) *reply*, and why.

    No reply before the message was complete is retried; no reply after the final dot is
    uncertain (the server may have the message: never re-sent automatically).
    """
    code = reply.code
    if code is None:
        return (Decision.UNCERTAIN if reply.stage is Stage.DATA_END else Decision.RETRY), None
    if 200 <= code < 300:
        return Decision.ACCEPT, None
    if reply.reason is not None:
        permanent = code // 100 == 5
        found = Classification(
            reason=reply.reason,
            action=action_for(reply.reason, permanent=permanent),
            permanent=permanent,
            reply_code=code,
            enhanced_code=reply.enhanced_code,
            rule=f"the provider's verdict: {reply.reason}",
            text=reply.text,
        )
    else:
        found = classify(
            reply.text,
            reply_code=code,
            enhanced_code=reply.enhanced_code,
            stage=str(reply.stage),
            rules=rules,
        )
    match found.action:
        case Action.SUPPRESS if reply.stage in _SUPPRESS_STAGES:
            return Decision.SUPPRESS, found
        case Action.PAUSE_SENDER:
            return Decision.PAUSE, found
        case Action.RETRY:
            return Decision.RETRY, found
        case _:
            return (Decision.REJECT if found.permanent else Decision.RETRY), found


def counts_as_bounce(found: Classification | None, *, final: bool, suppressed: bool) -> bool:
    """Whether a failure counts as a bounce for the breaker (final, and about the address)."""
    if not final or found is None:
        return False
    # A permanent refusal that names no cause failed the message without proving the address
    # dead: it still counts, as the mailbox provider counts it.
    return suppressed or found.soft or (found.permanent and found.reason in _NO_CAUSE)


def hard_failure(action: str, found: Classification, status: str) -> bool:
    """Whether a bounce report of *action* with *found* and *status* says the address is dead."""
    return (
        action == "failed"
        and (found.reason in HARD_REASONS or found.reason == "suspend")  # suspend: for good
        and found.action is Action.SUPPRESS
        and status.startswith("5")
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one later observation (a bounce report, a provider event) records."""

    found: Classification | None = None
    suppress: bool = False
    soft: bool = False
    reset: bool = False
    pause: bool = False
    """The sender was refused: pause it toward the recipient's domain (never suppress)."""
    bounce: bool = False
    complaint: bool = False

    @property
    def weight(self) -> int:
        """How much this verdict records: the weightiest of one bounce's reports speaks."""
        return (
            5
            if self.complaint
            else 4
            if self.suppress
            else 3
            if self.pause
            else 2
            if self.soft
            else int(self.reset)
        )

    @property
    def changes(self) -> bool:
        """Whether it records anything at all."""
        return self.weight > 0 or self.bounce


_FEEDBACK = Classification("feedback", Action.SUPPRESS, False, None, None, "complaint", "")
_DELIVERED = Classification("delivered", Action.NONE, False, None, None, "delivered", "")
_NOTHING = Verdict()


def _failure(found: Classification, *, final: bool, hard: bool) -> Verdict:
    """The verdict of a failure classified as *found*: pause, suppress, count, or nothing."""
    if found.action is Action.PAUSE_SENDER:
        return Verdict(found, pause=True)
    if not final:
        return Verdict(found)  # still queued: nothing is known of the address yet
    soft = not hard and found.soft
    return Verdict(
        found,
        suppress=hard,
        soft=soft,
        bounce=counts_as_bounce(found, final=True, suppressed=hard),
    )


def judge_report(report: BounceReport) -> Verdict:
    """The verdict of one trusted bounce report (classified by ``parse_bounce`` with the rules).

    A complaint suppresses (``feedback``); a final failure suppresses when the address is dead
    and counts when it is soft; a delivery resets the soft count; a refusal of the sender, final
    or a delay, pauses; an auto-reply changes nothing.
    """
    found = report.classification
    if report.action == "complaint":
        return Verdict(found or _FEEDBACK, suppress=True, complaint=True)
    if found is None or report.action == "autoreply":
        return _NOTHING
    if report.action == "delivered":
        return Verdict(found, reset=True)
    return _failure(
        found,
        final=report.action == "failed",
        hard=hard_failure(report.action, found, report.status),
    )


def event_classification(
    event_type: str,
    diagnostic: str,
    *,
    permanent: bool | None,
    verdict: str | None,
    rules: Rules,
    provider: str = "",
) -> Classification:
    """A provider event's classification: its own verdict, else its diagnostic under *rules*.

    The provider's permanent flag (a "Permanent" bounce type) decides permanence over the
    text's codes; a deferral is never permanent.  A bounce whose diagnostic names a sender-side
    refusal is never hard, whatever the provider says.
    """
    if event_type == "complained":
        return _FEEDBACK
    if event_type == "delivered":
        return _DELIVERED
    diagnostic = diagnostic[:DIAGNOSTIC_LIMIT]
    if verdict is not None:
        is_permanent = bool(permanent) and event_type == "bounced"
        return Classification(
            verdict,
            action_for(verdict, permanent=is_permanent),
            is_permanent,
            None,
            None,
            f"the provider's verdict: {verdict}",
            diagnostic,
        )
    found = classify(diagnostic, rules=rules)
    if found.reason == "onhold" and event_type == "bounced" and permanent and not diagnostic:
        # A provider's permanent bounce with no text at all: the address is what failed.
        found = replace(found, reason="userunknown", rule=f"{provider} permanent bounce")
    is_permanent = (
        False
        if event_type != "bounced"
        else permanent
        if permanent is not None
        else found.permanent
    )
    if is_permanent != found.permanent:
        found = replace(
            found,
            permanent=is_permanent,
            action=action_for(found.reason, permanent=is_permanent),
        )
    return found


def judge_event(event: DeliveryEvent, rules: Rules) -> Verdict:
    """The verdict of one provider event, classified with the guard's *rules* now.

    The event's own ``reason``/``hard``/``classification`` (made with the default rules when
    it was parsed) are not trusted: only its raw facts are.
    """
    if event.type in ("unsubscribed", "other"):
        return _NOTHING
    found = event_classification(
        event.type,
        event.detail,
        permanent=event.permanent,
        verdict=event.verdict,
        rules=rules,
        provider=event.provider,
    )
    if event.type == "complained":
        return Verdict(found, suppress=True, complaint=True)
    if event.type == "delivered":
        return Verdict(found, reset=True)
    final = event.type == "bounced"
    hard = final and found.permanent and found.action is Action.SUPPRESS
    return _failure(found, final=final, hard=hard)


def pause_for(
    sender_domain: str,
    recipient_domain: str,
    found: Classification,
    now: datetime,
    lengths: tuple[timedelta, timedelta],
) -> Pause:
    """The pause of a refused sender: ``lengths[0]`` when permanent (5xx), else ``lengths[1]``."""
    permanent, transient = lengths
    return Pause(
        sender_domain=sender_domain,
        recipient_domain=recipient_domain,
        until=now + (permanent if found.permanent else transient),
        reason=found.reason,
        detail=found.text,
    )
