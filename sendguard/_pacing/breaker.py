"""The breaker: stop a sender whose bounce or complaint rate crosses the line.

Mailbox providers throttle a sender above about 2 % bounces or 0.1 % complaints, and block it
not far above.  The breaker counts, per sender domain, the recipients sent to and the bounces and
complaints that came back (from SMTP replies, parsed bounces and webhooks) in a rolling window,
kept as 24 buckets.  Above a warning threshold it logs and calls ``on_warn``; above a pause
threshold, once at least ``min_volume`` sends are in the window, it pauses the whole sender
(every recipient domain) until a person resumes it or ``pause_for`` has passed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from sendguard._errors import ConfigurationError
from sendguard._options import check_callable, check_integer, check_number, check_timedelta

__all__ = ["BUCKETS", "PPM", "Breaker", "BreakerEvent", "SenderStatus", "Volume", "ppm", "reaches"]

BUCKETS = 24
"""The window is kept as this many buckets; a bucket leaves the window whole."""

FOREVER = dt.timedelta(days=365 * 100)
"""How long "until a person resumes it" is, written down."""

PPM = 1_000_000
"""Thresholds are compared in whole parts per million, in integers, in Python and in Lua alike:
``bounces / sends >= 0.07`` in floating point is true in Python at 7 in 100 and false in Lua
(``0.07 * 100`` is ``7.000000000000001``)."""


def ppm(rate: float) -> int:
    """*rate* in whole parts per million."""
    return round(rate * PPM)


def reaches(count: int, sends: int, line_ppm: int) -> bool:
    """Whether *count* in *sends* is at or above *line_ppm*, compared exactly."""
    return count * PPM >= line_ppm * sends


class Volume(NamedTuple):
    """Sends, bounces and complaints of one sender in the breaker's window."""

    sends: int = 0
    bounces: int = 0
    complaints: int = 0

    @property
    def bounce_rate(self) -> float:
        """Bounces per send (0 without sends)."""
        return self.bounces / self.sends if self.sends else 0.0

    @property
    def complaint_rate(self) -> float:
        """Complaints per send (0 without sends)."""
        return self.complaints / self.sends if self.sends else 0.0


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """What ``on_warn`` is told: the sender, its volume, and which line it crossed."""

    sender_domain: str
    volume: Volume
    level: str
    """``"warn"`` or ``"pause"``."""
    why: str


@dataclass(frozen=True, slots=True)
class Breaker:
    """Thresholds of the rolling bounce and complaint rates, per sender domain."""

    bounce_warn: float = 0.02
    bounce_pause: float = 0.05
    complaint_warn: float = 0.001
    complaint_pause: float = 0.003
    min_volume: int = 200
    window: dt.timedelta = dt.timedelta(hours=24)
    pause_for: dt.timedelta | None = None
    """How long a tripped breaker pauses the sender; ``None``: until ``guard.resume``."""
    on_warn: Callable[[BreakerEvent], None] | None = None

    def __post_init__(self) -> None:
        for name in ("bounce_warn", "bounce_pause", "complaint_warn", "complaint_pause"):
            value = check_number(
                "Breaker", name, getattr(self, name), what="a rate in (0, 1], e.g. 0.05"
            )
            if not 0 < value <= 1 or ppm(value) < 1:
                raise ConfigurationError(
                    f"Breaker({name}=...) must be a rate in (0, 1] of at least one per "
                    f"million, e.g. 0.05, not {value!r}"
                )
        if self.bounce_warn > self.bounce_pause or self.complaint_warn > self.complaint_pause:
            raise ConfigurationError("Breaker: a warning threshold above its pause threshold")
        check_integer("Breaker", "min_volume", self.min_volume, minimum=1)
        if check_timedelta("Breaker", "window", self.window) < dt.timedelta(minutes=BUCKETS):
            raise ConfigurationError(f"Breaker(window=...) must be at least {BUCKETS} minutes")
        if self.pause_for is not None:
            check_timedelta("Breaker", "pause_for", self.pause_for, positive=True)
        if self.on_warn is not None:
            check_callable("Breaker", "on_warn", self.on_warn)

    @property
    def bucket_seconds(self) -> int:
        """The width of one bucket."""
        return int(self.window.total_seconds()) // BUCKETS

    def bucket(self, now: dt.datetime) -> int:
        """The bucket *now* falls in."""
        return int(now.timestamp()) // self.bucket_seconds

    def pause_until(self, now: dt.datetime) -> dt.datetime:
        """When a pause that trips at *now* ends."""
        return now + (self.pause_for if self.pause_for is not None else FOREVER)

    def trips(self, volume: Volume) -> bool:
        """Whether *volume* is at or over a pause line (with ``min_volume`` sends).

        The rule settle.lua applies too, in the same integers (see :data:`PPM`).
        """
        return volume.sends >= self.min_volume and (
            reaches(volume.bounces, volume.sends, ppm(self.bounce_pause))
            or reaches(volume.complaints, volume.sends, ppm(self.complaint_pause))
        )

    def verdict(self, volume: Volume) -> tuple[str, str] | None:
        """``("pause", why)``, ``("warn", why)`` or ``None`` for *volume*."""
        sends = volume.sends
        if self.trips(volume):
            if reaches(volume.bounces, sends, ppm(self.bounce_pause)):
                return "pause", _why("bounce", volume.bounce_rate, self.bounce_pause, volume)
            return "pause", _why("complaint", volume.complaint_rate, self.complaint_pause, volume)
        if sends and reaches(volume.bounces, sends, ppm(self.bounce_warn)):
            return "warn", _why("bounce", volume.bounce_rate, self.bounce_warn, volume)
        if sends and reaches(volume.complaints, sends, ppm(self.complaint_warn)):
            return "warn", _why("complaint", volume.complaint_rate, self.complaint_warn, volume)
        return None


def _why(kind: str, rate: float, line: float, volume: Volume) -> str:
    return (
        f"{kind} rate {rate:.2%} reached {line:.2%} "
        f"({volume.bounces} bounces, {volume.complaints} complaints in {volume.sends} sends)"
    )


@dataclass(frozen=True, slots=True)
class SenderStatus:
    """Where a sender domain stands: its ramp, today's sends, its rates and its pauses."""

    sender_domain: str
    day: int | None
    """The day of its warmup ramp (``None`` without a warmup schedule)."""
    sent_today: int | None
    cap_today: int | None
    volume: Volume
    """Sends, bounces and complaints in the breaker's window (zeros without a breaker)."""
    paused_until: dt.datetime | None
    """When a pause of the whole sender (the breaker's) ends, if one is in force."""
    why: str
    domain_pauses: tuple[tuple[str, dt.datetime, str], ...] = ()
    """``(recipient domain, until, reason)`` of the pauses toward single domains."""

    @property
    def bounce_rate(self) -> float:
        """Bounces per send in the window."""
        return self.volume.bounce_rate

    @property
    def complaint_rate(self) -> float:
        """Complaints per send in the window."""
        return self.volume.complaint_rate
