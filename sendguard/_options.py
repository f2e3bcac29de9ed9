"""Checks of constructor options: a wrong one is a :class:`ConfigurationError` at construction.

Each check names the constructor and the option (``SMTPAdapter(port=...)``) and says what the
value must be, so the message says what to change.  ``bool`` is refused where a number is
wanted: ``timeout=True`` is a mistake, not one second.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import urllib.parse
from typing import TypeVar

from sendguard._errors import ConfigurationError

__all__ = [
    "check_callable",
    "check_flag",
    "check_host",
    "check_instance",
    "check_integer",
    "check_number",
    "check_seconds",
    "check_text",
    "check_timedelta",
    "check_url",
]

T = TypeVar("T")

# Anything str.splitlines() ends a line at, and NUL: the characters that split a protocol line.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_LINE_BREAK = re.compile("[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029\x00]")


def check_instance(owner: str, name: str, value: object, kind: type[T], what: str) -> T:
    """*value* when it is a *kind*; else a ConfigurationError saying it must be *what*."""
    if not isinstance(value, kind):
        raise ConfigurationError(
            f"{owner}({name}=...) must be {what}, not {type(value).__name__} {value!r}"
        )
    return value


def check_flag(owner: str, name: str, value: object) -> bool:
    """*value* when it is ``True`` or ``False``."""
    return check_instance(owner, name, value, bool, "True or False")


def check_integer(
    owner: str, name: str, value: object, *, minimum: int, maximum: int | None = None
) -> int:
    """*value* when it is a whole number in ``[minimum, maximum]``."""
    span = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        raise ConfigurationError(
            f"{owner}({name}=...) must be a whole number {span}, not {value!r}"
        )
    return value


def check_number(
    owner: str,
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    what: str,
) -> float:
    """*value* when it is a finite number in ``[minimum, maximum]``; else it must be *what*."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        raise ConfigurationError(f"{owner}({name}=...) must be {what}, not {value!r}")
    return float(value)


def check_timedelta(
    owner: str, name: str, value: object, *, positive: bool = False
) -> dt.timedelta:
    """*value* when it is a ``datetime.timedelta`` (above zero if *positive*, else not below)."""
    span = check_instance(
        owner, name, value, dt.timedelta, "a datetime.timedelta, e.g. timedelta(days=7)"
    )
    if positive and span <= dt.timedelta(0):
        raise ConfigurationError(f"{owner}({name}=...) must be positive, not {span!r}")
    if span < dt.timedelta(0):
        raise ConfigurationError(f"{owner}({name}=...) must not be negative, not {span!r}")
    return span


def check_callable(owner: str, name: str, value: object) -> None:
    """Nothing when *value* can be called; else a ConfigurationError."""
    if not callable(value):
        raise ConfigurationError(f"{owner}({name}=...) must be a function, not {value!r}")


def check_seconds(owner: str, name: str, value: object) -> float:
    """*value* when it is a finite, positive number of seconds."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(
            f"{owner}({name}=...) must be a positive number of seconds, not {value!r}"
        )
    return float(value)


def check_text(
    owner: str, name: str, value: object, *, ascii_only: bool = False, secret: bool = False
) -> str:
    """*value* when it is a non-empty string without a line break or NUL (ASCII if asked).

    A *secret* (a password, an API key) is never repeated in the message.
    """
    shown = "" if secret else f": {value!r}"
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{owner}({name}=...) must be a string, not {type(value).__name__}"
            + ("" if secret else f" {value!r}")
        )
    if not value:
        raise ConfigurationError(f"{owner}({name}=...) must not be empty")
    if _LINE_BREAK.search(value):
        raise ConfigurationError(
            f"{owner}({name}=...) must not contain a line break or NUL{shown}; remove it"
        )
    if ascii_only and not value.isascii():
        raise ConfigurationError(
            f"{owner}({name}=...) must be ASCII (it goes into an HTTP header){shown}"
        )
    return value


def check_url(owner: str, name: str, value: object) -> str:
    """*value* when it is an ``http://`` or ``https://`` URL with a host."""
    text = check_text(owner, name, value)
    try:
        parts = urllib.parse.urlsplit(text) if not any(c.isspace() for c in text) else None
    except ValueError:  # an unclosed [IPv6 bracket
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{owner}({name}=...) must be an http:// or https:// URL, e.g. "
            f"'https://api.example.com', not {text!r}"
        )
    try:
        parts.port  # noqa: B018 (a port that is no number raises here)
    except ValueError as exc:
        raise ConfigurationError(f"{owner}({name}=...) has a bad port: {text!r}") from exc
    return text


def check_host(owner: str, name: str, value: object) -> str:
    """*value* when it is a domain name (letters, digits, hyphens, dots)."""
    text = check_text(owner, name, value)
    if len(text) > 253 or not _DOMAIN.match(text):
        raise ConfigurationError(
            f"{owner}({name}=...) must be a domain name such as 'mg.example.com', not {text!r}"
        )
    return text
