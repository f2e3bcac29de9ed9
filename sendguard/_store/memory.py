"""An in-process store: for tests, demos and single-process scripts."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from sendguard._models import Suppression
from sendguard._pacing.breaker import BUCKETS, Volume
from sendguard._store import (
    Admission,
    Admit,
    Outcome,
    Pause,
    Quota,
    Ramp,
    Reservation,
    Settled,
    Shape,
    Store,
    escalates,
    ramp_day,
    softbounce_entry,
)
from sendguard._store.outbox import LOST, Backlog, Claim, Finish, Held, Kept, Letter

__all__ = ["DAYS_KEPT", "MemoryStore"]

DAYS_KEPT = 3
"""How many days of a sender domain's quota counters are kept: its latest and the two before."""


class MemoryStore(Store):
    """Keeps everything in this process's memory; gone when the process ends.

    Each operation completes without yielding to the event loop, so it is atomic for every
    task of the process.  A sender domain's counters of days before the last three are
    dropped as its new days begin (Redis keeps a counter three days too).
    """

    def __init__(self) -> None:
        self._suppressed: dict[str, Suppression] = {}
        self._used: dict[tuple[str, str], int] = {}
        self._soft: dict[str, tuple[int, float]] = {}
        self._paused: dict[tuple[str, str], Pause] = {}
        self._volume: dict[tuple[str, int, str], int] = {}
        self._tat: dict[str, float] = {}
        self._slow: dict[str, tuple[float, float]] = {}
        self._ramps: dict[str, tuple[int, int]] = {}
        self._events: dict[str, float] = {}
        self._letters: dict[str, Letter] = {}
        self._kept: dict[str, Kept] = {}

    def _counter(self, quota: Quota) -> tuple[str, str]:
        key = (quota.sender_domain, quota.day.isoformat())
        if key not in self._used:
            # A new day for this domain: its counters of days before the last three are of no
            # further use (yesterday's may still be asked for just after midnight).  Other
            # domains' counters are theirs to drop.
            oldest = (quota.day - dt.timedelta(days=DAYS_KEPT - 1)).isoformat()
            for old in [k for k in self._used if k[0] == key[0] and k[1] < oldest]:
                del self._used[old]
        return key

    def _pause(self, sender: str, domain: str, now: dt.datetime) -> Pause | None:
        pause = self._paused.get((sender, domain))
        if pause is not None and pause.until <= now:
            del self._paused[(sender, domain)]
            return None
        return pause

    async def reserve(self, request: Reservation) -> list[Admission]:
        """See :meth:`Store.reserve`."""
        quota = request.quota
        day = None
        if quota is not None and request.ramp is not None:
            day = ramp_day(self._ramps.get(request.sender_domain), request.ramp)
            caps = request.ramp.caps
            quota = replace(quota, cap=caps[min(day, len(caps)) - 1])
        counter = self._counter(quota) if quota is not None else None
        used = self._used.get(counter, 0) if counter is not None else 0
        admissions: list[Admission] = []
        sender = request.sender_domain
        whole = self._pause(sender, "*", request.now) if sender and self._paused else None
        sent = 0
        now = request.now.timestamp()
        rates = [self._rate(shape, now, request.recover) for shape in request.shapes]
        shape_of = request.shape_of or [0] * len(request.keys)
        for key, shape in zip(request.keys, shape_of, strict=True):
            entry = self._suppressed.get(key)
            domain = key.rpartition("@")[2]
            pause = whole
            if pause is None and sender and self._paused:
                pause = self._pause(sender, domain, request.now)
            if entry is not None:
                admissions.append(Admission(Admit.SUPPRESSED, suppression=entry))
            elif pause is not None:
                admissions.append(Admission(Admit.PAUSED, pause=pause))
            elif quota is not None and used >= quota.cap:
                admissions.append(Admission(Admit.THROTTLED))
            else:
                mine = [rates[s - 1] for s in (request.spread, shape) if s > 0]
                retry = max((self._due(r, now) for r in mine), default=0.0)
                if retry > 0:
                    at = dt.datetime.fromtimestamp(retry, dt.UTC)
                    admissions.append(Admission(Admit.THROTTLED, retry_at=at))
                    continue
                for field, interval, _ in mine:
                    self._tat[field] = max(self._tat.get(field, 0.0), now) + interval
                used += 1
                sent += 1
                admissions.append(Admission(Admit.CLEAR, soft=key in self._soft))
        if counter is not None:
            self._used[counter] = used
        if day is not None and sent and request.ramp is not None:
            self._ramps[request.sender_domain] = (day, request.ramp.today)
        if request.bucket is not None and sent:
            tally = (sender, request.bucket, "s")
            self._volume[tally] = self._volume.get(tally, 0) + sent
        return admissions

    def _factor(self, field: str, now: float, recover: dt.timedelta) -> float:
        factor, since = self._slow.get(field, (1.0, now))
        # Halved once per recovery period; ldexp scales exactly, like Lua's division by
        # math.pow(2, n), and goes to 0 instead of overflowing after a long quiet spell.
        factor = math.ldexp(factor, -int((now - since) // recover.total_seconds()))
        if factor <= 1:
            self._slow.pop(field, None)
            return 1.0
        return factor

    def _rate(self, shape: Shape, now: float, recover: dt.timedelta) -> tuple[str, float, float]:
        interval = shape.interval
        if shape.adaptive:
            interval *= self._factor(shape.field, now, recover)
        return shape.field, interval, interval * (shape.burst - 1)

    def _due(self, rate: tuple[str, float, float], now: float) -> float:
        """0 when *rate* lets a send through at *now*, else when it will."""
        field, _, tolerance = rate
        tat = max(self._tat.get(field, 0.0), now)
        return tat - tolerance if tat - now > tolerance else 0.0

    async def settle(self, outcome: Outcome) -> Settled:
        """See :meth:`Store.settle`."""
        if outcome.once and self._seen(outcome):
            return Settled([], [], None, tripped=False, duplicate=True)
        if outcome.quota is not None and outcome.give_back:
            counter = self._counter(outcome.quota)
            self._used[counter] = max(0, self._used.get(counter, 0) - outcome.give_back)
        added = []
        for entry in outcome.suppressions:
            new = entry.address not in self._suppressed
            if new:
                self._suppressed[entry.address] = entry
            added.append(new)
        now = outcome.now.timestamp()
        escalated = []
        for entry in outcome.soft_failures:
            if entry.address in self._suppressed:
                continue
            count, first = self._soft.get(entry.address, (0, now))
            count += 1
            if escalates(count, first, now, outcome.soft_policy):
                self._suppressed[entry.address] = softbounce_entry(entry)
                self._soft.pop(entry.address, None)
                escalated.append(entry.address)
            else:
                self._soft[entry.address] = (count, first)
        for key in outcome.soft_resets:
            self._soft.pop(key, None)
        for pause in outcome.pauses:
            self._paused[(pause.sender_domain, pause.recipient_domain)] = pause
        for field in outcome.slowdowns:
            factor = self._factor(field, now, outcome.recover)
            self._slow[field] = (min(outcome.slow_max, factor * 2), now)
        volume, tripped = self._count(outcome)
        return Settled(added, escalated, volume, tripped)

    def _seen(self, outcome: Outcome) -> bool:
        """Whether any of the outcome's ids was recorded before; remember the others now.

        The others are remembered even for a duplicate: a provider's retry of an event under a
        new Mailgun token spends that token too, so it cannot be replayed with other data.
        """
        now = outcome.now.timestamp()
        horizon = now - outcome.remember.total_seconds()
        for old in [k for k, t in self._events.items() if t <= horizon]:
            del self._events[old]
        seen = False
        for key in outcome.once:
            seen |= key in self._events
            self._events.setdefault(key, now)
        return seen

    def _count(self, outcome: Outcome) -> tuple[Volume | None, bool]:
        breaker, sender = outcome.breaker, outcome.sender_domain
        if breaker is None:
            return None, False
        bucket = breaker.bucket(outcome.now)
        for kind, count in (("b", outcome.bounces), ("c", outcome.complaints)):
            if count:
                self._volume[(sender, bucket, kind)] = (
                    self._volume.get((sender, bucket, kind), 0) + count
                )
        for kind in "sbc":
            self._volume.pop((sender, bucket - BUCKETS, kind), None)
        volume = self._sum(sender, bucket)
        running = self._pause(sender, "*", outcome.now)
        if breaker.trips(volume) and running is None:
            self._paused[(sender, "*")] = outcome.trip_pause()
            return volume, True
        return volume, False

    def _sum(self, sender: str, bucket: int) -> Volume:
        totals = [0, 0, 0]
        for b in range(bucket - BUCKETS + 1, bucket + 1):
            for k, kind in enumerate("sbc"):
                totals[k] += self._volume.get((sender, b, kind), 0)
        return Volume(*totals)

    async def ramp_day(self, sender_domain: str, ramp: Ramp) -> int:
        """See :meth:`Store.ramp_day`."""
        return ramp_day(self._ramps.get(sender_domain), ramp)

    async def volume(self, sender_domain: str, bucket: int) -> Volume:
        """See :meth:`Store.volume`."""
        return self._sum(sender_domain, bucket)

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
        self._soft.pop(key, None)
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

    async def soft_bounces(self, key: str) -> int:
        """See :meth:`Store.soft_bounces`."""
        return self._soft.get(key, (0, 0.0))[0]

    async def pauses(self, sender_domain: str, now: dt.datetime) -> list[Pause]:
        """See :meth:`Store.pauses`."""
        return [p for (s, _), p in self._paused.items() if s == sender_domain and p.until > now]

    async def resume(self, sender_domain: str, now: dt.datetime | None = None) -> int:
        """See :meth:`Store.resume`."""
        at = (now or dt.datetime.now(dt.UTC)).timestamp()
        in_force = 0
        for k in [k for k in self._paused if k[0] == sender_domain]:
            if self._paused[k].until.timestamp() > at:
                in_force += 1
            del self._paused[k]
        return in_force

    # -- the outbox ----------------------------------------------------------------------------

    async def keep(self, letter: Letter, entries: Sequence[Kept]) -> int:
        """See :meth:`Store.keep`."""
        self._letters.setdefault(letter.id, letter)
        written = 0
        for entry in entries:
            if entry.id not in self._kept:
                self._kept[entry.id] = entry
                written += 1
        return written

    def _expire_leases(self, now: dt.datetime) -> None:
        for key, entry in list(self._kept.items()):
            if entry.lease_until is None or entry.lease_until > now:
                continue
            if entry.state is Held.CLAIMED:
                self._kept[key] = replace(entry, state=Held.WAITING, token="", lease_until=None)
            elif entry.state is Held.SENDING:
                self._kept[key] = replace(
                    entry,
                    state=Held.UNCERTAIN,
                    lease_until=None,
                    detail=LOST,
                )

    async def claim(
        self,
        now: dt.datetime,
        *,
        token: str,
        lease: dt.timedelta,
        limit: int,
        streams: Sequence[str],
    ) -> Claim:
        """See :meth:`Store.claim`."""
        self._expire_leases(now)
        taken: list[Kept] = []
        until = now + lease
        for stream in streams:
            due = sorted(
                (
                    e
                    for e in self._kept.values()
                    if e.stream == stream and e.state is Held.WAITING and e.next_at <= now
                ),
                key=lambda e: (e.next_at, e.id),
            )
            for entry in due[: limit - len(taken)]:
                claimed = replace(entry, state=Held.CLAIMED, token=token, lease_until=until)
                self._kept[entry.id] = claimed
                taken.append(claimed)
        letters = {e.letter: self._letters[e.letter] for e in taken}
        return Claim(token, taken, letters)

    async def start(self, token: str, ids: Sequence[str], now: dt.datetime) -> list[str]:
        """See :meth:`Store.start`."""
        started = []
        for key in ids:
            entry = self._kept.get(key)
            if (
                entry is not None
                and entry.state is Held.CLAIMED
                and entry.token == token
                and entry.lease_until is not None
                and entry.lease_until > now
            ):
                self._kept[key] = replace(entry, state=Held.SENDING)
                started.append(key)
        return started

    def _delete(self, key: str) -> None:
        letter = self._kept.pop(key).letter
        if not any(e.letter == letter for e in self._kept.values()):
            self._letters.pop(letter, None)

    async def finish(self, token: str, finished: Sequence[Finish]) -> int:
        """See :meth:`Store.finish`."""
        applied = 0
        for done in finished:
            entry = self._kept.get(done.id)
            if entry is None or not token or entry.token != token:
                continue
            applied += 1
            if done.state is None:
                self._delete(done.id)
                continue
            self._kept[done.id] = replace(
                entry,
                state=done.state,
                next_at=done.next_at or entry.next_at,
                attempts=done.attempts,
                detail=done.detail,
                token=token if done.state is Held.UNCERTAIN else "",
                lease_until=None,
            )
        return applied

    async def renew(self, token: str, ids: Sequence[str], until: dt.datetime) -> int:
        """See :meth:`Store.renew`."""
        renewed = 0
        for key in dict.fromkeys(ids):
            entry = self._kept.get(key)
            if (
                entry is not None
                and token
                and entry.token == token
                and entry.state in (Held.CLAIMED, Held.SENDING)
            ):
                self._kept[key] = replace(entry, lease_until=until)
                renewed += 1
        return renewed

    async def release(self, token: str) -> int:
        """See :meth:`Store.release`."""
        released = 0
        for key, entry in list(self._kept.items()):
            if token and entry.token == token and entry.state is Held.CLAIMED:
                self._kept[key] = replace(entry, state=Held.WAITING, token="", lease_until=None)
                released += 1
        return released

    async def kept(
        self,
        *,
        after: str = "",
        limit: int = 100,
        stream: str | None = None,
        state: Held | None = None,
    ) -> list[Kept]:
        """See :meth:`Store.kept`."""
        found = sorted(
            (
                e
                for key, e in self._kept.items()
                if key > after
                and (stream is None or e.stream == stream)
                and (state is None or e.state is state)
            ),
            key=lambda e: e.id,
        )
        return found[:limit]

    async def letter(self, letter_id: str) -> Letter | None:
        """See :meth:`Store.letter`."""
        return self._letters.get(letter_id)

    async def retry(self, ids: Sequence[str], now: dt.datetime) -> int:
        """See :meth:`Store.retry`."""
        made = 0
        for key in ids:
            entry = self._kept.get(key)
            if entry is not None and entry.state in (Held.WAITING, Held.UNCERTAIN):
                self._kept[key] = replace(
                    entry,
                    state=Held.WAITING,
                    next_at=now,
                    created_at=now,
                    token="",
                    lease_until=None,
                )
                made += 1
        return made

    async def drop(self, ids: Sequence[str]) -> int:
        """See :meth:`Store.drop`."""
        dropped = 0
        for key in dict.fromkeys(ids):
            entry = self._kept.get(key)
            if entry is not None and entry.state is not Held.SENDING:
                self._delete(key)
                dropped += 1
        return dropped

    async def backlog(self, now: dt.datetime) -> list[Backlog]:
        """See :meth:`Store.backlog`."""
        counts: dict[tuple[str, str], list[Any]] = {}
        for e in self._kept.values():
            row = counts.setdefault((e.sender_domain, e.stream), [0, 0, 0, 0, e.created_at])
            if e.state is Held.WAITING:
                row[0] += 1
                row[1] += e.next_at <= now
            elif e.state is Held.UNCERTAIN:
                row[3] += 1
            else:
                row[2] += 1
            row[4] = min(row[4], e.created_at)
        return [Backlog(s, t, *row) for (s, t), row in sorted(counts.items())]
