"""The outbox's values: what the guard keeps of mail it could not send yet, and how it is claimed.

A kept send is one :class:`Letter` (the message's bytes, once) and one :class:`Kept` entry per
recipient still to be sent.  Workers :meth:`~sendguard.Store.claim` due entries with a lease,
:meth:`~sendguard.Store.start` the ones they are about to hand to the provider, and
:meth:`~sendguard.Store.finish` them.  A lease that runs out gives a claimed entry back
(``waiting``); one that runs out while its entry was being sent makes it ``uncertain``: the
provider may have it, so it is never sent again without a person saying so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "LOST",
    "Backlog",
    "Claim",
    "Finish",
    "Held",
    "Kept",
    "Letter",
    "entry_id",
    "split_id",
]

LOST = "the worker sending it was lost: delivery uncertain"
"""The detail of an entry whose lease ran out while it was being sent."""


class Held(StrEnum):
    """Where a kept recipient stands."""

    WAITING = "waiting"
    """Waiting for its ``next_at``; any worker may claim it then."""
    CLAIMED = "claimed"
    """Claimed by a worker, until its lease runs out."""
    SENDING = "sending"
    """Being handed to the provider by the worker that claimed it."""
    UNCERTAIN = "uncertain"
    """Its delivery may have happened (no reply to the final dot, a worker lost mid-send):
    never sent again unless a person asks (``outbox retry``)."""


@dataclass(frozen=True, slots=True)
class Letter:
    """A kept message, stored once for all its kept recipients."""

    id: str
    sender: str
    """The envelope sender, as the send used it."""
    data: bytes
    """The message as it goes on the wire (its Message-ID included)."""
    created_at: dt.datetime
    message_id: str = ""
    stream: str = "transactional"
    smtputf8: bool = False
    original: str = ""
    """The framework's own message object, as its adapter wrote it down (``Adapter.keep``)."""


def entry_id(letter: str, recipient: str) -> str:
    """The id of *recipient*'s entry of *letter* (a letter id never holds a ``:``)."""
    return f"{letter}:{recipient}"


def split_id(entry: str) -> tuple[str, str]:
    """The letter id and the recipient of an entry id."""
    letter, _, recipient = entry.partition(":")
    return letter, recipient


@dataclass(frozen=True, slots=True)
class Kept:
    """One recipient of a letter, still to be sent (or uncertain)."""

    letter: str
    recipient: str
    """The address as the send was asked to deliver to it."""
    sender_domain: str
    stream: str
    next_at: dt.datetime
    created_at: dt.datetime
    attempts: int = 0
    state: Held = Held.WAITING
    detail: str = ""
    """Why it is kept (the last reply or verdict)."""
    token: str = ""
    """The claim holding it (claimed, sending, or uncertain after a lost worker)."""
    lease_until: dt.datetime | None = None

    @property
    def id(self) -> str:
        """The entry's id in the store."""
        return entry_id(self.letter, self.recipient)


@dataclass(frozen=True, slots=True)
class Claim:
    """What one :meth:`~sendguard.Store.claim` took: entries, and the letters they belong to."""

    token: str
    entries: Sequence[Kept] = ()
    letters: dict[str, Letter] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finish:
    """How a worker leaves one claimed entry.

    ``state`` ``None``: the recipient is done (delivered, rejected, suppressed, expired) and
    the entry goes; ``WAITING``: tried again at ``next_at``; ``UNCERTAIN``: kept for a person.
    """

    id: str
    state: Held | None = None
    next_at: dt.datetime | None = None
    attempts: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Backlog:
    """How many recipients one sender domain has kept in one stream, by state."""

    sender_domain: str
    stream: str
    waiting: int = 0
    due: int = 0
    """Of the waiting: those whose ``next_at`` has come."""
    claimed: int = 0
    """Claimed or being sent."""
    uncertain: int = 0
    oldest: dt.datetime | None = None
    """When the oldest of them was first kept."""
