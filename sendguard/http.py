"""What every adapter of an HTTP sending API needs, whichever HTTP client it uses.

The Postmark, Mailgun, SendGrid and SES adapters are built on these; a new one should be too,
so that a provider's 429 or 503 means the same to the guard whoever reports it.  The
``check_*`` functions check constructor options, each a ``ConfigurationError`` naming the option
and saying what it must be.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from sendguard._errors import WebhookAuthError
from sendguard._models import Envelope, Reply, Stage
from sendguard._options import (
    check_flag,
    check_host,
    check_instance,
    check_integer,
    check_seconds,
    check_text,
    check_url,
)

__all__ = [
    "API_FIELDS",
    "UNREADABLE",
    "as_list",
    "as_object",
    "as_text",
    "check_flag",
    "check_host",
    "check_instance",
    "check_integer",
    "check_seconds",
    "check_text",
    "check_url",
    "everyone",
    "json_body",
    "listed_in",
    "retry_after",
    "temporary",
]

API_FIELDS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "content-type",
        "mime-version",
        "content-transfer-encoding",
    }
)
"""Headers (lower case) that a JSON sending API takes as fields of its own, not as headers:
the addresses, the subject and the body's structure."""


def retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait by a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110).

    None when there is no header or it says neither; a date already past is 0.
    """
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP dates always are
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def everyone(envelope: Envelope, reply: Reply) -> dict[str, Reply]:
    """*reply* for each recipient of *envelope*: one API call, one answer for all."""
    return dict.fromkeys(envelope.recipients, reply)


def temporary(
    detail: str, *, ratelimited: bool = False, retry_after_header: str | None = None
) -> Reply:
    """A provider's "not now" (HTTP 429, 5xx): a 451 to retry, no later than it asked.

    *ratelimited* marks a provider's rate limit (the guard slows the sender's rate down) as
    distinct from an outage.
    """
    return Reply(
        451,
        detail,
        Stage.DATA,
        reason="ratelimited" if ratelimited else None,
        retry_after=retry_after(retry_after_header),
    )


def listed_in(message: Message, header: str, recipients: Iterable[str]) -> list[str]:
    """The *recipients* that *message*'s *header* (To, Cc) names, in its order.

    For APIs that take To, Cc and Bcc apart: a recipient named in no header is a Bcc.  Each
    comes back spelled as in *recipients*; the header's spelling may differ in case.
    """
    wanted = {r.lower(): r for r in recipients}
    found = getaddresses([str(v) for v in message.get_all(header, [])])
    return [wanted[a.lower()] for _, a in found if a.lower() in wanted]


# -- reading webhook bodies, which anyone can send ---------------------------------------------

UNREADABLE = (KeyError, TypeError, ValueError, ArithmeticError, OSError)
"""What reading a parsed body with :func:`as_text`, :func:`as_object`, ``float`` and
``datetime`` can raise (OverflowError and OSError: a timestamp out of range): a webhook parser
catches these and raises :class:`sendguard.WebhookAuthError` or its payload subclass."""


def json_body(
    body: bytes | str, what: str, error: type[WebhookAuthError] = WebhookAuthError
) -> object:
    """The JSON value of a webhook *body*, or *error* for anything else.

    Bytes that are not UTF-8, JSON that is not, and nesting too deep for the parser (which
    raises RecursionError) all become *error*.  The value is read field by field afterwards,
    never walked: a deep value costs nothing unless it is asked for.
    """
    try:
        return json.loads(body)
    except (ValueError, TypeError, RecursionError) as exc:
        raise error(f"the {what} webhook body is not JSON") from exc


def as_text(value: object) -> str:
    """A JSON string or number as text; TypeError for an object, a list, null or a boolean."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def as_object(value: object) -> dict[str, Any]:
    """A JSON object; TypeError for anything else."""
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def as_list(value: object) -> list[Any]:
    """A JSON list; TypeError for anything else."""
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value
