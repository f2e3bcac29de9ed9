"""The shared store on Redis: one hash for the suppression list, one counter per domain-day."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.client import NEVER_DECODE
from redis.commands.core import AsyncScript

from sendguard._errors import ConfigurationError, StoreError
from sendguard._loops import abandon
from sendguard._models import Suppression
from sendguard._pacing.breaker import BUCKETS, Volume, ppm
from sendguard._store import (
    Admission,
    Admit,
    Outcome,
    Pause,
    Quota,
    Ramp,
    Reservation,
    Settled,
    Store,
    abandoned,
    ramp_day,
    softbounce_entry,
)
from sendguard._store.coalesce import Coalescer
from sendguard._store.outbox import LOST, Backlog, Claim, Finish, Held, Kept, Letter

__all__ = ["RedisStore"]

# Counters are keyed by UTC day; three days outlive any clock skew between hosts.
_COUNTER_TTL = 3 * 24 * 3600


def _lua(name: str) -> str:
    return resources.files("sendguard._store").joinpath("lua", name).read_text(encoding="utf-8")


# RedisClusterException (SlotNotCoveredError, "cannot be connected", no node for a slot) is
# not a RedisError; OSError covers TimeoutError and the socket errors redis-py lets through.
_FAILURES = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError)


def _raised_in_redis(exc: BaseException) -> bool:
    """Whether *exc* was raised by redis-py's own code (its innermost frame is redis-py's)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    return isinstance(module, str) and (module == "redis" or module.startswith("redis."))


@contextlib.contextmanager
def _store_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except _FAILURES as exc:
        raise StoreError(f"Redis {operation} failed: {exc}") from exc
    except AttributeError as exc:
        # A RedisCluster closes every connection it has when a node answers CLUSTERDOWN or
        # a slot is not covered (and at every fifth MOVED); a call of another task that was
        # writing on one of them meets its writer gone.  One raised by our code is a bug.
        if not _raised_in_redis(exc):
            raise
        raise StoreError(f"Redis {operation} failed: connection closed under it ({exc})") from exc


def _journal_home() -> Path:
    """The directory of the journals of guards over Redis.

    ``SENDGUARD_JOURNAL_DIR``, else the user's state directory (``XDG_STATE_HOME``, else
    ``~/.local/state``) under ``sendguard/journal``.
    """
    explicit = os.environ.get("SENDGUARD_JOURNAL_DIR")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "sendguard" / "journal"


def _abandon_connections(client: aioredis.Redis | RedisCluster) -> None:
    """Close the sockets of *client*'s connections, made on an event loop that has ended."""
    if isinstance(client, RedisCluster):
        connections = [c for n in client.get_nodes() for c in getattr(n, "_connections", [])]
    else:
        pool = client.connection_pool
        connections = [
            *getattr(pool, "_available_connections", []),
            *getattr(pool, "_in_use_connections", []),
        ]
    for connection in connections:
        writer = getattr(connection, "_writer", None)
        if writer is not None:
            abandon(writer.transport)
        connection._reader = connection._writer = None


def _describe(client: aioredis.Redis | RedisCluster) -> str:
    """Which server *client* talks to, for naming its journal."""
    if isinstance(client, RedisCluster):
        return ",".join(sorted(f"{n.host}:{n.port}" for n in client.get_nodes())) or "cluster"
    kwargs = client.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
    return f"{where}/{kwargs.get('db', 0)}"


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _epoch(moment: dt.datetime) -> float:
    return round(moment.timestamp(), 3)


def _pause_field(sender_domain: str, recipient_domain: str) -> str:
    return f"{sender_domain}\t{recipient_domain}"


def _pause_value(pause: Pause, now: dt.datetime) -> str:
    """A pause as the scripts take it: "seconds JSON", from the moment they run."""
    body = json.dumps(
        {
            "sender": pause.sender_domain,
            "domain": pause.recipient_domain,
            "until": pause.until.isoformat(),
            "reason": pause.reason,
            "detail": pause.detail,
        },
        separators=(",", ":"),
    )
    return f"{round((pause.until - now).total_seconds(), 3)} {body}"


