"""Signed bounce tokens: only bounces of mail this guard really sent may suppress anyone.

Anyone can send an e-mail that looks like a bounce.  If such mail were trusted, a forger could
suppress any address by mailing a fake DSN to the bounce mailbox.  With a ``bounce_secret``
the guard stamps the copy of a message that goes to each recipient with a header::

    X-Sendguard-Token: v2.<issued, unix seconds>.<HMAC-SHA256 of Message-ID, recipient, issued>

Nearly every bounce returns the original message or its headers (RFC 3464 asks for it,
``text/rfc822-headers``); :func:`find_token` reads the token and the Message-ID beside it, and
:meth:`BounceSigner.verify` accepts them for one recipient only if the MAC matches for that
recipient and the token is younger than ``max_age``.  So the token binds the recipient: a
subscriber who returns the token of their own copy in a forged DSN or complaint can speak for
their own address, never for anyone else on the same message.  (The v1 tokens of earlier
versions bound only the message, and are no longer accepted.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message

from sendguard._bounces.dsn import MAX_PARTS
from sendguard._errors import ConfigurationError

__all__ = ["TOKEN_HEADER", "BounceSigner", "find_token"]

TOKEN_HEADER = "X-Sendguard-Token"  # noqa: S105 (a header name, not a secret)
_TOKEN = re.compile(r"^X-Sendguard-Token:[ \t]*(v\d\.\d{1,12}\.[A-Za-z0-9_-]{16,64})", re.I | re.M)
_MESSAGE_ID = re.compile(r"^Message-I[Dd]:[ \t]*(?:\r?\n[ \t]+)?(<[^>\r\n]{1,998}>)", re.M)


@dataclass(frozen=True, slots=True)
class BounceSigner:
    """Signs outgoing messages and verifies the tokens that bounces bring back."""

    secret: bytes
    max_age: timedelta = timedelta(days=30)

    @classmethod
    def from_secret(
        cls, secret: str | bytes, max_age: timedelta = timedelta(days=30)
    ) -> BounceSigner:
        """A signer for *secret* (at least 16 bytes)."""
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(key) < 16:
            raise ConfigurationError("bounce_secret must be at least 16 bytes long")
        return cls(key, max_age)

    def _mac(self, message_id: str, recipient: str, issued: int) -> str:
        signed = f"v2\n{message_id.strip()}\n{recipient}\n{issued}"
        digest = hmac.new(self.secret, signed.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode().rstrip("=")

    def sign(self, message_id: str, recipient: str, now: datetime) -> str:
        """The token of the copy of *message_id* sent to *recipient* (its key), at *now*."""
        issued = int(now.timestamp())
        return f"v2.{issued}.{self._mac(message_id, recipient, issued)}"

    def verify(self, token: str, message_id: str, recipient: str, now: datetime) -> bool:
        """Whether *token* was made by this signer for *recipient*'s copy of *message_id*."""
        try:
            version, issued_text, mac = token.strip().split(".")
            issued = int(issued_text)
        except ValueError:
            return False
        if version != "v2":
            return False
        age = now.timestamp() - issued
        if age < -300 or age > self.max_age.total_seconds():  # five minutes of clock skew
            return False
        return hmac.compare_digest(mac, self._mac(message_id, recipient, issued))


_PART_CHARS = 64 * 1024
"""At most this much text of one part is searched: a returned original's headers fit in it."""
_READ_CHARS = 1024 * 1024
"""At most this much text of one bounce is searched, in all its parts."""
_ENCODED = ("base64", "quoted-printable", "x-uuencode", "uuencode", "x-uue", "uue")


def find_token(bounce: Message) -> tuple[str, str] | None:
    """The token and the Message-ID of the returned original inside *bounce*, if both are there.

    Only text that the bounce quotes from the original is searched, never the bounce's own
    headers, so a bounce cannot vouch for itself: the header fields of each message a
    ``message/*`` part holds, and the body of each leaf part (the bounce's own body too, when
    it is not multipart), where a notice or a ``text/rfc822-headers`` part quotes them.

    Linear in the bounce whatever its shape: each part is read once, a nested original is
    never serialized again (its own parts are read where the walk reaches them), and at most
    :data:`_PART_CHARS` of a part, :data:`_READ_CHARS` in all and the first
    :data:`MAX_PARTS` parts are read.
    """
    budget = _READ_CHARS
    stack = [bounce]
    for _ in range(MAX_PARTS):
        if not stack or budget <= 0:
            break
        part = stack.pop()
        payload = part.get_payload()
        limit = min(_PART_CHARS, budget)
        if isinstance(payload, list):
            inner = [p for p in payload if isinstance(p, Message)]
            stack.extend(reversed(inner))
            if part.get_content_maintype() != "message":
                continue
            pieces: list[str] = []
            size = 0
            for message in inner:
                if size >= limit:
                    break
                pieces.append(_header_text(message, limit - size))
                size += len(pieces[-1]) + 2
            text = "\n\n".join(pieces)  # each message's header block apart from the next
        else:
            text = _body_text(part, payload, limit)
        budget -= len(text)
        found = _TOKEN.search(text)
        if found is None:
            continue
        message_id = _MESSAGE_ID.search(_header_block(text, found.start()))
        if message_id is not None:
            return found.group(1), message_id.group(1)
    return None


def _header_text(message: Message, limit: int) -> str:
    """*message*'s header fields as they were written, up to about *limit* characters."""
    lines: list[str] = []
    size = 0
    for name, value in message.raw_items():
        if size >= limit:
            break
        line = f"{name}: {value}"
        lines.append(line[: limit - size])
        size += len(line) + 1
    return "\n".join(lines)


def _body_text(part: Message, payload: object, limit: int) -> str:
    """The first *limit* characters of a leaf part's content, decoded only that far."""
    if not isinstance(payload, str):
        return ""
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte not in _ENCODED:
        return payload[:limit]
    head = Message()  # the encoded head alone, so that no more than that is decoded
    head["Content-Transfer-Encoding"] = cte
    head.set_payload(payload[: 2 * limit])
    raw = head.get_payload(decode=True)
    return raw.decode("utf-8", "replace")[:limit] if isinstance(raw, bytes) else ""


def _header_block(text: str, position: int) -> str:
    """The run of header lines around *position* (up to the blank lines before and after)."""
    start = max(text.rfind("\n\n", 0, position), text.rfind("\r\n\r\n", 0, position))
    start = 0 if start < 0 else start
    ends = [e for e in (text.find("\n\n", position), text.find("\r\n\r\n", position)) if e >= 0]
    return text[start : min(ends) if ends else len(text)]
