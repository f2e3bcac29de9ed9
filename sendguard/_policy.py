"""How a server's reply for one recipient turns into a decision.

The split that protects a sender's reputation:

* 2xx: accepted.
* 4xx, or no reply before the message was fully sent: temporary, retried with backoff.
* 5xx at RCPT about the recipient itself (enhanced code 5.1.x or 5.2.1, or a bare 550, 551
  or 553 without an enhanced code): the mailbox is gone, so the address is suppressed.
* Any other 5xx: rejected, but not suppressed.  A 5.7.x or 554 at RCPT usually means the
  *sender* was refused (an IP on a blocklist, failed SPF/DKIM/DMARC), and a 5xx at MAIL FROM
  or DATA refuses the sender or the content.  The address may be perfectly good; suppressing
  it would silently cut off a real user.
* No reply after the final dot: the server may or may not have taken the message.  It is
  never re-sent automatically (that risks a duplicate); it is reported as deferred with a
  detail saying delivery is uncertain.
"""

from __future__ import annotations

from enum import Enum

from sendguard._models import Reply, Stage

__all__ = ["Verdict", "decide"]

_RECIPIENT_CODES_WITHOUT_ENHANCED = frozenset({550, 551, 553})


class Verdict(Enum):
    """What the guard does with one recipient after one reply."""

    ACCEPT = "accept"
    RETRY = "retry"
    REJECT = "reject"
    SUPPRESS = "suppress"
    UNCERTAIN = "uncertain"


def _is_about_recipient(reply: Reply) -> bool:
    if reply.stage is not Stage.RCPT:
        return False
    enhanced = reply.enhanced_code
    if enhanced is None:
        return reply.code in _RECIPIENT_CODES_WITHOUT_ENHANCED
    return enhanced.startswith("5.1.") or enhanced == "5.2.1"


def decide(reply: Reply) -> Verdict:
    """The guard's decision for one recipient given the server's *reply*."""
    code = reply.code
    if code is None:
        return Verdict.UNCERTAIN if reply.stage is Stage.DATA_END else Verdict.RETRY
    if 200 <= code < 300:
        return Verdict.ACCEPT
    if 400 <= code < 500:
        return Verdict.RETRY
    if _is_about_recipient(reply):
        return Verdict.SUPPRESS
    return Verdict.REJECT