def _parse_pause(stored: str | bytes) -> Pause:
    """A pause from its stored "until_epoch JSON" (the epoch, on the clock that wrote it)."""
    epoch, body = _text(stored).split(" ", 1)
    raw = json.loads(body)
    return Pause(
        raw["sender"],
        raw["domain"],
        dt.datetime.fromtimestamp(float(epoch), dt.UTC),
        raw["reason"],
        raw.get("detail", ""),
    )


def _admission(key: str, item: list[Any]) -> Admission:
    kind = int(item[0])
    if kind == 0:
        return Admission(Admit.SUPPRESSED, suppression=Suppression.from_json(key, item[1]))
    if kind == 3:
        return Admission(Admit.PAUSED, pause=_parse_pause(item[1]))
    if kind == 2:
        retry = _text(item[1]) if len(item) > 1 else ""
        at = dt.datetime.fromtimestamp(float(retry), dt.UTC) if retry else None
        return Admission(Admit.THROTTLED, retry_at=at)
    return Admission(Admit.CLEAR, soft=bool(item[1]))


Arg = str | int | float


def reserve_args(
    requests: Sequence[Reservation],
    counter_key: Callable[[Quota], str],
    *,
    server_clock: bool,
) -> tuple[list[str], list[Arg]]:
    """The quota counter keys (KEYS[8...]) and ARGV of reserve.lua, which reads it in order.

    1. lifetime of a counter in seconds; now: epoch seconds (the first request's: a batch is
       one moment), or ``"server"``
    2. one group per request: counter index into KEYS (0: no cap); cap; sender domain ("":
       no pause check); breaker bucket width in seconds (0: sends not counted); ramp caps
       ("20,27,..."; "": the cap above is today's); days idle after which the ramp restarts;
       slow-down recovery period in seconds (each request's own); m; m x (shape field,
       interval, burst - 1, adaptive 0/1); spread shape (0: none, else 1...m); n; n x
       (address key, its shape 0...m)
    """
    counters: dict[str, int] = {}
    first = requests[0]
    args: list[Arg] = [
        _COUNTER_TTL,
        "server" if server_clock else _epoch(first.now),
    ]
    for request in requests:
        index = 0
        if request.quota is not None:
            index = counters.setdefault(counter_key(request.quota), len(counters) + 8)
        shape_of = request.shape_of or [0] * len(request.keys)
        ramp = request.ramp if request.quota is not None else None
        args += [
            index,
            request.quota.cap if request.quota is not None else -1,
            request.sender_domain,
            request.bucket_seconds if request.bucket is not None else 0,
            ",".join(map(str, ramp.caps)) if ramp else "",
            ramp.idle_restart if ramp else 0,
            request.recover.total_seconds(),
            len(request.shapes),
            *(
                x
                for shape in request.shapes
                for x in (shape.field, shape.interval, shape.burst - 1, int(shape.adaptive))
            ),
            request.spread,
            len(request.keys),
            *(x for pair in zip(request.keys, shape_of, strict=True) for x in pair),
        ]
    return list(counters), args


def _breaker_args(outcome: Outcome) -> list[Arg]:
    breaker = outcome.breaker
    if breaker is None:
        return [0, BUCKETS, 0, 0, 0, 0, 0, ""]
    return [
        breaker.bucket_seconds,
        BUCKETS,
        outcome.bounces,
        outcome.complaints,
        breaker.min_volume,
        ppm(breaker.bounce_pause),
        ppm(breaker.complaint_pause),
        _pause_value(outcome.trip_pause(), outcome.now),
    ]


