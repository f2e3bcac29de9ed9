"""One guard per process, for the integrations (Django, Flask) that share a guard app-wide."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from sendguard._sync import SyncGuard

__all__ = ["PerProcess"]


class PerProcess:
    """The :class:`SyncGuard` of this process, built from the app's settings on first use.

    A guard's thread and connections do not survive a fork: a prefork server that loads the
    app before forking its workers (``gunicorn --preload``, uWSGI without ``lazy-apps``) gives
    each worker a fresh guard, built from the same settings on the worker's first use.
    ``close`` closes it; the next ``get`` builds it again (after a settings change, say).
    """

    def __init__(self, build: Callable[[], SyncGuard], *, eager: bool = False) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._guard: SyncGuard | None = build() if eager else None
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self._lock = threading.Lock()  # the parent's may have been held by one of its threads

    def get(self) -> SyncGuard:
        """The guard of this process (built now if it has none yet)."""
        guard = self._guard
        if guard is not None and not guard.forked:
            return guard
        with self._lock:
            if self._guard is None or self._guard.forked:
                self._guard = None  # a parent's is left to the parent
                self._guard = self._build()
            return self._guard

    def close(self) -> None:
        """Close this process's guard (a parent's, seen from a child, is left to the parent)."""
        with self._lock:
            guard, self._guard = self._guard, None
        if guard is not None:
            guard.close()
