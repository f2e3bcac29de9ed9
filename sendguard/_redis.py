"""The shared store on Redis: one hash for the suppression list, one counter per domain-day."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from importlib import resources
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions
from redis.commands.core import AsyncScript

from sendguard._coalesce import Coalescer
from sendguard._errors import ConfigurationError, StoreError
from sendguard._models import Suppression
from sendguard._store import Quota, Store, Verdicts

__all__ = ["RedisStore"]

# Counters are keyed by UTC day; three days outlive any clock skew between hosts.
_COUNTER_TTL = 3 * 24 * 3600


def _lua(name: str) -> str:
    return resources.files("sendguard").joinpath("lua", name).read_text(encoding="utf-8")


@contextlib.contextmanager
def _store_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except (redis.exceptions.RedisError, OSError) as exc:
        raise StoreError(f"Redis {operation} failed: {exc}") from exc


class RedisStore(Store):
    """Suppressions and warmup counters in Redis, shared by every process and host.

    Keys live under ``prefix`` and all carry the hash tag ``{prefix}``, so every key one
    operation touches is in one slot and the same scripts run on Redis Cluster.
    """

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "sendguard", owns_client: bool = False
    ) -> None:
        if not prefix or any(c in prefix for c in "{}"):
            raise ConfigurationError(
                "RedisStore(prefix=...) must be non-empty and free of '{' and '}'"
            )
        self._client = client
        self._owns_client = owns_client
        self.prefix = prefix
        self._suppressed_key = f"{{{prefix}}}:suppressed"
        self._reserve: AsyncScript = client.register_script(_lua("reserve.lua"))
        self._settle: AsyncScript = client.register_script(_lua("settle.lua"))
        self._reservations = Coalescer(self._reserve_batch)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "sendguard",
        **options: Any,  # noqa: ANN401 (passed through to redis-py as is)
    ) -> RedisStore:
        """A store with its own connection pool to the Redis server at *url*."""
        try:
            client = aioredis.Redis.from_url(url, **options)
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis URL {url!r}: {exc}") from exc
        return cls(client, prefix=prefix, owns_client=True)

    def _counter_key(self, quota: Quota | None) -> str:
        if quota is None:
            # The scripts always get two keys; this one is never read or written.
            return f"{{{self.prefix}}}:quota:-"
        return f"{{{self.prefix}}}:quota:{quota.sender_domain}:{quota.day.isoformat()}"

    async def reserve(self, keys: Sequence[str], quota: Quota | None) -> Verdicts:
        """See :meth:`Store.reserve`: one script call, shared with concurrent sends."""
        return await self._reservations.submit((keys, quota))

    async def _reserve_batch(
        self, requests: Sequence[tuple[Sequence[str], Quota | None]]
    ) -> list[Verdicts]:
        counters: dict[str, int] = {}
        args: list[str | int] = [_COUNTER_TTL]
        for keys, quota in requests:
            index = 0
            if quota is not None:
                index = counters.setdefault(self._counter_key(quota), len(counters) + 2)
            args += [index, quota.cap if quota is not None else -1, len(keys), *keys]
        with _store_errors("reserve"):
            raw: list[Any] = await self._reserve(keys=[self._suppressed_key, *counters], args=args)
        verdicts: list[Verdicts] = []
        position = 0
        for keys, _ in requests:
            chunk = raw[position : position + len(keys)]
            position += len(keys)
            verdicts.append(
                [
                    Suppression.from_json(key, item)
                    if isinstance(item, bytes | str)
                    else bool(item)
                    for key, item in zip(keys, chunk, strict=True)
                ]
            )
        return verdicts

    async def settle(
        self, quota: Quota | None, give_back: int, suppressions: Sequence[Suppression]
    ) -> list[bool]:
        """See :meth:`Store.settle`: one script call, one round trip."""
        pairs = [x for entry in suppressions for x in (entry.address, entry.to_json())]
        with _store_errors("settle"):
            raw: list[int] = await self._settle(
                keys=[self._suppressed_key, self._counter_key(quota)],
                args=[give_back if quota is not None else 0, *pairs],
            )
        return [bool(x) for x in raw]

    async def add(self, suppressions: Sequence[Suppression], *, replace: bool = False) -> int:
        """See :meth:`Store.add`."""
        if not suppressions:
            return 0
        with _store_errors("add"):
            async with self._client.pipeline(transaction=False) as pipe:
                for entry in suppressions:
                    if replace:
                        pipe.hset(self._suppressed_key, entry.address, entry.to_json())
                    else:
                        pipe.hsetnx(self._suppressed_key, entry.address, entry.to_json())
                results: list[int] = await pipe.execute()
        # HSET counts only new fields; a replaced entry was written all the same.
        return len(results) if replace else sum(1 for r in results if r)

    async def remove(self, key: str) -> bool:
        """See :meth:`Store.remove`."""
        with _store_errors("remove"):
            removed: int = await self._client.hdel(self._suppressed_key, key)
        return removed > 0

    async def get(self, key: str) -> Suppression | None:
        """See :meth:`Store.get`."""
        with _store_errors("get"):
            raw: bytes | str | None = await self._client.hget(self._suppressed_key, key)
        return None if raw is None else Suppression.from_json(key, raw)

    async def scan(self) -> AsyncIterator[Suppression]:
        """See :meth:`Store.scan`: HSCAN in batches, never one huge reply."""
        cursor = 0
        while True:
            with _store_errors("scan"):
                cursor, batch = await self._client.hscan(self._suppressed_key, cursor, count=500)
            # HSCAN on a hash answers field/value pairs as a dict.
            for key, raw in cast("dict[bytes | str, bytes | str]", batch).items():
                address = key.decode() if isinstance(key, bytes) else key
                yield Suppression.from_json(address, raw)
            if cursor == 0:
                return

    async def quota_used(self, quota: Quota) -> int:
        """See :meth:`Store.quota_used`."""
        with _store_errors("quota_used"):
            raw = await self._client.get(self._counter_key(quota))
        return int(raw or 0)

    async def aclose(self) -> None:
        """Close the connection pool if this store created it."""
        await self._reservations.aclose()
        if self._owns_client:
            await self._client.aclose()