def settle_args(outcome: Outcome, *, server_clock: bool) -> list[Arg]:
    """ARGV of settle.lua, which reads it in this order, section by section.

    1. now: epoch seconds, or ``"server"`` for the Redis server's clock
    2. seconds an id is remembered; n; n ids (event id, nonce): when any was seen before the
       outcome is a duplicate and nothing else is read or changed
    3. quota to give back (0: none)
    4. n; n x (address key, JSON entry): suppressions
    5. soft threshold; soft span in seconds; n; n x (address key, JSON softbounce entry)
    6. n; n address keys: soft-bounce resets
    7. n; n x (pause field, "seconds JSON"): pauses, for that long from now
    8. recovery seconds; largest factor; n; n shape fields: slow-downs
    9. the breaker: sender; bucket width in seconds (0: no breaker); buckets in the window;
       bounces; complaints; min volume; bounce pause and complaint pause in whole parts per
       million (:data:`sendguard._pacing.breaker.PPM`); "seconds JSON" of the pause a trip writes
    """
    policy = outcome.soft_policy
    return [
        "server" if server_clock else _epoch(outcome.now),
        outcome.remember.total_seconds(),
        len(outcome.once),
        *outcome.once,
        outcome.give_back if outcome.quota is not None else 0,
        len(outcome.suppressions),
        *(x for e in outcome.suppressions for x in (e.address, e.to_json())),
        policy.threshold,
        policy.span.total_seconds(),
        len(outcome.soft_failures),
        *(x for e in outcome.soft_failures for x in (e.address, softbounce_entry(e).to_json())),
        len(outcome.soft_resets),
        *outcome.soft_resets,
        len(outcome.pauses),
        *(
            x
            for p in outcome.pauses
            for x in (
                _pause_field(p.sender_domain, p.recipient_domain),
                _pause_value(p, outcome.now),
            )
        ),
        outcome.recover.total_seconds(),
        outcome.slow_max,
        len(outcome.slowdowns),
        *outcome.slowdowns,
        outcome.sender_domain,
        *_breaker_args(outcome),
    ]


# Asks redis-py to hand an answer back as the server sent it, bytes, on any client.
_RAW: dict[str, Any] = {NEVER_DECODE: True}

_ORIGIN = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)

"""The detail of an entry whose lease ran out while it was being sent (MemoryStore's words)."""

_OUTBOX_SCRIPTS = (
    "keep",
    "claim",
    "start",
    "renew",
    "finish",
    "release",
    "retry",
    "drop",
    "backlog",
)


def _stamp(moment: dt.datetime) -> str:
    """*moment* as the outbox scripts keep it: microseconds since 0001-01-01 UTC, 18 digits.

    Stamps of the same width compare as text (the scripts' sorted sets order by member), and
    come back as the very datetime (epoch seconds as a double would round the microseconds).
    """
    return f"{(moment - _ORIGIN) // _MICROSECOND:018d}"


def _moment(stamp: bytes | str) -> dt.datetime:
    return _ORIGIN + dt.timedelta(microseconds=int(stamp))


