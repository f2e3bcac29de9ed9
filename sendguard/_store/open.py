"""Stores named by URL: what a setting, an environment variable or ``--store`` holds."""

from __future__ import annotations

from pathlib import Path

from sendguard._errors import ConfigurationError
from sendguard._options import check_text
from sendguard._store import Store
from sendguard._store.memory import MemoryStore
from sendguard._store.redis import RedisStore
from sendguard._store.sqlite import SQLiteStore

__all__ = ["open_store", "sqlite_path", "store_url"]

_SCHEMES = (
    "memory://",
    "sqlite:///relative/path.db",
    "sqlite:////absolute/path.db",
    "redis://host:port/db",
    "rediss://host:port/db",
    "unix:///path/to/redis.sock",
    "redis+cluster://host:port",
)
"""The forms :func:`open_store` understands (the SQLite ones as SQLAlchemy spells them)."""

_REDIS = ("redis://", "rediss://", "unix://")
_CLUSTER = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}


def open_store(url: str, *, prefix: str = "sendguard") -> Store:
    """The store *url* names; *prefix* is the key prefix of a Redis store.

    ``memory://`` is a fresh :class:`MemoryStore`; ``sqlite:///app.db`` a :class:`SQLiteStore`
    on ``app.db`` (relative to the working directory; four slashes for an absolute path);
    ``redis://``, ``rediss://`` and ``unix://`` a :class:`RedisStore`, and
    ``redis+cluster://`` one on a Redis Cluster.  Anything else raises
    :class:`ConfigurationError`, as does a SQLite URL without a path.
    """
    check_text("open_store", "url", url)
    check_text("open_store", "prefix", prefix)
    if url == "memory://":
        return MemoryStore()
    if (path := sqlite_path(url)) is not None:
        return SQLiteStore(path)
    if url.startswith(_REDIS):
        return RedisStore.from_url(url, prefix=prefix)
    for scheme, plain in _CLUSTER.items():
        if url.startswith(scheme):
            plain_url = plain + url.removeprefix(scheme)
            return RedisStore.from_url(plain_url, prefix=prefix, cluster=True)
    raise ConfigurationError(
        f"no store for {url!r}: use one of " + ", ".join(_SCHEMES),
    )


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names; None for any other URL."""
    if not url.startswith("sqlite:///"):
        return None
    if url == "sqlite:///":
        raise ConfigurationError(f"{url!r} names no file: sqlite:///path/to/file.db")
    return Path(url.removeprefix("sqlite:///"))


def store_url(
    store: str | None, redis_url: str | None, *, cluster: bool = False, default: str
) -> str:
    """The store URL of a configuration that may name one (*store*) or a Redis (*redis_url*).

    Naming both is a :class:`ConfigurationError`; naming neither gives *default*.  With
    *cluster* the Redis URL names a node of a Redis Cluster.
    """
    if store and redis_url:
        raise ConfigurationError("give a store URL or a Redis URL, not both")
    if store:
        return store
    if not redis_url:
        return default
    if not cluster:
        return redis_url
    scheme, sep, rest = redis_url.partition("://")
    if scheme not in ("redis", "rediss") or not sep:
        raise ConfigurationError(f"a Redis Cluster needs a redis:// URL, not {redis_url!r}")
    return f"{scheme}+cluster://{rest}"
