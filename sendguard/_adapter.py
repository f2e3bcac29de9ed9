"""The adapter protocol: one provider call per delivery, its answer per recipient."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from types import TracebackType
from typing import Self

from sendguard._models import Envelope, Reply

__all__ = ["Adapter"]


class Adapter(abc.ABC):
    """Turns an :class:`Envelope` into one provider call and its answer into replies.

    Adapters translate; the guard decides.  An adapter never retries, sleeps, suppresses or
    touches the store, and reports network failures as replies without a code rather than
    raising, so the guard can tell "never reached the server" from "the server said no".
    """

    confirms_delivery: bool = False
    """Whether a 2xx from this adapter means the recipient's own server took the message.

    A relay's or an ESP's 2xx only means "queued": bounces may still follow, so it does not
    reset an address's soft bounces.  An adapter that talks to the recipient's MX sets it.
    """

    source: str = "smtp"
    """What suppressions learned from this adapter's replies are recorded as coming from.

    ``Suppression.source``: ``"smtp"`` for a server's replies, the provider's name for an
    ESP's API (``"sendgrid"``), ``"anymail"`` or ``"backend"`` for a framework's backend.
    """

    @abc.abstractmethod
    async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
        """Deliver *envelope*; return a reply for every one of its recipients (wire form)."""

    def keep(self, original: object) -> str:
        """Write down a framework message (``Envelope.original``) for the outbox, as text.

        The guard keeps mail it cannot send now; an adapter that delivers the framework's own
        message object (not the bytes) writes it down here and rebuilds it in :meth:`restore`.
        The default keeps nothing: the adapter sends ``Envelope.data``.
        """
        del original
        return ""

    def restore(self, kept: str) -> object:
        """The framework message :meth:`keep` wrote down as *kept* (``None`` by default)."""
        del kept
        return None

    def on_new_loop(self) -> None:  # noqa: B027 (optional hook, a no-op by default)
        """Forget connections made on an event loop that has ended.

        The guard calls it before it first delivers on another loop (``asyncio.run`` once
        per job with the same guard); an adapter that pools connections drops them here and
        opens new ones on the next delivery.
        """

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
