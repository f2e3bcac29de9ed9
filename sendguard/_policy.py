"""How a server's reply for one recipient turns into the guard's decision.

The split that protects a sender's reputation:

* 2xx: accepted.
* No reply before the message was complete (connection refused or dropped): retried.
* No reply after the final dot: the server may or may not have the message.  It is never
  re-sent automatically (that risks a duplicate); it is reported as deferred and uncertain.
* Everything else is classified (:func:`sendguard.classify`):

  - a permanent fault of the recipient itself (user unknown, domain gone) suppresses the
    address for good, but only when the reply came at RCPT or after the message;
  - a refusal of the *sender* (blocklisted IP, failed SPF/DKIM/DMARC, missing PTR, rate
    limits) pauses that sender toward that recipient domain and never suppresses: the
    address may be perfectly good;
  - a refused message (content, size, policy) is rejected, the address left alone;
  - a temporary failure is retried with backoff.
"""

from __future__ import annotations

from enum import Enum

from sendguard._classify import Action, Classification, Rules, action_for, classify
from sendguard._models import Reply, Stage

__all__ = ["Decision", "decide"]


class Decision(Enum):
    """What the guard does with one recipient after one reply."""

    ACCEPT = "accept"
    RETRY = "retry"
    REJECT = "reject"
    SUPPRESS = "suppress"
    PAUSE = "pause"
    UNCERTAIN = "uncertain"


_SUPPRESS_STAGES = frozenset({Stage.RCPT, Stage.DATA, Stage.DATA_END})


def decide(reply: Reply, rules: Rules) -> tuple[Decision, Classification | None]:
    """The guard's decision for one recipient given the server's *reply*, and why."""
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
