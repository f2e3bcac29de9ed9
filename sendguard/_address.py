"""One normalization of e-mail addresses, used both on the wire and as the suppression key."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import email_validator

from sendguard._errors import InvalidAddressError

__all__ = ["Address", "normalize_address", "redact"]


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
    addresses with a display name, CR/LF, or a domain that cannot be IDNA-encoded.
    """
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


def redact(key: str) -> str:
    """Mask the local part of an address for logs: ``alice@example.com`` → ``a***@example.com``."""
    local, _, domain = key.rpartition("@")
    return f"{local[:1]}***@{domain}" if local else f"***@{domain}"
