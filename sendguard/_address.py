"""One normalization of e-mail addresses, used both on the wire and as the suppression key."""

from __future__ import annotations

import email.errors
import email.policy
import functools
import re
from dataclasses import dataclass
from typing import Any

import email_validator

from sendguard._errors import InvalidAddressError

__all__ = [
    "LINE_BREAKS",
    "Address",
    "envelope_address",
    "has_line_break",
    "normalize_address",
    "parse_mailbox",
    "redact",
]

LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
"""Every character ``str.splitlines()`` ends a line at (a test derives the set from it).

Python's e-mail generator folds header values with ``splitlines()``, so any of these in a value
becomes a real CRLF on the wire; so do the line readers of many receiving programs.
"""

_LINE_BREAK_OR_NUL = re.compile(f"[{re.escape(LINE_BREAKS)}\x00]")


def has_line_break(text: str) -> bool:
    """Whether *text* holds a character that can end a line (see :data:`LINE_BREAKS`), or NUL."""
    return _LINE_BREAK_OR_NUL.search(text) is not None


@dataclass(frozen=True, slots=True)
class Address:
    """A validated address: ``wire`` is what goes into MAIL FROM / RCPT TO, ``key`` identifies it.

    Both carry the domain IDNA-encoded and lower-cased.  The local part keeps its case on the
    wire (RFC 5321 lets the receiving host decide whether it matters) and is lower-cased in the
    key, so ``Bob@Example.com`` and ``bob@example.com`` are one recipient and one suppression.
    """

    wire: str
    key: str
    domain: str

    @property
    def needs_smtputf8(self) -> bool:
        """Whether the local part is non-ASCII, so the transaction needs SMTPUTF8."""
        return not self.wire.isascii()


@functools.lru_cache(maxsize=65_536)
def normalize_address(address: str) -> Address:
    """Validate *address* (syntax only, no DNS) and return its normalized forms.

    Raises :class:`InvalidAddressError` for anything email-validator refuses, including
    addresses with a display name (see :func:`parse_mailbox`), a line break or NUL anywhere
    (:data:`LINE_BREAKS`), or a domain that cannot be IDNA-encoded.
    """
    if has_line_break(address):
        # Also at either end, where strip() would hide it: the caller's text is not an address.
        raise InvalidAddressError("the address contains a line break or NUL", address=address)
    candidate = address.strip()
    try:
        valid = email_validator.validate_email(
            candidate,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_display_name=False,
        )
    except email_validator.EmailNotValidError as exc:
        raise InvalidAddressError(f"invalid e-mail address: {exc}", address=address) from exc
    domain = valid.ascii_domain.lower()
    wire = f"{valid.local_part}@{domain}"
    return Address(wire=wire, key=f"{valid.local_part.lower()}@{domain}", domain=domain)


def parse_mailbox(text: str) -> tuple[str, str]:
    """The display name and the address of one mailbox as applications write it.

    ``app@shop.example``, ``Shop <app@shop.example>``, ``"Shop, Inc." <app@shop.example>``,
    ``=?utf-8?q?Caf=C3=A9?= <app@shop.example>`` and ``Café <app@shop.example>`` are all one
    mailbox; the name comes back decoded.  Raises :class:`InvalidAddressError` for anything
    else: no address, several, a group, text the parser had to guess at, or a line break or
    NUL anywhere (so nothing can be smuggled into MAIL FROM, RCPT TO or a header).
    The address is returned as written; :func:`normalize_address` validates it.
    """
    if has_line_break(text):
        raise InvalidAddressError("the address contains a line break or NUL", address=text)
    try:
        header = email.policy.default.header_factory("To", text)
    except Exception as exc:  # the stdlib parser raises IndexError on "x@", and more
        raise InvalidAddressError(f"not an e-mail address: {exc}", address=text) from exc
    groups: tuple[Any, ...] = getattr(header, "groups", ())
    invalid = [d for d in header.defects if isinstance(d, email.errors.InvalidHeaderDefect)]
    if len(groups) != 1 or groups[0].display_name is not None or invalid:
        raise InvalidAddressError("not exactly one e-mail address", address=text)
    (mailbox,) = groups[0].addresses
    if not mailbox.username or not mailbox.domain:
        raise InvalidAddressError("not exactly one e-mail address", address=text)
    if has_line_break(mailbox.display_name):  # an encoded word can carry one
        raise InvalidAddressError("the display name contains a line break or NUL", address=text)
    return mailbox.display_name, mailbox.addr_spec


def envelope_address(text: str) -> str:
    """The address of the mailbox *text* for ``send(sender=, recipients=)``: the name dropped.

    ``Shop <app@shop.example>`` gives ``app@shop.example``.  A text that is not one mailbox
    (see :func:`parse_mailbox`) comes back as it is, so the guard refuses it under the text the
    application gave: an invalid sender raises, an invalid recipient is reported ``INVALID``.
    """
    try:
        return parse_mailbox(text)[1]
    except InvalidAddressError:
        return text


def redact(key: str) -> str:
    """Mask the local part of an address for logs: ``alice@example.com`` → ``a***@example.com``."""
    local, _, domain = key.rpartition("@")
    return f"{local[:1]}***@{domain}" if local else f"***@{domain}"
