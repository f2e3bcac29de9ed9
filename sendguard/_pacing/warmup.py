"""Warmup: how many recipients a new sending domain may reach per UTC day."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Mapping
from typing import Literal

from sendguard._errors import ConfigurationError
from sendguard._options import check_instance, check_integer

__all__ = ["PRESETS", "WarmupSchedule"]

PRESETS: dict[str, tuple[int, int, int]] = {
    "new-domain": (20, 50_000, 42),
    "new-ip": (50, 100_000, 30),
    "cautious": (10, 10_000, 60),
}
"""``name: (start, target, days)`` of :meth:`WarmupSchedule.preset`, all exponential."""


class WarmupSchedule:
    """A daily cap per sender domain that ramps up from ``started_on`` (day 1).

    Days are UTC calendar days.  Before ``started_on`` the cap of day 1 applies; after the
    last day of the table the cap stays at the last value.  Caps never decrease.

    With ``counting="sending"`` the ramp counts the days the sender actually sent, as ESPs
    do: a day without sends does not advance it, and after ``idle_restart`` days without a
    send it starts over at day 1 (mailbox providers forget a sender that went quiet).  The
    store keeps that count, shared by every process.
    """

    __slots__ = ("_caps", "counting", "idle_restart", "started_on")

    def __init__(
        self,
        caps: list[int],
        *,
        started_on: dt.date,
        counting: Literal["calendar", "sending"] = "calendar",
        idle_restart: int = 30,
    ) -> None:
        if not isinstance(caps, list | tuple):
            raise ConfigurationError(
                f"WarmupSchedule(caps=...) must be a list of daily caps such as [20, 40, 80], "
                f"not {type(caps).__name__} {caps!r}"
            )
        if not caps:
            raise ConfigurationError("a warmup schedule needs at least one day")
        for cap in caps:
            check_integer("WarmupSchedule", "caps", cap, minimum=0)
        if any(b < a for a, b in itertools.pairwise(caps)):
            raise ConfigurationError("warmup caps must never decrease from one day to the next")
        if not isinstance(counting, str) or counting not in ("calendar", "sending"):
            raise ConfigurationError(
                f"WarmupSchedule(counting=...) must be 'calendar' or 'sending', not {counting!r}"
            )
        check_integer("WarmupSchedule", "idle_restart", idle_restart, minimum=1)
        _check_date(started_on)
        self._caps = tuple(caps)
        self.started_on = started_on
        self.counting = counting
        self.idle_restart = idle_restart

    @property
    def caps(self) -> tuple[int, ...]:
        """The cap of each day of the ramp, day 1 first."""
        return self._caps

    @classmethod
    def exponential(
        cls,
        *,
        start: int,
        target: int,
        days: int,
        started_on: dt.date,
        counting: Literal["calendar", "sending"] = "calendar",
        idle_restart: int = 30,
    ) -> WarmupSchedule:
        """Grow by the same factor each day from *start* on day 1 to *target* on day *days*."""
        cls._check_ramp(start, target, days)
        if days == 1:
            return cls(
                [target], started_on=started_on, counting=counting, idle_restart=idle_restart
            )
        factor = (target / start) ** (1 / (days - 1))
        caps = [min(target, round(start * factor**i)) for i in range(days - 1)] + [target]
        return cls(
            _monotonic(caps), started_on=started_on, counting=counting, idle_restart=idle_restart
        )

    @classmethod
    def linear(
        cls,
        *,
        start: int,
        target: int,
        days: int,
        started_on: dt.date,
        counting: Literal["calendar", "sending"] = "calendar",
        idle_restart: int = 30,
    ) -> WarmupSchedule:
        """Grow by the same number each day from *start* on day 1 to *target* on day *days*."""
        cls._check_ramp(start, target, days)
        if days == 1:
            return cls(
                [target], started_on=started_on, counting=counting, idle_restart=idle_restart
            )
        step = (target - start) / (days - 1)
        return cls(
            [math.floor(start + step * i) for i in range(days - 1)] + [target],
            started_on=started_on,
            counting=counting,
            idle_restart=idle_restart,
        )

    @classmethod
    def from_table(
        cls,
        table: Mapping[int, int],
        *,
        started_on: dt.date,
        counting: Literal["calendar", "sending"] = "calendar",
        idle_restart: int = 30,
    ) -> WarmupSchedule:
        """Caps given per day number (1-based); a missing day keeps the previous day's cap."""
        if not isinstance(table, Mapping):
            raise ConfigurationError(
                f"WarmupSchedule.from_table(table=...) must be a dict of day number to cap "
                f"such as {{1: 20, 8: 100}}, not {type(table).__name__} {table!r}"
            )
        for day, cap in table.items():
            check_integer("WarmupSchedule.from_table", "table", day, minimum=1)
            check_integer("WarmupSchedule.from_table", "table", cap, minimum=0)
        if not table:
            raise ConfigurationError("a warmup table needs day numbers starting at 1")
        if 1 not in table:
            raise ConfigurationError("a warmup table must give the cap of day 1")
        caps: list[int] = []
        for day in range(1, max(table) + 1):
            caps.append(table.get(day, caps[-1] if caps else 0))
        return cls(caps, started_on=started_on, counting=counting, idle_restart=idle_restart)

    @classmethod
    def preset(
        cls,
        name: str,
        *,
        started_on: dt.date | None = None,
        counting: Literal["calendar", "sending"] = "calendar",
        idle_restart: int = 30,
    ) -> WarmupSchedule:
        """A ready-made exponential ramp, starting *started_on* (default: today, UTC).

        ``"new-domain"``: 20 a day to 50,000 over 42 days; ``"new-ip"``: 50 to 100,000 over 30
        days; ``"cautious"``: 10 to 10,000 over 60 days.
        """
        if not isinstance(name, str) or name not in PRESETS:
            known = ", ".join(sorted(PRESETS))
            raise ConfigurationError(f"no warmup preset {name!r}; known: {known}")
        start, target, days = PRESETS[name]
        day = dt.datetime.now(dt.UTC).date() if started_on is None else started_on
        return cls.exponential(
            start=start,
            target=target,
            days=days,
            started_on=day,
            counting=counting,
            idle_restart=idle_restart,
        )

    @staticmethod
    def _check_ramp(start: int, target: int, days: int) -> None:
        for name, value in (("start", start), ("target", target), ("days", days)):
            check_integer("WarmupSchedule", name, value, minimum=0)
        if start < 1:
            raise ConfigurationError("a warmup ramp must start at 1 or more per day")
        if target < start:
            raise ConfigurationError("a warmup ramp's target must be at least its start")
        if days < 1:
            raise ConfigurationError("a warmup ramp must last at least one day")

    @property
    def days(self) -> int:
        """How many days the ramp lasts before the cap stays at its target."""
        return len(self._caps)

    def day_of(self, date: dt.date) -> int:
        """The ramp day of *date* (1 on ``started_on``; earlier dates count as day 1)."""
        return max(1, (date - self.started_on).days + 1)

    def cap_for(self, day: int) -> int:
        """The cap on ramp day *day* (1-based)."""
        check_integer("WarmupSchedule.cap_for", "day", day, minimum=1)  # ramp days start at 1
        return self._caps[min(day, len(self._caps)) - 1]

    def cap_on(self, date: dt.date) -> int:
        """The cap on calendar day *date* (UTC)."""
        return self.cap_for(self.day_of(date))

    def table(self) -> list[tuple[int, int]]:
        """``(day, cap)`` for every day of the ramp."""
        return list(enumerate(self._caps, start=1))

    def __repr__(self) -> str:
        return (
            f"WarmupSchedule(days={self.days}, start={self._caps[0]}, "
            f"target={self._caps[-1]}, started_on={self.started_on.isoformat()})"
        )


def _check_date(started_on: object) -> None:
    check_instance(
        "WarmupSchedule", "started_on", started_on, dt.date, "a datetime.date (a UTC day)"
    )
    if isinstance(started_on, dt.datetime):  # a datetime minus a date is a TypeError later
        raise ConfigurationError(
            f"WarmupSchedule(started_on=...) must be a datetime.date, not a datetime: "
            f"pass {started_on!r}.date()"
        )


def _monotonic(caps: list[int]) -> list[int]:
    # Rounding can make two neighbouring days equal but never lower; keep it that way.
    for i in range(1, len(caps)):
        caps[i] = max(caps[i], caps[i - 1])
    return caps
