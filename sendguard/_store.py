"""The store protocol: where suppressions and warmup counters live."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from sendguard._models import Suppression

__all__ = ["Quota", "Store", "Verdicts"]


@dataclass(frozen=True, slots=True)
class Quota:
    """Today's warmup allowance for one sender domain."""

    sender_domain: str
    day: dt.date
    cap: int


Verdicts = list[Suppression | bool]
"""Per address, in order: its suppression entry, True (clear to send), False (over quota)."""


class Store(abc.ABC):
    """Shared state of every guard: the suppression list and the warmup counters.

    The two hot-path operations are single atomic steps, so that a store shared by many
    processes never lets two of them spend the same quota or miss a suppression:
    :meth:`reserve` before a delivery and :meth:`settle` after it.
    """

    @abc.abstractmethod
    async def reserve(self, keys: Sequence[str], quota: Quota | None) -> Verdicts:
        """Check *keys* against the suppression list and take quota for the others at once.

        Quota is taken, in order, for each key that is not suppressed while some is left;
        the rest are over quota.  Without *quota* every unsuppressed key is clear.
        """

    @abc.abstractmethod
    async def settle(
        self, quota: Quota | None, give_back: int, suppressions: Sequence[Suppression]
    ) -> list[bool]:
        """Give back unused quota and add suppressions, at once; True where an entry is new.

        An address already on the list keeps its first entry (its original reason and date).
        """

    @abc.abstractmethod
    async def add(self, suppressions: Sequence[Suppression], *, replace: bool = False) -> int:
        """Add entries; *replace* overwrites existing ones.  Returns how many were written."""

    @abc.abstractmethod
    async def remove(self, key: str) -> bool:
        """Take *key* off the suppression list; False if it was not on it."""

    @abc.abstractmethod
    async def get(self, key: str) -> Suppression | None:
        """The suppression entry of *key*, if any."""

    @abc.abstractmethod
    def scan(self) -> AsyncIterator[Suppression]:
        """Every suppression entry, in no particular order."""

    @abc.abstractmethod
    async def quota_used(self, quota: Quota) -> int:
        """How much of *quota* is spent so far."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook, a no-op by default)
        """Release connections."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
