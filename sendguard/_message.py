"""Reading a message: envelope addresses, header checks, and the bytes that go on the wire."""

from __future__ import annotations

import copy
import email.errors
import email.generator
import email.header
import email.policy
import email.utils
import io
import re
from collections.abc import Sequence
from email.message import EmailMessage, Message
from typing import cast

from sendguard._errors import HeaderInjectionError, MessageError

__all__ = ["check_headers", "envelope_recipients", "envelope_sender", "serialize"]

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_FORBIDDEN = re.compile(r"[\r\n\x00]")
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")


def _raw_headers(part: Message) -> list[tuple[str, str]]:
    # EmailMessage.items() would hand back already-decoded header objects; the raw values are
    # what goes on the wire, so check those, and their decoded form separately below.
    raw_items = getattr(part, "raw_items", None)
    if raw_items is not None:
        return [(name, str(value)) for name, value in raw_items()]
    return [(name, str(value)) for name, value in part.items()]


def _decoded(value: str) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, UnicodeError, email.errors.HeaderParseError):
        # An undecodable encoded word is sent as the literal text it is; that text was checked.
        return value


def check_headers(message: Message) -> None:
    """Refuse any header, in any MIME part, whose name or value carries CR, LF or NUL.

    Folding (CRLF followed by a space or tab, as in a parsed message) is allowed; a line break
    anywhere else would let a value start a header of its own.  Values are checked again after
    decoding RFC 2047 encoded words, since a receiving program may decode and re-emit them.
    """
    for part in message.walk():
        for name, value in _raw_headers(part):
            if not _HEADER_NAME.match(name):
                raise HeaderInjectionError(f"header name {name!r} is not allowed", header=name)
            unfolded = _FOLD.sub("", value)
            if _FORBIDDEN.search(unfolded):
                raise HeaderInjectionError(f"header {name!r} contains CR, LF or NUL", header=name)
            if "=?" in unfolded and _FORBIDDEN.search(_decoded(unfolded)):
                raise HeaderInjectionError(
                    f"header {name!r} contains CR, LF or NUL inside an RFC 2047 encoded word",
                    header=name,
                )


def _addresses(message: Message, *names: str) -> list[str]:
    found: list[str] = []
    for name in names:
        for value in message.get_all(name) or ():
            parsed = getattr(value, "addresses", None)
            if parsed is not None:
                # An EmailMessage header already parsed its addresses (groups flattened).
                found.extend(a.addr_spec for a in parsed if a.addr_spec)
            else:
                found.extend(addr for _, addr in email.utils.getaddresses([str(value)]) if addr)
    return found


def envelope_recipients(message: Message) -> list[str]:
    """To, Cc and Bcc addresses of *message*, in that order, as written."""
    return _addresses(message, "To", "Cc", "Bcc")


def envelope_sender(message: Message) -> str:
    """The envelope sender implied by *message*: its Sender, else its first From address."""
    for name in ("Sender", "From"):
        found = _addresses(message, name)
        if found:
            return found[0]
    raise MessageError("the message has no From or Sender header and no sender= was given")


def serialize(
    message: Message,
    *,
    message_id: str | None,
    utf8: bool = False,
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The message as transmitted: Bcc removed, CRLF line ends, Message-ID added if given.

    *extra* header fields (ASCII, checked by the caller) are put first.

    Non-ASCII header text is sent as RFC 2047 encoded words unless *utf8* (the transaction
    uses SMTPUTF8 anyway, RFC 6532), in which case it is sent as UTF-8.
    """
    if "Bcc" in message:
        # A shallow copy is enough: deleting a header rebinds the copy's header list.
        outgoing = copy.copy(message)
        del outgoing["Bcc"]
    else:
        outgoing = message
    policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
    # BytesGenerator rather than as_bytes(): subclasses (Django's SafeMIMEText) override
    # as_bytes without the policy argument.
    buffer = io.BytesIO()
    generator = email.generator.BytesGenerator(buffer, mangle_from_=False, policy=policy)
    generator.flatten(cast("EmailMessage", outgoing))  # any Message flattens; typeshed is narrow
    data = buffer.getvalue()
    if message_id is not None:
        data = f"Message-ID: {message_id}\r\n".encode("ascii") + data
    for name, value in reversed(extra):
        data = f"{name}: {value}\r\n".encode("ascii") + data
    return data
