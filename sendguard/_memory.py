"""An in-process store: for tests, demos and single-process scripts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from sendguard._models import Suppression
from sendguard._store import Quota, Store, Verdicts

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Keeps everything in this process's memory; gone when the process ends.

    Each operation completes without yielding to the event loop, so it is atomic for every
    task of the process.  Counters of past days are dropped as new days begin.
    """

    def __init__(self) -> None:
        self._suppressed: dict[str, Suppression] = {}
        self._used: dict[tuple[str, str], int] = {}

    def _counter(self, quota: Quota) -> tuple[str, str]:
        key = (quota.sender_domain, quota.day.isoformat())
        if key not in self._used:
            # A new day for this domain: yesterday's counters are of no further use.
            self._used = {k: v for k, v in self._used.items() if k[1] >= key[1]}
        return key

    async def reserve(self, keys: Sequence[str], quota: Quota | None) -> Verdicts:
        """See :meth:`Store.reserve`."""
        counter = self._counter(quota) if quota is not None else None
        used = self._used.get(counter, 0) if counter is not None else 0
        verdicts: Verdicts = []
        for key in keys:
            entry = self._suppressed.get(key)
            if entry is not None:
                verdicts.append(entry)
            elif quota is None or used < quota.cap:
                used += 1
                verdicts.append(True)
            else:
                verdicts.append(False)
        if counter is not None:
            self._used[counter] = used
        return verdicts

    async def settle(
        self, quota: Quota | None, give_back: int, suppressions: Sequence[Suppression]
    ) -> list[bool]:
        """See :meth:`Store.settle`."""
        if quota is not None and give_back:
            counter = self._counter(quota)
            self._used[counter] = max(0, self._used.get(counter, 0) - give_back)
        added = []
        for entry in suppressions:
            new = entry.address not in self._suppressed
            if new:
                self._suppressed[entry.address] = entry
            added.append(new)
        return added

    async def add(self, suppressions: Sequence[Suppression], *, replace: bool = False) -> int:
        """See :meth:`Store.add`."""
        written = 0
        for entry in suppressions:
            if replace or entry.address not in self._suppressed:
                self._suppressed[entry.address] = entry
                written += 1
        return written

    async def remove(self, key: str) -> bool:
        """See :meth:`Store.remove`."""
        return self._suppressed.pop(key, None) is not None

    async def get(self, key: str) -> Suppression | None:
        """See :meth:`Store.get`."""
        return self._suppressed.get(key)

    async def scan(self) -> AsyncIterator[Suppression]:
        """See :meth:`Store.scan`."""
        for entry in list(self._suppressed.values()):
            yield entry

    async def quota_used(self, quota: Quota) -> int:
        """See :meth:`Store.quota_used`."""
        return self._used.get((quota.sender_domain, quota.day.isoformat()), 0)
