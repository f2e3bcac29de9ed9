"""Traffic shaping: how fast one sender may mail each mailbox provider.

Gmail, Microsoft and Yahoo judge a sender by how it behaves toward *them*, so limits are per
sender domain x provider, written as ``"N/period"`` (``"500/hour"``, ``"20/minute"``).  Each
limit is a GCRA (generic cell rate algorithm): one send every ``period / N`` on average, with a
burst of ``burst`` sends at once.  A provider that says "slow down" (reason ``ratelimited``:
421, Gmail's 4.7.28 "unusual rate", Yahoo's TSS04) halves the rate for that sender x provider;
every ``recover_every`` without another such answer the rate doubles back, up to the limit.

Recipient domains map to providers by a built-in list (:data:`PROVIDERS`), extended by
``Shaping(domains={...})``; domains not listed fall under ``"*"``.  With ``resolver=`` (for
example :func:`mx_provider` with dnspython) unknown domains are mapped by their MX hosts, and
the answer is cached.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from sendguard._errors import ConfigurationError
from sendguard._options import (
    check_callable,
    check_integer,
    check_text,
    check_timedelta,
)

__all__ = ["MX_SUFFIXES", "PROVIDERS", "Limit", "Shaping", "parse_limit"]

PROVIDERS: Mapping[str, str] = {
    **dict.fromkeys(["gmail.com", "googlemail.com"], "google"),
    **dict.fromkeys(
        [
            "outlook.com",
            "hotmail.com",
            "hotmail.co.uk",
            "hotmail.fr",
            "hotmail.de",
            "hotmail.it",
            "live.com",
            "live.co.uk",
            "live.fr",
            "msn.com",
            "outlook.fr",
            "outlook.de",
        ],
        "microsoft",
    ),
    **dict.fromkeys(
        [
            "yahoo.com",
            "yahoo.co.uk",
            "yahoo.fr",
            "yahoo.de",
            "yahoo.co.jp",
            "ymail.com",
            "rocketmail.com",
            "aol.com",
            "aim.com",
        ],
        "yahoo",
    ),
    **dict.fromkeys(["icloud.com", "me.com", "mac.com"], "apple"),
    **dict.fromkeys(["gmx.de", "gmx.net", "gmx.com", "web.de"], "united-internet"),
    **dict.fromkeys(["mail.ru", "bk.ru", "inbox.ru", "list.ru"], "mailru"),
    **dict.fromkeys(["yandex.ru", "yandex.com", "ya.ru"], "yandex"),
    **dict.fromkeys(["comcast.net"], "comcast"),
    **dict.fromkeys(["qq.com", "foxmail.com"], "tencent"),
}
"""Well-known mailbox domains and the provider that runs them."""

MX_SUFFIXES: Mapping[str, str] = {
    "google.com": "google",
    "googlemail.com": "google",
    "protection.outlook.com": "microsoft",
    "hotmail.com": "microsoft",
    "yahoodns.net": "yahoo",
    "icloud.com": "apple",
    "me.com": "apple",
    "mail.ru": "mailru",
    "yandex.net": "yandex",
    "qq.com": "tencent",
}
"""MX host suffixes and the provider they belong to (custom domains hosted by a provider)."""

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)?\s*([a-z]+?)s?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Limit:
    """``count`` sends per ``period``, with bursts of ``burst``."""

    count: int
    period: dt.timedelta
    burst: int = 1

    def __post_init__(self) -> None:
        check_integer("Limit", "count", self.count, minimum=1)
        check_timedelta("Limit", "period", self.period, positive=True)
        check_integer("Limit", "burst", self.burst, minimum=1)

    @property
    def interval(self) -> float:
        """Seconds between two sends at the steady rate."""
        return self.period.total_seconds() / self.count

    @property
    def tolerance(self) -> float:
        """How far ahead of the steady rate a burst may run, in seconds (GCRA's tau)."""
        return self.interval * (self.burst - 1)


def parse_limit(text: str, *, burst: int | None = None) -> Limit:
    """``"500/hour"`` → :class:`Limit` (units s, min, hour, day; ``"100/10min"`` too)."""
    found = _LIMIT.match(text) if isinstance(text, str) else None
    if found is None or found.group(3).lower() not in _UNITS:
        raise ConfigurationError(
            f"a limit is a string such as '500/hour' or '20/minute', not {text!r}"
        )
    count = int(found.group(1))
    seconds = int(found.group(2) or 1) * _UNITS[found.group(3).lower()]
    if count < 1:
        raise ConfigurationError(f"a limit needs at least one send per period: {text!r}")
    if seconds < 1:
        raise ConfigurationError(f"a limit needs a period of at least one second: {text!r}")
    if burst is None:
        burst = max(1, min(count // 10, 100))  # a tenth of the period's sends, at most 100
    check_integer("parse_limit", "burst", burst, minimum=1)
    return Limit(count, dt.timedelta(seconds=seconds), burst)


Resolver = Callable[[str], Awaitable[str | None]]
"""Maps a domain to its provider by DNS (``None``: not known)."""


@dataclass
class Shaping:
    """Rate limits per sender domain x mailbox provider, ``"*"`` for every other domain."""

    limits: Mapping[str, str | Limit]
    domains: Mapping[str, str] = field(default_factory=dict)
    """More domain → provider entries, checked before :data:`PROVIDERS`."""
    burst: int | None = None
    slow_factor_max: int = 64
    """The most a run of "slow down" answers may divide a rate by."""
    recover_every: dt.timedelta = dt.timedelta(minutes=10)
    resolver: Resolver | None = None
    _parsed: dict[str, Limit] = field(init=False, repr=False)
    _cache: dict[str, str] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        _check_mapping("limits", self.limits, "{'google': '500/hour'}")
        if not self.limits:
            raise ConfigurationError("Shaping needs at least one limit")
        if self.burst is not None:
            check_integer("Shaping", "burst", self.burst, minimum=1)
        self._parsed = {}
        for provider, value in self.limits.items():
            check_text("Shaping", "limits", provider)  # a provider name, or "*"
            if not isinstance(value, Limit | str):
                raise ConfigurationError(
                    f"Shaping(limits=...)[{provider!r}] must be a string such as '500/hour' "
                    f"or a Limit, not {type(value).__name__} {value!r}"
                )
            self._parsed[provider] = (
                value if isinstance(value, Limit) else parse_limit(value, burst=self.burst)
            )
        _check_mapping("domains", self.domains, "{'corp.example': 'google'}")
        for domain, provider in self.domains.items():
            check_text("Shaping", "domains", domain)
            check_text("Shaping", "domains", provider)
        check_integer("Shaping", "slow_factor_max", self.slow_factor_max, minimum=1)
        check_timedelta("Shaping", "recover_every", self.recover_every, positive=True)
        if self.resolver is not None:
            check_callable("Shaping", "resolver", self.resolver)

    def provider_of(self, domain: str) -> str:
        """The provider of *domain* by the lists (and the resolver's cached answers)."""
        domain = domain.lower()
        found = self.domains.get(domain) or PROVIDERS.get(domain) or self._cache.get(domain)
        return found or "*"

    async def resolve(self, domain: str) -> str:
        """:meth:`provider_of`, asking the resolver (once per domain) for unlisted domains."""
        found = self.provider_of(domain)
        if found != "*" or self.resolver is None or domain in self._cache:
            return found
        answer = await self.resolver(domain)
        self._cache[domain] = answer or "*"
        return self._cache[domain]

    def limit_for(self, provider: str) -> Limit | None:
        """The limit of *provider*, else the ``"*"`` one, else none."""
        return self._parsed.get(provider) or self._parsed.get("*")


def _check_mapping(name: str, value: object, example: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"Shaping({name}=...) must be a dict such as {example}, "
            f"not {type(value).__name__} {value!r}"
        )


def provider_of_mx(hosts: list[str]) -> str | None:
    """The provider whose MX hosts these are, if any is known."""
    for raw in hosts:
        host = raw.lower().rstrip(".")
        for suffix, provider in MX_SUFFIXES.items():
            if host == suffix or host.endswith("." + suffix):
                return provider
    return None


async def mx_provider(domain: str) -> str | None:
    """A :data:`Resolver` over DNS MX records (needs ``dnspython``); ``None`` when unknown."""
    try:
        from dns.asyncresolver import resolve  # noqa: PLC0415 (optional dependency)
        from dns.exception import DNSException  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigurationError("MX lookups need dnspython: pip install dnspython") from exc
    try:
        answer = await resolve(domain, "MX")
    except DNSException:
        return None
    return provider_of_mx([str(record.exchange) for record in answer])
