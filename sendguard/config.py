"""One configuration: every Guard option as plain data, read the same from every source.

The same keys serve Django's ``SENDGUARD`` dict, Flask's ``SENDGUARD_*`` keys, ``SENDGUARD_*``
environment variables and a ``sendguard.toml`` file (or a ``[tool.sendguard]`` table in
``pyproject.toml``) for the plain command line::

    from sendguard import config
    settings = config.from_mapping({"WARMUP": {"schedule": "linear", "start": 7, ...}})
    guard = Guard(**settings.guard_options(), adapter=...)

Keys are case-insensitive (``warmup`` in a TOML file, ``WARMUP`` in Django).  Values are
plain data (strings, numbers, booleans, lists and tables) or the objects themselves
(``WarmupSchedule``, ``RetryPolicy``, ...).  In the environment, a structured value is JSON
(``SENDGUARD_WARMUP='{"preset": "new-domain", "started_on": "2026-11-01"}'``).  An unknown
key, or a value of the wrong shape, is a :class:`ConfigurationError` naming the key (with a
"did you mean" for a typo).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sendguard._bounces.classify import Rule, Rules, load_rules
from sendguard._errors import ConfigurationError
from sendguard._pacing.breaker import Breaker
from sendguard._pacing.retry import RetryPolicy
from sendguard._pacing.shaping import Shaping
from sendguard._pacing.warmup import WarmupSchedule
from sendguard._store import SoftBouncePolicy, Store
from sendguard._store.open import open_store, store_url

__all__ = [
    "KEYS",
    "Settings",
    "find_file",
    "from_env",
    "from_file",
    "from_mapping",
    "from_prefixed",
]

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*\Z", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(key: str, value: object) -> dt.timedelta:
    """Seconds (a number), a ``timedelta``, or a text like ``"90s"``, ``"15m"``, ``"1h"``."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    if isinstance(value, str) and (found := _DURATION.match(value)):
        unit = _UNITS[(found[2] or "s").lower()]
        return dt.timedelta(seconds=float(found[1]) * unit)
    raise ConfigurationError(
        f"{key} must be a duration: seconds, or a text such as '90s', '15m', '1h', '2d'; "
        f"not {value!r}"
    )