def _kept_value(entry: Kept) -> str:
    """An entry as outbox.lua stores it (JSON; times as stamps, "" for none)."""
    return json.dumps(
        {
            "letter": entry.letter,
            "recipient": entry.recipient,
            "sender_domain": entry.sender_domain,
            "stream": entry.stream,
            "next_at": _stamp(entry.next_at),
            "created_at": _stamp(entry.created_at),
            "attempts": entry.attempts,
            "state": entry.state.value,
            "detail": entry.detail,
            "token": entry.token,
            "lease_until": "" if entry.lease_until is None else _stamp(entry.lease_until),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _parse_kept(raw: bytes | str) -> Kept:
    item = json.loads(raw)
    return Kept(
        letter=item["letter"],
        recipient=item["recipient"],
        sender_domain=item["sender_domain"],
        stream=item["stream"],
        next_at=_moment(item["next_at"]),
        created_at=_moment(item["created_at"]),
        attempts=int(item["attempts"]),
        state=Held(item["state"]),
        detail=item["detail"],
        token=item["token"],
        lease_until=_moment(item["lease_until"]) if item["lease_until"] else None,
    )


def _letter_value(letter: Letter) -> bytes:
    """A letter as stored: its fields as one line of JSON, a newline, then the message."""
    head = json.dumps(
        {
            "sender": letter.sender,
            "created_at": _stamp(letter.created_at),
            "message_id": letter.message_id,
            "stream": letter.stream,
            "smtputf8": letter.smtputf8,
            "original": letter.original,
        },
        separators=(",", ":"),
    )
    return head.encode() + b"\n" + letter.data


def _parse_letter(letter_id: str, raw: bytes) -> Letter:
    head, _, data = raw.partition(b"\n")
    item = json.loads(head)
    return Letter(
        id=letter_id,
        sender=item["sender"],
        data=data,
        created_at=_moment(item["created_at"]),
        message_id=item["message_id"],
        stream=item["stream"],
        smtputf8=bool(item["smtputf8"]),
        original=item["original"],
    )


class RedisStore(Store):
    """Suppressions, warmup counters and the outbox in Redis, shared by every process and host.

    Keys live under ``prefix`` and all carry the hash tag ``{prefix}``, so every key one
    operation touches is in one slot and the same scripts run on Redis Cluster.
    """

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        prefix: str = "sendguard",
        owns_client: bool = False,
        server_clock: bool = True,
    ) -> None:
        if not prefix or any(c in prefix for c in "{}"):
            raise ConfigurationError(
                "RedisStore(prefix=...) must be non-empty and free of '{' and '}'"
            )
        self._client = client
        self._owns_client = owns_client
        self.server_clock = server_clock
        self.prefix = prefix
        self._suppressed_key = f"{{{prefix}}}:suppressed"
        self._soft_key = f"{{{prefix}}}:soft"
        self._paused_key = f"{{{prefix}}}:paused"
        self._volume_key = f"{{{prefix}}}:volume"
        self._rate_key = f"{{{prefix}}}:rate"
        self._slow_key = f"{{{prefix}}}:slow"
        self._ramp_key = f"{{{prefix}}}:ramp"
        self._events_key = f"{{{prefix}}}:events"
        # In outbox.lua's KEYS order.
        self._outbox_keys = [
            f"{{{prefix}}}:outbox:{name}"
            for name in (
                "entries",
                "letters",
                "refs",
                "ids",
                "waiting",
                "due",
                "leases",
                "created",
                "counts",
                "holds",
            )
        ]
        self._entries_key, self._letters_key, _, self._ids_key = self._outbox_keys[:4]
        self._rebuild: Callable[[], aioredis.Redis | RedisCluster] | None = None
        self._bind(client)
        self.journal_directory = (
            _journal_home()
            / hashlib.sha256(f"{_describe(client)}\t{prefix}".encode()).hexdigest()[:16]
        )

    def _bind(self, client: aioredis.Redis | RedisCluster) -> None:
        self._client = client
        self._reserve: AsyncScript = client.register_script(_lua("reserve.lua"))
        self._settle: AsyncScript = client.register_script(_lua("settle.lua"))
        self._resume: AsyncScript = client.register_script(_lua("resume.lua"))
        # Each outbox script runs after the layout and upkeep they share.
        shared = _lua("outbox.lua")
        self._outbox_scripts: dict[str, AsyncScript] = {
            name: client.register_script(shared + _lua(f"outbox_{name}.lua"))
            for name in _OUTBOX_SCRIPTS
        }
        self._reservations = Coalescer(self._reserve_batch, orphaned=abandoned)

    def on_new_loop(self) -> None:
        """See :meth:`Store.on_new_loop`: a client of :meth:`from_url` is made anew.

        A client given to the constructor has its pool emptied (a cluster client cannot be,
        and refuses: build the store with ``from_url`` to use it from several loops).
        """
        _abandon_connections(self._client)
        if self._rebuild is not None:
            self._bind(self._rebuild())
        elif isinstance(self._client, aioredis.Redis):
            self._client.connection_pool.reset()  # type: ignore[no-untyped-call]
            self._reservations = Coalescer(self._reserve_batch, orphaned=abandoned)
        else:
            raise ConfigurationError(
                "a RedisStore over a RedisCluster client of your own cannot move to another "
                "event loop: make it with RedisStore.from_url(..., cluster=True), or one store "
                "per loop"
            )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "sendguard",
        cluster: bool = False,
        server_clock: bool = True,
        **options: Any,  # noqa: ANN401 (passed through to redis-py as is)
    ) -> RedisStore:
        """A store with its own connection pool to the Redis server at *url*.

        With ``cluster=True`` *url* names any node of a Redis Cluster; every key of the store
        carries the hash tag ``{prefix}``, so each script runs on the one node that owns it.
        """

        def connect() -> aioredis.Redis | RedisCluster:
            if cluster:
                return RedisCluster.from_url(url, **options)
            return aioredis.Redis.from_url(url, **options)

        try:
            client = connect()
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis URL {url!r}: {exc}") from exc
        store = cls(client, prefix=prefix, owns_client=True, server_clock=server_clock)
        store._rebuild = connect
        return store

    async def _ready(self) -> None:
        """Have a cluster client learn the slots before it routes a command of ours.

        redis-py's ``RedisCluster.execute_command`` picks a command's node before it
        initializes: without a default node it takes the script call for a keyless command and
        sends it to any node.  The first concurrent calls of a fresh client (or of one that
        closed itself after a ``ClusterDownError``) so come back MOVED, and every fifth MOVED
        closes all the client's connections under the calls of other tasks, which then fail
        with an ``AttributeError`` deep in redis-py.  ``initialize()`` holds a lock and
        returns at once when the client is ready.
        """
        if isinstance(self._client, RedisCluster):
            await self._client.initialize()

    def _counter_key(self, quota: Quota | None) -> str:
        if quota is None:
            # The settle script always gets this key; without a quota it is never touched.
            return f"{{{self.prefix}}}:quota:-"
        return f"{{{self.prefix}}}:quota:{quota.sender_domain}:{quota.day.isoformat()}"

    async def reserve(self, request: Reservation) -> list[Admission]:
        """See :meth:`Store.reserve`: one script call, shared with concurrent sends."""
        return await self._reservations.submit(request)

    async def _reserve_batch(self, requests: Sequence[Reservation]) -> list[list[Admission]]:
        counters, args = reserve_args(requests, self._counter_key, server_clock=self.server_clock)
        with _store_errors("reserve"):
            await self._ready()
            raw: list[list[Any]] = await self._reserve(
                keys=[
                    self._suppressed_key,
                    self._soft_key,
                    self._paused_key,
                    self._volume_key,
                    self._rate_key,
                    self._slow_key,
                    self._ramp_key,
                    *counters,
                ],
                args=args,
            )
        admissions: list[list[Admission]] = []
        position = 0
        for request in requests:
            chunk = raw[position : position + len(request.keys)]
            position += len(request.keys)
            admissions.append(
                [_admission(k, item) for k, item in zip(request.keys, chunk, strict=True)]
            )
        return admissions

    async def settle(self, outcome: Outcome) -> Settled:
        """See :meth:`Store.settle`: one script call, one round trip."""
        with _store_errors("settle"):
            await self._ready()
            added, escalated, counts, duplicate = await self._settle(
                keys=[
                    self._suppressed_key,
                    self._soft_key,
                    self._paused_key,
                    self._counter_key(outcome.quota),
                    self._volume_key,
                    self._slow_key,
                    self._events_key,
                ],
                args=settle_args(outcome, server_clock=self.server_clock),
            )
        # A duplicate changes nothing and counts nothing: no volume, as MemoryStore says.
        volume = (
            Volume(*(int(c) for c in counts[:3])) if outcome.breaker and not duplicate else None
        )
        return Settled(
            [bool(x) for x in added],
            [_text(k) for k in escalated],
            volume,
            bool(counts[3]),
            bool(duplicate),
        )

    async def ramp_day(self, sender_domain: str, ramp: Ramp) -> int:
        """See :meth:`Store.ramp_day`."""
        with _store_errors("ramp_day"):
            await self._ready()
            raw = await self._client.hget(self._ramp_key, sender_domain)
        if raw is None:
            return 1
        day, last = _text(raw).split(" ")
        return ramp_day((int(day), int(last)), ramp)

    async def volume(self, sender_domain: str, bucket: int) -> Volume:
        """See :meth:`Store.volume`."""
        fields = [
            f"{sender_domain}\t{b}\t{kind}"
            for b in range(bucket - BUCKETS + 1, bucket + 1)
            for kind in "sbc"
        ]
        with _store_errors("volume"):
            await self._ready()
            raw = await self._client.hmget(self._volume_key, fields)
        totals = [0, 0, 0]
        for index, value in enumerate(raw):
            totals[index % 3] += int(value or 0)
        return Volume(*totals)

    async def add(self, suppressions: Sequence[Suppression], *, replace: bool = False) -> int:
        """See :meth:`Store.add`."""
        if not suppressions:
            return 0
        with _store_errors("add"):
            await self._ready()
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
            await self._ready()
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hdel(self._suppressed_key, key)
                pipe.hdel(self._soft_key, key)
                removed, _ = await pipe.execute()
        return bool(removed)

    async def get(self, key: str) -> Suppression | None:
        """See :meth:`Store.get`."""
        with _store_errors("get"):
            await self._ready()
            raw: bytes | str | None = await self._client.hget(self._suppressed_key, key)
        return None if raw is None else Suppression.from_json(key, raw)

    async def scan(self) -> AsyncIterator[Suppression]:
        """See :meth:`Store.scan`: HSCAN in batches, never one huge reply."""
        cursor = 0
        while True:
            with _store_errors("scan"):
                await self._ready()
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
            await self._ready()
            raw = await self._client.get(self._counter_key(quota))
        return int(raw or 0)

    async def soft_bounces(self, key: str) -> int:
        """See :meth:`Store.soft_bounces`."""
        with _store_errors("soft_bounces"):
            await self._ready()
            raw = await self._client.hget(self._soft_key, key)
        return 0 if raw is None else int(_text(raw).split(" ")[0])

    async def pauses(self, sender_domain: str, now: dt.datetime) -> list[Pause]:
        """See :meth:`Store.pauses`."""
        with _store_errors("pauses"):
            await self._ready()
            raw = await self._client.hgetall(self._paused_key)
        found = []
        for field_, value in raw.items():
            if _text(field_).split("\t")[0] == sender_domain:
                pause = _parse_pause(value)
                if pause.until > now:
                    found.append(pause)
        return found

    async def resume(self, sender_domain: str, now: dt.datetime | None = None) -> int:
        """See :meth:`Store.resume`: one script call."""
        if now is not None:
            at: Arg = _epoch(now)
        else:
            at = "server" if self.server_clock else _epoch(dt.datetime.now(dt.UTC))
        with _store_errors("resume"):
            await self._ready()
            lifted = await self._resume(
                keys=[self._paused_key],
                args=[sender_domain, at],
            )
        return int(lifted)

    # -- the outbox: one script per change (outbox.lua has the layout) -------------------------

    async def _outbox(self, operation: str, args: Sequence[Arg | bytes]) -> Any:  # noqa: ANN401 (each script answers in its own shape)
        """Run the outbox script of *operation* over the outbox's keys; its answer undecoded.

        The answer comes back as bytes whatever the client's ``decode_responses`` (a letter's
        message is binary), which ``AsyncScript.__call__`` cannot ask for.
        """
        script = self._outbox_scripts[operation]
        keys = self._outbox_keys
        with _store_errors(operation):
            await self._ready()
            try:
                return await self._client.execute_command(
                    "EVALSHA", script.sha, len(keys), *keys, *args, **_RAW
                )
            except redis.exceptions.NoScriptError:
                # A server restarted (or a node that never ran it): load it, as AsyncScript does.
                script.sha = _text(await self._client.script_load(script.script))
                return await self._client.execute_command(
                    "EVALSHA", script.sha, len(keys), *keys, *args, **_RAW
                )

    async def keep(self, letter: Letter, entries: Sequence[Kept]) -> int:
        """See :meth:`Store.keep`: one script call."""
        args: list[Arg | bytes] = [letter.id, _letter_value(letter)]
        for entry in entries:
            args += [entry.id, _kept_value(entry)]
        return int(await self._outbox("keep", args))

    async def claim(
        self,
        now: dt.datetime,
        *,
        token: str,
        lease: dt.timedelta,
        limit: int,
        streams: Sequence[str],
    ) -> Claim:
        """See :meth:`Store.claim`: one script call, atomic for every worker of the store."""
        taken, letters = await self._outbox(
            "claim",
            [
                _stamp(now + _MICROSECOND),
                _stamp(now + lease),
                token,
                max(limit, 0),
                LOST,
                *streams,
            ],
        )
        return Claim(
            token,
            [_parse_kept(raw) for _, raw in taken],
            {_text(name): _parse_letter(_text(name), raw) for name, raw in letters},
        )

    async def start(self, token: str, ids: Sequence[str], now: dt.datetime) -> list[str]:
        """See :meth:`Store.start`: one script call."""
        if not ids:
            return []
        started = await self._outbox("start", [_stamp(now), token, *ids])
        return [_text(key) for key in started]

    async def finish(self, token: str, finished: Sequence[Finish]) -> int:
        """See :meth:`Store.finish`: one script call for them all."""
        if not finished:
            return 0
        args: list[Arg | bytes] = [token]
        for done in finished:
            args += [
                done.id,
                "" if done.state is None else done.state.value,
                "" if done.next_at is None else _stamp(done.next_at),
                done.attempts,
                done.detail,
            ]
        return int(await self._outbox("finish", args))

    async def renew(self, token: str, ids: Sequence[str], until: dt.datetime) -> int:
        """See :meth:`Store.renew`: one script call."""
        if not token or not ids:
            return 0
        return int(await self._outbox("renew", [token, _stamp(until), *dict.fromkeys(ids)]))

    async def release(self, token: str) -> int:
        """See :meth:`Store.release`: one script call."""
        return int(await self._outbox("release", [token]))

    async def kept(
        self,
        *,
        after: str = "",
        limit: int = 100,
        stream: str | None = None,
        state: Held | None = None,
    ) -> list[Kept]:
        """See :meth:`Store.kept`: pages of ids, then their entries; a read, not a snapshot.

        An entry finished or dropped between the two reads of a page is left out.
        """
        found: list[Kept] = []
        # Unfiltered, one page is the answer; filtered, larger pages save round trips.
        page = limit if stream is None and state is None else max(limit, 500)
        low: str | bytes = f"({after}" if after else "-"
        while len(found) < limit:
            with _store_errors("kept"):
                await self._ready()
                ids: list[bytes] = await self._client.execute_command(
                    "ZRANGEBYLEX", self._ids_key, low, "+", "LIMIT", 0, page, **_RAW
                )
                if not ids:
                    break
                raws: list[bytes | None] = await self._client.execute_command(
                    "HMGET", self._entries_key, *ids, **_RAW
                )
            for raw in raws:
                if raw is None:
                    continue
                entry = _parse_kept(raw)
                if (stream is None or entry.stream == stream) and (
                    state is None or entry.state is state
                ):
                    found.append(entry)
                    if len(found) == limit:
                        break
            if len(ids) < page:
                break
            low = b"(" + ids[-1]
        return found

    async def letter(self, letter_id: str) -> Letter | None:
        """See :meth:`Store.letter`."""
        with _store_errors("letter"):
            await self._ready()
            raw: bytes | None = await self._client.execute_command(
                "HGET", self._letters_key, letter_id, **_RAW
            )
        return None if raw is None else _parse_letter(letter_id, raw)

    async def retry(self, ids: Sequence[str], now: dt.datetime) -> int:
        """See :meth:`Store.retry`: one script call."""
        if not ids:
            return 0
        return int(await self._outbox("retry", [_stamp(now), *ids]))

    async def drop(self, ids: Sequence[str]) -> int:
        """See :meth:`Store.drop`: one script call."""
        if not ids:
            return 0
        return int(await self._outbox("drop", list(ids)))

    async def backlog(self, now: dt.datetime) -> list[Backlog]:
        """See :meth:`Store.backlog`: one script call, a consistent count."""
        rows = await self._outbox("backlog", [_stamp(now + _MICROSECOND)])
        found = [
            Backlog(
                _text(sender_domain),
                _text(stream),
                int(waiting),
                int(due),
                int(claimed),
                int(uncertain),
                _moment(oldest) if oldest else None,
            )
            for sender_domain, stream, waiting, due, claimed, uncertain, oldest in rows
        ]
        return sorted(found, key=lambda b: (b.sender_domain, b.stream))

    async def aclose(self) -> None:
        """Close the connection pool if this store created it."""
        await self._reservations.aclose()
        if self._owns_client:
            await self._client.aclose()
