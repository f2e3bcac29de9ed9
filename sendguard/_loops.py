"""Connections left behind by an event loop that has ended."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["abandon"]


def abandon(transport: asyncio.BaseTransport | None) -> None:
    """Close the socket of *transport*, whose event loop has ended, without that loop.

    A transport cannot close itself once its loop is closed (closing schedules a callback on
    it), so the socket is closed directly and the transport marked closed, which also keeps
    it from warning when it is collected.
    """
    if transport is None:
        return
    sock = getattr(transport, "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
    # Private to asyncio's selector transports, which are what a closed loop leaves.
    with contextlib.suppress(AttributeError):
        transport._sock = None  # type: ignore[attr-defined]
        transport._closing = True  # type: ignore[attr-defined]