def _table(key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{key} must be a table (dict) of options, not {value!r}")
    return {str(k).lower(): v for k, v in value.items()}


_T = TypeVar("_T")


def _build(key: str, kind: Callable[..., _T], value: Mapping[str, Any]) -> _T:
    try:
        return kind(**value)
    except TypeError as exc:  # an option the class does not take
        raise ConfigurationError(f"{key}: {exc}") from exc
    except ConfigurationError as exc:
        raise ConfigurationError(f"{key}: {exc}") from exc


def _warmup(key: str, value: object) -> WarmupSchedule:
    if isinstance(value, WarmupSchedule):
        return value
    spec = _table(key, value)
    started = spec.pop("started_on", None)
    try:
        started_on = dt.date.fromisoformat(started) if isinstance(started, str) else started
    except ValueError as exc:
        raise ConfigurationError(f"{key}: started_on must be YYYY-MM-DD, not {started!r}") from exc
    if "preset" in spec:
        name = spec.pop("preset")
        return _build(
            key, lambda **o: WarmupSchedule.preset(name, started_on=started_on, **o), spec
        )
    if started_on is None:
        raise ConfigurationError(f"{key} needs started_on (YYYY-MM-DD) or a preset")
    if "table" in spec:
        raw = spec.pop("table")
        if not isinstance(raw, Mapping):
            raise ConfigurationError(f"{key}: table must map day numbers to caps, not {raw!r}")
        try:
            table = {int(day): int(cap) for day, cap in raw.items()}
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{key}: table must map day numbers to caps") from exc
        return _build(
            key, lambda **o: WarmupSchedule.from_table(table, started_on=started_on, **o), spec
        )
    shape = spec.pop("schedule", "exponential")
    if shape not in ("exponential", "linear"):
        raise ConfigurationError(f"{key}: schedule is 'exponential' or 'linear', not {shape!r}")
    make = WarmupSchedule.exponential if shape == "exponential" else WarmupSchedule.linear
    return _build(key, lambda **o: make(started_on=started_on, **o), spec)


def _retry(key: str, value: object) -> RetryPolicy:
    return value if isinstance(value, RetryPolicy) else _build(key, RetryPolicy, _table(key, value))


def _breaker(key: str, value: object) -> Breaker:
    if isinstance(value, Breaker):
        return value
    spec = _table(key, value)
    for name in ("window", "pause_for"):
        if spec.get(name) is not None:
            spec[name] = _duration(f"{key}.{name}", spec[name])
    return _build(key, Breaker, spec)


def _shaping(key: str, value: object) -> Shaping:
    if isinstance(value, Shaping):
        return value
    spec = _table(key, value)
    if "limits" not in spec:  # the short form: the limits themselves
        return _build(key, Shaping, {"limits": value})
    if "recover_every" in spec:
        spec["recover_every"] = _duration(f"{key}.recover_every", spec["recover_every"])
    return _build(key, Shaping, spec)


def _soft_bounce(key: str, value: object) -> SoftBouncePolicy:
    if isinstance(value, SoftBouncePolicy):
        return value
    spec = _table(key, value)
    if "span" in spec:
        spec["span"] = _duration(f"{key}.span", spec["span"])
    return _build(key, SoftBouncePolicy, spec)


def _rules(key: str, value: object) -> Rules:
    """``Rules``, or a list of rules: tables of Rule's fields, or ``"reason: regex"`` texts."""
    if isinstance(value, Rules):
        return value
    if isinstance(value, os.PathLike) or (
        isinstance(value, str) and value.strip().lower().endswith(".toml")
    ):
        return Rules(load_rules(value))  # a file of [[rule]] tables, as providers.toml
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise ConfigurationError(
            f"{key} must be a list of rules, e.g. [{{'reason': 'mailboxfull', "
            f"'pattern': 'casella piena'}}], ['mailboxfull: casella piena'] or a rules file "
            f"'my-rules.toml', not {value!r}"
        )
    rules: list[Rule] = []
    for item in value:
        if isinstance(item, Rule):
            rules.append(item)
        elif isinstance(item, str):
            reason, colon, pattern = item.partition(":")
            if not colon or not pattern.strip():
                raise ConfigurationError(f"{key}: a rule text is 'reason: regex', not {item!r}")
            rules.append(_build(key, Rule, {"reason": reason.strip(), "pattern": pattern.strip()}))
        else:
            spec = _table(key, item)
            for name in ("codes", "reply_codes"):
                if isinstance(spec.get(name), list):
                    spec[name] = tuple(spec[name])
            rules.append(_build(key, Rule, spec))
    return Rules(rules)


def _choice(*allowed: str) -> Callable[[str, object], str]:
    def read(key: str, value: object) -> str:
        if not isinstance(value, str) or value.lower() not in allowed:
            raise ConfigurationError(f"{key} must be one of {list(allowed)}, not {value!r}")
        return value.lower()

    return read


def _flag(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUTH:
        return _TRUTH[value.strip().lower()]
    raise ConfigurationError(f"{key} must be true or false, not {value!r}")


_TRUTH = {"1": True, "true": True, "yes": True, "on": True}
_TRUTH |= {"0": False, "false": False, "no": False, "off": False}


def _number(key: str, value: object) -> float:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ConfigurationError(f"{key} must be a number, not {value!r}")


def _text(key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{key} must be a non-empty text, not {value!r}")
    return value


def _journal(key: str, value: object) -> str | bool:
    if value is False or (isinstance(value, str) and value.lower() in ("false", "off", "no")):
        return False
    return _text(key, value)


def _store(key: str, value: object) -> str | Store:
    return value if isinstance(value, Store) else _text(key, value)


def _streams(key: str, value: object) -> dict[str, float]:
    """Stream names (highest priority first) to the share of the day's cap each may take."""
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return dict.fromkeys(value, 1.0)
    if not isinstance(value, Mapping) or not value:
        raise ConfigurationError(
            f"{key} must map stream names to the share of the day's cap each may take, "
            f"e.g. {{transactional = 1.0, bulk = 0.8}}, not {value!r}"
        )
    return {str(name): _number(f"{key}.{name}", share) for name, share in value.items()}


@dataclass(frozen=True)
class _Key:
    option: str
    read: Callable[[str, Any], Any]
    what: str


KEYS: dict[str, _Key] = {
    "STORE": _Key("store", _store, "store URL: sqlite:///app.db, redis://..., memory://"),
    "REDIS_URL": _Key("redis_url", _text, "a Redis URL (instead of STORE)"),
    "CLUSTER": _Key("cluster", _flag, "REDIS_URL names a node of a Redis Cluster"),
    "PREFIX": _Key("prefix", _text, "the store's key prefix (default sendguard)"),
    "WARMUP": _Key("warmup", _warmup, "the warmup ramp: {schedule, start, target, days, ...}"),
    "RETRY": _Key("retry", _retry, "RetryPolicy's options"),
    "RULES": _Key("rules", _rules, "your classification rules, checked first"),
    "SOFT_BOUNCE": _Key("soft_bounce", _soft_bounce, "SoftBouncePolicy: {threshold, span}"),
    "PAUSE_FOR": _Key("pause_for", _duration, "how long a 5xx refusal pauses the sender"),
    "TRANSIENT_PAUSE_FOR": _Key(
        "transient_pause_for", _duration, "how long a 4xx refusal pauses the sender"
    ),
    "BREAKER": _Key("breaker", _breaker, "Breaker's options (window and pause_for durations)"),
    "SHAPING": _Key("shaping", _shaping, "rates per provider, or {limits, burst, ...}"),
    "SPREAD_OVER": _Key("spread_over", _duration, "spread each day's cap over this long"),
    "SPREAD_BURST": _Key("spread_burst", _number, "the spread's burst, a fraction of the cap"),
    "ON_STORE_ERROR": _Key("on_store_error", _choice("raise", "send"), "raise or send"),
    "STORE_TIMEOUT": _Key("store_timeout", _number, "seconds the guard waits for the store"),
    "JOURNAL": _Key("journal", _journal, "the journal's directory, or false"),
    "BOUNCE_SECRET": _Key("bounce_secret", _text, "signs each copy's bounce token"),
    "REDACT_ADDRESSES": _Key("redact_addresses", _flag, "mask addresses in logs"),
    "KEEP": _Key("keep", _flag, "keep mail held back in the outbox (default true)"),
    "STREAMS": _Key("streams", _streams, "stream names, first first, to their share of the cap"),
    "STREAM": _Key("stream", _text, "the default stream (default: the first)"),
    "MAX_AGE": _Key("max_age", _duration, "how long kept mail is tried (default 5d)"),
}
"""Every key, the Guard option it sets, and how its value is read."""

_STORE_KEYS = frozenset({"STORE", "REDIS_URL", "CLUSTER", "PREFIX"})


@dataclass(frozen=True)
class Settings:
    """A configuration read into Guard options (the store kept as its URL until opened)."""

    options: dict[str, Any] = field(default_factory=dict)
    """Guard keyword options, the store excepted."""
    store: str | Store | None = None
    """The store's URL (``STORE``, or ``REDIS_URL`` with ``CLUSTER``) or object; None: unset."""
    prefix: str = "sendguard"
    extra: dict[str, Any] = field(default_factory=dict)
    """The integration's own keys (e.g. Django's ``BACKEND``), as given."""
    source: str = "settings"

    def store_url(self, default: str) -> str:
        """The store's URL, *default* when the configuration names none."""
        if isinstance(self.store, Store):
            raise ConfigurationError(f"{self.source}: STORE is a store object, not a URL")
        return self.store or default

    def open_store(self, default: str) -> Store:
        """The store (opened from its URL, or *default*'s)."""
        if isinstance(self.store, Store):
            return self.store
        return open_store(self.store_url(default), prefix=self.prefix)

    def guard_options(self, *, default_store: str = "memory://") -> dict[str, Any]:
        """Keyword options for :class:`sendguard.Guard` / :class:`sendguard.SyncGuard`."""
        return {**self.options, "store": self.open_store(default_store)}


def from_mapping(
    mapping: Mapping[str, Any],
    *,
    extra: Collection[str] = (),
    source: str = "SENDGUARD",
) -> Settings:
    """Read *mapping* (keys as in :data:`KEYS`, any case; *extra* keys kept as given)."""
    if not isinstance(mapping, Mapping):
        raise ConfigurationError(f"{source} must be a mapping of options, not {mapping!r}")
    allowed = {k.upper() for k in extra}
    given: dict[str, Any] = {}
    for raw_key, value in mapping.items():
        key = str(raw_key).upper()
        if key not in KEYS and key not in allowed:
            known = [*KEYS, *allowed]
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {sorted(known)}"
            raise ConfigurationError(f"{source}: unknown key {raw_key!r}{hint}")
        if key in given:
            raise ConfigurationError(f"{source}: {raw_key!r} is given twice (keys ignore case)")
        given[key] = value
    options: dict[str, Any] = {}
    for key, value in given.items():
        if key in allowed or key in _STORE_KEYS or value is None:
            continue
        spec = KEYS[key]
        options[spec.option] = spec.read(f"{source}[{key!r}]", value)
    store: str | Store | None = None
    named = {k: given.get(k) for k in _STORE_KEYS}
    if named["STORE"] is not None:
        store = _store(f"{source}['STORE']", named["STORE"])
    redis = _text(f"{source}['REDIS_URL']", named["REDIS_URL"]) if named["REDIS_URL"] else None
    cluster = _flag(f"{source}['CLUSTER']", named["CLUSTER"]) if named["CLUSTER"] else False
    if redis is not None or isinstance(store, str):
        try:
            store = store_url(
                store if isinstance(store, str) else None, redis, cluster=cluster, default=""
            )
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from exc
    elif isinstance(store, Store) and redis is not None:
        raise ConfigurationError(f"{source}: give STORE or REDIS_URL, not both")
    prefix = _text(f"{source}['PREFIX']", named["PREFIX"]) if named["PREFIX"] else "sendguard"
    return Settings(
        options=options,
        store=store or None,
        prefix=prefix,
        extra={k: v for k, v in given.items() if k in allowed},
        source=source,
    )


def from_prefixed(
    mapping: Mapping[str, Any], prefix: str = "SENDGUARD_", *, extra: Collection[str] = ()
) -> Settings:
    """Read the keys of *mapping* that start with *prefix* (Flask's ``app.config``)."""
    mine = {k[len(prefix) :]: v for k, v in mapping.items() if k.upper().startswith(prefix)}
    return from_mapping(mine, extra=extra, source=f"{prefix}*")


_NOT_OPTIONS = frozenset({"JOURNAL_DIR", "CONFIG"})
"""``SENDGUARD_*`` variables that are not options (read where they apply)."""
_STRUCTURED = frozenset({"WARMUP", "RETRY", "RULES", "SOFT_BOUNCE", "BREAKER", "SHAPING"})


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``SENDGUARD_*`` variables; structured values (WARMUP, RULES, ...) are JSON.

    ``SENDGUARD_RULES`` may also name a rules file (``my-rules.toml``, see
    :func:`sendguard.load_rules`).
    """
    env = os.environ if environ is None else environ
    mine: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("SENDGUARD_") or name[10:] in _NOT_OPTIONS:
            continue
        key = name[10:]
        if key.upper() == "RULES" and value.strip().lower().endswith(".toml"):
            mine[key] = value.strip()  # a rules file, as providers.toml
        elif key.upper() in _STRUCTURED:
            try:
                mine[key] = json.loads(value)
            except ValueError as exc:
                raise ConfigurationError(f"{name} must be JSON: {exc}") from exc
        else:
            mine[key] = value
    return from_mapping(mine, source="SENDGUARD_* environment")


def from_file(path: str | os.PathLike[str]) -> Settings:
    """Read a ``sendguard.toml`` (its top level) or ``pyproject.toml`` (``[tool.sendguard]``)."""
    where = Path(path)
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {where}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{where} is not valid TOML: {exc}") from exc
    if where.name == "pyproject.toml":
        tool = data.get("tool", {})
        data = tool.get("sendguard", {}) if isinstance(tool, dict) else {}
        return from_mapping(data, source=f"{where} [tool.sendguard]")
    return from_mapping(data, source=str(where))


def find_file(start: str | os.PathLike[str] | None = None) -> Path | None:
    """``sendguard.toml``, else a ``pyproject.toml`` with ``[tool.sendguard]``, in *start* or up."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        own = folder / "sendguard.toml"
        if own.is_file():
            return own
        project = folder / "pyproject.toml"
        if project.is_file():
            try:
                tool = tomllib.loads(project.read_text(encoding="utf-8")).get("tool", {})
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
                return None
            return project if isinstance(tool, dict) and "sendguard" in tool else None
    return None
