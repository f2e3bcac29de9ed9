"""Options are checked at construction: a wrong one is a ConfigurationError saying what to change.

Each public constructor is tried with every kind of bad option; nothing is sent or reserved.
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from sendguard import (
    Breaker,
    ConfigurationError,
    Envelope,
    Guard,
    Limit,
    MemoryStore,
    Reply,
    RetryPolicy,
    Rule,
    Rules,
    Shaping,
    SMTPAdapter,
    SoftBouncePolicy,
    SyncGuard,
    WarmupSchedule,
    open_store,
    parse_limit,
)
from sendguard.testing import FakeClock, RecordingAdapter, ScriptedSMTPServer
from tests.conftest import message

# -- SMTPAdapter: what aiosmtplib would refuse at the first send, and more -------------------

SMTP_BAD: list[tuple[dict[str, Any], str]] = [
    ({"hostname": "smtp.example.com\r\n"}, r"hostname=.*line break"),
    ({"hostname": "smtp example.com"}, r"hostname=.*host name or an IP address"),
    ({"hostname": ""}, r"hostname=.*not be empty"),
    ({"hostname": b"smtp.example.com"}, r"hostname=.*must be a string"),
    ({"port": 0}, r"port=.*from 1 to 65535"),
    ({"port": 65536}, r"port=.*from 1 to 65535"),
    ({"port": -25}, r"port=.*from 1 to 65535"),
    ({"port": "25"}, r"port=.*whole number"),
    ({"port": 25.0}, r"port=.*whole number"),
    ({"port": True}, r"port=.*whole number"),
    ({"local_hostname": "a\r\nb"}, r"local_hostname=.*line break"),
    ({"local_hostname": "a\nb"}, r"local_hostname=.*line break"),
    ({"local_hostname": "a\u2028b"}, r"local_hostname=.*line break"),
    ({"local_hostname": "a\x00b"}, r"local_hostname=.*line break"),
    ({"local_hostname": "mail example.com"}, r"local_hostname=.*without spaces"),
    ({"local_hostname": " mail.example.com"}, r"local_hostname=.*host name"),
    ({"local_hostname": "mail.example.com SIZE=1"}, r"local_hostname=.*host name"),
    ({"local_hostname": "mail\texample.com"}, r"local_hostname=.*host name"),
    ({"local_hostname": "mail_1.example.com"}, r"local_hostname=.*host name"),
    ({"local_hostname": "-mail.example.com"}, r"local_hostname=.*host name"),
    ({"local_hostname": "mail..example.com"}, r"local_hostname=.*host name"),
    ({"local_hostname": "mäil.example.com"}, r"local_hostname=.*host name"),
    ({"local_hostname": "a" * 64 + ".example.com"}, r"local_hostname=.*host name"),
    ({"local_hostname": "[192.0.2.1"}, r"local_hostname=.*host name"),
    ({"local_hostname": ""}, r"local_hostname=.*not be empty"),
    ({"local_hostname": 1}, r"local_hostname=.*must be a string"),
    ({"username": "u\r\nRSET", "password": "p"}, r"username=.*line break"),
    ({"username": "u", "password": "p\nq"}, r"password=.*line break"),
    ({"username": "u", "password": b"p"}, r"password=.*must be a string"),
    ({"username": "u"}, r"both username and password"),
    ({"use_tls": True, "start_tls": True}, r"exclude each other"),
    ({"use_tls": "yes"}, r"use_tls=.*True or False"),
    ({"start_tls": 1}, r"start_tls=.*True or False"),
    ({"validate_certs": None}, r"validate_certs=.*True or False"),
    ({"confirms_delivery": "no"}, r"confirms_delivery=.*True or False"),
    ({"tls_context": "default"}, r"tls_context=.*ssl.SSLContext"),
    ({"tls_context": True}, r"tls_context=.*ssl.SSLContext"),
    ({"timeout": 0}, r"timeout=.*positive number of seconds"),
    ({"timeout": -1.0}, r"timeout=.*positive number of seconds"),
    ({"timeout": "60"}, r"timeout=.*positive number of seconds"),
    ({"timeout": float("nan")}, r"timeout=.*positive number of seconds"),
    ({"timeout": float("inf")}, r"timeout=.*positive number of seconds"),
    ({"data_timeout": 0}, r"data_timeout=.*positive number of seconds"),
    ({"data_timeout": None}, r"data_timeout=.*positive number of seconds"),
    ({"pool_size": 0}, r"pool_size=.*at least 1"),
    ({"pool_size": 2.5}, r"pool_size=.*whole number"),
]


@pytest.mark.parametrize(
    ("options", "says"), SMTP_BAD, ids=[repr(o)[1:-1][:40] for o, _ in SMTP_BAD]
)
async def test_smtp_adapter_refuses_at_construction(options: dict[str, Any], says: str) -> None:
    async with ScriptedSMTPServer() as server:
        options = {"hostname": "127.0.0.1", "port": server.port, **options}
        with pytest.raises(ConfigurationError, match=says):
            SMTPAdapter(**options)
        assert server.connections == 0
        assert server.received == []


def test_smtp_adapter_never_repeats_a_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        SMTPAdapter(username="u", password="hunter2\r\n")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "options",
    [
        {"local_hostname": "mail.example.com"},
        {"local_hostname": "mail.example.com."},
        {"local_hostname": "localhost"},
        {"local_hostname": "[192.0.2.1]"},
        {"local_hostname": "[IPv6:2001:db8::1]"},
        {"hostname": "::1"},
        {"hostname": "192.0.2.1"},
        {"hostname": "smtp.bücher.example"},
        {"port": 1},
        {"port": 65535},
        {"timeout": 1, "data_timeout": 0.5},
        {"tls_context": ssl.create_default_context(), "start_tls": True},
        {"username": "ü", "password": "pässword with spaces"},
        {"start_tls": None},
    ],
)
def test_smtp_adapter_takes_good_options(options: dict[str, Any]) -> None:
    SMTPAdapter(**options)


# -- Rule and Rules ----------------------------------------------------------------------------

RULE_BAD: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
    (("nosuchreason", r"casella piena"), {}, r"unknown reason 'nosuchreason'; use one of"),
    ((None, r"casella piena"), {}, r"unknown reason None"),
    (("mailboxfull",), {}, r"needs a pattern, codes or reply_codes"),
    (("mailboxfull", r"casella (piena"), {}, r"pattern=.*not a regular expression"),
    (("mailboxfull", r"*piena"), {}, r"pattern=.*not a regular expression"),
    (("mailboxfull", b"piena"), {}, r"pattern=.*as a string"),
    (("mailboxfull",), {"codes": "5.2.2"}, r"codes=.*must be a tuple"),
    (("mailboxfull",), {"codes": ("5.2",)}, r"codes=.*enhanced status codes"),
    (("mailboxfull",), {"codes": (522,)}, r"codes=.*enhanced status codes"),
    (("mailboxfull",), {"codes": ("5.2.2 ",)}, r"codes=.*enhanced status codes"),
    (("mailboxfull",), {"reply_codes": 552}, r"reply_codes=.*must be a tuple"),
    (("mailboxfull",), {"reply_codes": ("552",)}, r"reply_codes=.*SMTP reply codes"),
    (("mailboxfull",), {"reply_codes": (5522,)}, r"reply_codes=.*SMTP reply codes"),
]


@pytest.mark.parametrize(("args", "options", "says"), RULE_BAD)
def test_rule_refuses_at_construction(
    args: tuple[Any, ...], options: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        Rule(*args, **options)


def test_a_bad_regex_keeps_its_cause() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Rule("mailboxfull", "(")
    assert isinstance(caught.value.__cause__, re.error)


def test_rule_codes_given_as_lists_become_tuples() -> None:
    rule = Rule("mailboxfull", codes=["5.2.2"], reply_codes=[552])  # type: ignore[arg-type]
    assert rule.codes == ("5.2.2",)
    assert rule.reply_codes == (552,)
    assert hash(rule)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ([1], r"Rules takes Rule objects"),
        (["mailboxfull: casella piena"], r"Rules takes Rule objects"),
        (Rule("mailboxfull", "casella piena"), r"a list of rules"),
    ],
)
def test_rules_refuse_what_is_not_a_rule(extra: Any, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        Rules(extra)


# -- the policies Guard takes: the type of each field, then its value --------------------------

NAN, INF = float("nan"), float("inf")
POLICY_BAD: list[tuple[Callable[..., object], dict[str, Any], str]] = [
    (RetryPolicy, {"attempts": "3"}, r"RetryPolicy\(attempts=.*whole number at least 1, not '3'"),
    (RetryPolicy, {"attempts": True}, r"RetryPolicy\(attempts=.*whole number"),
    (RetryPolicy, {"attempts": 2.0}, r"RetryPolicy\(attempts=.*whole number"),
    (RetryPolicy, {"attempts": 0}, r"RetryPolicy\(attempts=.*at least 1, not 0"),
    (RetryPolicy, {"initial_wait": "1"}, r"RetryPolicy\(initial_wait=.*number of seconds"),
    (RetryPolicy, {"max_wait": None}, r"RetryPolicy\(max_wait=.*number of seconds"),
    (RetryPolicy, {"jitter": NAN}, r"RetryPolicy\(jitter=.*finite number of seconds"),
    (RetryPolicy, {"max_total": INF}, r"RetryPolicy\(max_total=.*finite number of seconds"),
    (RetryPolicy, {"defer_for": -1}, r"RetryPolicy\(defer_for=.*0 or more, not -1"),
    (RetryPolicy, {"defer_for": False}, r"RetryPolicy\(defer_for=.*number of seconds"),
    (RetryPolicy, {"initial_wait": 5, "max_wait": 1}, r"max_wait=.*at least initial_wait"),
    (Breaker, {"window": 5}, r"Breaker\(window=.*datetime.timedelta, e.g. timedelta"),
    (Breaker, {"window": dt.timedelta(minutes=5)}, r"Breaker\(window=.*at least 24 minutes"),
    (Breaker, {"pause_for": 3600}, r"Breaker\(pause_for=.*datetime.timedelta"),
    (Breaker, {"pause_for": dt.timedelta(0)}, r"Breaker\(pause_for=.*positive"),
    (Breaker, {"bounce_pause": "5%"}, r"Breaker\(bounce_pause=.*rate in \(0, 1\]"),
    (Breaker, {"bounce_warn": NAN}, r"Breaker\(bounce_warn=.*rate in \(0, 1\]"),
    (Breaker, {"complaint_pause": 1.5}, r"Breaker\(complaint_pause=.*rate in \(0, 1\]"),
    (Breaker, {"complaint_warn": True}, r"Breaker\(complaint_warn=.*rate"),
    (Breaker, {"bounce_warn": 0.1, "bounce_pause": 0.05}, r"warning threshold above its pause"),
    (Breaker, {"min_volume": "200"}, r"Breaker\(min_volume=.*whole number at least 1"),
    (Breaker, {"min_volume": 0}, r"Breaker\(min_volume=.*at least 1"),
    (Breaker, {"on_warn": "log"}, r"Breaker\(on_warn=.*function"),
    (SoftBouncePolicy, {"span": 7}, r"SoftBouncePolicy\(span=.*datetime.timedelta"),
    (SoftBouncePolicy, {"span": dt.timedelta(-1)}, r"SoftBouncePolicy\(span=.*not be negative"),
    (SoftBouncePolicy, {"threshold": "5"}, r"SoftBouncePolicy\(threshold=.*whole number"),
    (SoftBouncePolicy, {"threshold": True}, r"SoftBouncePolicy\(threshold=.*whole number"),
    (SoftBouncePolicy, {"threshold": 0}, r"SoftBouncePolicy\(threshold=.*at least 1"),
    (Shaping, {"limits": {"google": 5}}, r"Shaping\(limits=.*\['google'\].*'500/hour'.*not int"),
    (Shaping, {"limits": "500/hour"}, r"Shaping\(limits=.*a dict such as"),
    (Shaping, {"limits": {}}, r"Shaping needs at least one limit"),
    (Shaping, {"limits": {5: "500/hour"}}, r"Shaping\(limits=.*must be a string"),
    (Shaping, {"limits": {"google": "fast"}}, r"a limit is a string such as '500/hour'"),
    (Shaping, {"limits": {"*": "5/0min"}}, r"period of at least one second"),
    (Shaping, {"limits": {"*": "5/h"}, "burst": 0}, r"Shaping\(burst=.*at least 1"),
    (Shaping, {"limits": {"*": "5/h"}, "burst": "2"}, r"Shaping\(burst=.*whole number"),
    (Shaping, {"limits": {"*": "5/h"}, "domains": ["corp.example"]}, r"Shaping\(domains=.*dict"),
    (Shaping, {"limits": {"*": "5/h"}, "domains": {"corp.example": 1}}, r"domains=.*string"),
    (Shaping, {"limits": {"*": "5/h"}, "slow_factor_max": 0}, r"slow_factor_max=.*at least 1"),
    (Shaping, {"limits": {"*": "5/h"}, "slow_factor_max": 2.5}, r"slow_factor_max=.*whole"),
    (Shaping, {"limits": {"*": "5/h"}, "recover_every": 600}, r"recover_every=.*timedelta"),
    (Shaping, {"limits": {"*": "5/h"}, "recover_every": dt.timedelta(0)}, r"recover_every="),
    (Shaping, {"limits": {"*": "5/h"}, "resolver": "dns"}, r"Shaping\(resolver=.*function"),
    (Limit, {"count": 0, "period": dt.timedelta(hours=1)}, r"Limit\(count=.*at least 1"),
    (Limit, {"count": "5", "period": dt.timedelta(hours=1)}, r"Limit\(count=.*whole number"),
    (Limit, {"count": 5, "period": 3600}, r"Limit\(period=.*timedelta"),
    (Limit, {"count": 5, "period": dt.timedelta(0)}, r"Limit\(period=.*positive"),
    (Limit, {"count": 5, "period": dt.timedelta(hours=1), "burst": 0}, r"Limit\(burst="),
    (parse_limit, {"text": 500}, r"a limit is a string such as '500/hour'.*not 500"),
    (parse_limit, {"text": None}, r"a limit is a string such as"),
    (parse_limit, {"text": "500/hour", "burst": 0}, r"parse_limit\(burst=.*at least 1"),
    (parse_limit, {"text": "500/hour", "burst": 1.5}, r"parse_limit\(burst=.*whole number"),
]


@pytest.mark.parametrize(
    ("make", "options", "says"),
    POLICY_BAD,
    ids=[f"{m.__name__}-{repr(o)[1:-1][:40]}" for m, o, _ in POLICY_BAD],
)
def test_policies_refuse_at_construction(
    make: Callable[..., object], options: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        make(**options)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RetryPolicy(attempts=1, initial_wait=0, max_wait=0, jitter=0),
        lambda: RetryPolicy(initial_wait=0.5, max_total=10),
        lambda: Breaker(bounce_pause=1, window=dt.timedelta(minutes=24), pause_for=None),
        lambda: Breaker(on_warn=print, pause_for=dt.timedelta(hours=1)),
        lambda: SoftBouncePolicy(threshold=1, span=dt.timedelta(0)),
        lambda: Shaping({"google": "5/min", "*": Limit(1, dt.timedelta(seconds=1))}, burst=2),
        lambda: Shaping({"*": "5/h"}, domains={"corp.example": "google"}),
    ],
)
def test_policies_take_good_options(make: Callable[[], object]) -> None:
    make()


# -- WarmupSchedule and its constructors -------------------------------------------------------

NOV_1 = dt.date(2026, 11, 1)
RAMP = {"start": 20, "target": 50_000, "days": 42, "started_on": NOV_1}
WARMUP_BAD: list[tuple[Callable[..., WarmupSchedule], dict[str, Any], str]] = [
    (WarmupSchedule.exponential, {"start": "20"}, r"WarmupSchedule\(start=.*whole number"),
    (WarmupSchedule.exponential, {"start": 20.5}, r"WarmupSchedule\(start=.*whole number"),
    (WarmupSchedule.exponential, {"target": NAN}, r"WarmupSchedule\(target=.*whole number"),
    (WarmupSchedule.exponential, {"target": INF}, r"WarmupSchedule\(target=.*whole number"),
    (WarmupSchedule.exponential, {"days": True}, r"WarmupSchedule\(days=.*whole number"),
    (WarmupSchedule.exponential, {"started_on": "2026-11-01"}, r"started_on=.*datetime.date"),
    (
        WarmupSchedule.exponential,
        {"started_on": dt.datetime(2026, 11, 1, tzinfo=dt.UTC)},
        r"started_on=.*not a datetime: pass .*\.date\(\)",
    ),
    (WarmupSchedule.exponential, {"started_on": None}, r"started_on=.*datetime.date"),
    (WarmupSchedule.exponential, {"counting": "sent"}, r"counting=.*'calendar' or 'sending'"),
    (WarmupSchedule.exponential, {"counting": ["sending"]}, r"counting=.*'calendar'"),
    (WarmupSchedule.exponential, {"idle_restart": "30"}, r"idle_restart=.*whole number"),
    (WarmupSchedule.exponential, {"idle_restart": 0}, r"idle_restart=.*at least 1"),
    (WarmupSchedule.linear, {"start": None}, r"WarmupSchedule\(start=.*whole number"),
    (WarmupSchedule.linear, {"days": 7.0}, r"WarmupSchedule\(days=.*whole number"),
]


@pytest.mark.parametrize(
    ("make", "options", "says"),
    WARMUP_BAD,
    ids=[f"{m.__name__}-{repr(o)[1:-1][:40]}" for m, o, _ in WARMUP_BAD],
)
def test_warmup_ramps_refuse_at_construction(
    make: Callable[..., WarmupSchedule], options: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        make(**{**RAMP, **options})


_TABLE = WarmupSchedule.from_table
SCHEDULE_BAD: list[tuple[Callable[..., object], tuple[Any, ...], dict[str, Any], str]] = [
    (WarmupSchedule, ("20,40",), {"started_on": NOV_1}, r"caps=.*a list of daily caps"),
    (WarmupSchedule, ([20, "40"],), {"started_on": NOV_1}, r"caps=.*whole number"),
    (WarmupSchedule, ([20, True],), {"started_on": NOV_1}, r"caps=.*whole number"),
    (WarmupSchedule, ([20, NAN],), {"started_on": NOV_1}, r"caps=.*whole number"),
    (WarmupSchedule, ([-1],), {"started_on": NOV_1}, r"caps=.*at least 0"),
    (WarmupSchedule, ([20],), {"started_on": 1}, r"started_on=.*datetime.date"),
    (_TABLE, ([20, 40],), {"started_on": NOV_1}, r"table=.*a dict"),
    (_TABLE, ({"1": 20},), {"started_on": NOV_1}, r"table=.*whole number"),
    (_TABLE, ({0: 20},), {"started_on": NOV_1}, r"table=.*at least 1"),
    (_TABLE, ({1: "20"},), {"started_on": NOV_1}, r"table=.*whole number"),
    (_TABLE, ({},), {"started_on": NOV_1}, r"day numbers starting at 1"),
    (WarmupSchedule.preset, (["new-domain"],), {}, r"no warmup preset \['new-domain'\]"),
    (WarmupSchedule.preset, ("new",), {}, r"no warmup preset 'new'; known: cautious"),
    (WarmupSchedule.preset, ("new-ip",), {"started_on": "today"}, r"started_on=.*date"),
    (WarmupSchedule.preset("new-ip").cap_for, (0,), {}, r"cap_for\(day=.*at least 1"),
    (WarmupSchedule.preset("new-ip").cap_for, (1.5,), {}, r"cap_for\(day=.*whole number"),
]


@pytest.mark.parametrize(("make", "args", "options", "says"), SCHEDULE_BAD)
def test_warmup_schedules_refuse_what_is_no_schedule(
    make: Callable[..., object], args: tuple[Any, ...], options: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        make(*args, **options)


def test_warmup_schedules_take_good_options() -> None:
    assert WarmupSchedule([0, 5], started_on=NOV_1).caps == (0, 5)
    assert WarmupSchedule.linear(start=1, target=1, days=1, started_on=NOV_1).caps == (1,)
    assert WarmupSchedule.from_table({1: 0, 3: 9}, started_on=NOV_1).caps == (0, 0, 9)
    assert WarmupSchedule.preset("cautious", counting="sending", idle_restart=1).days == 60


# -- the testing helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "start", [dt.datetime(2026, 11, 1, 9, 0), "2026-11-01T09:00Z", dt.date(2026, 11, 1)]
)
def test_fake_clock_refuses_a_start_that_is_no_aware_datetime(start: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"FakeClock needs a timezone-aware start, e.g"):
        FakeClock(start)


# -- Guard and SyncGuard -----------------------------------------------------------------------

GUARD_BAD: list[tuple[dict[str, Any], str]] = [
    ({"adapter": 1}, r"adapter=.*an Adapter"),
    ({"adapter": "smtp://localhost"}, r"adapter=.*an Adapter"),
    ({"store": "sqlite:///x.db"}, r"store=.*open_store\(url\)"),
    ({"retry": 3}, r"retry=.*RetryPolicy"),
    ({"retry": {"attempts": 3}}, r"retry=.*RetryPolicy"),
    ({"warmup": {"schedule": "exponential"}}, r"warmup=.*WarmupSchedule"),
    ({"rules": [Rule("mailboxfull", "casella piena")]}, r"rules=.*Rules\(\[Rule"),
    ({"soft_bounce": 5}, r"soft_bounce=.*SoftBouncePolicy"),
    ({"breaker": True}, r"breaker=.*Breaker"),
    ({"shaping": {"google": "500/hour"}}, r"shaping=.*Shaping"),
    ({"pause_for": 3600}, r"pause_for=.*timedelta"),
    ({"pause_for": dt.timedelta(0)}, r"pause_for and transient_pause_for must be positive"),
    ({"transient_pause_for": None}, r"transient_pause_for=.*timedelta"),
    ({"bounce_secret": 12345678901234567890}, r"bounce_secret=.*str or bytes"),
    ({"bounce_secret": "short"}, r"bounce_secret must be at least 16 bytes"),
    ({"spread_over": 3600}, r"spread_over=.*timedelta"),
    ({"spread_over": dt.timedelta(0)}, r"spread_over must be a positive"),
    ({"spread_burst": "5%"}, r"spread_burst=.*fraction"),
    ({"spread_burst": 0}, r"spread_burst must be a fraction"),
    ({"on_store_error": "ignore"}, r"on_store_error must be 'raise' or 'send'"),
    ({"store_timeout": 0}, r"store_timeout=.*positive number of seconds"),
    ({"store_timeout": "10"}, r"store_timeout=.*positive number of seconds"),
    ({"store_timeout": float("nan")}, r"store_timeout=.*positive number of seconds"),
    ({"journal": 5}, r"journal=.*directory"),
    ({"journal": True}, r"journal=.*directory"),
    ({"redact_addresses": "yes"}, r"redact_addresses=.*True or False"),
    ({"clock": 5}, r"clock=.*function"),
    ({"clock": lambda: "2026-11-01"}, r"clock=.*datetimes"),
    ({"clock": dt.datetime.now}, r"clock must return timezone-aware"),
    ({"sleep": None}, r"sleep=.*function"),
]
GUARD_IDS = [repr(o)[1:-1][:40] for o, _ in GUARD_BAD]


@pytest.mark.parametrize(("options", "says"), GUARD_BAD, ids=GUARD_IDS)
async def test_guard_refuses_at_construction(options: dict[str, Any], says: str) -> None:
    adapter, store = RecordingAdapter(), MemoryStore()
    with pytest.raises(ConfigurationError, match=says):
        Guard(**{"adapter": adapter, "store": store, **options})
    async with Guard(adapter=adapter, store=store) as guard:
        assert (await guard.status("sender.example")).volume.sends == 0
    assert adapter.envelopes == []


@pytest.mark.parametrize(("options", "says"), GUARD_BAD, ids=GUARD_IDS)
def test_sync_guard_refuses_at_construction(options: dict[str, Any], says: str) -> None:
    adapter = RecordingAdapter()
    with pytest.raises(ConfigurationError, match=says):
        SyncGuard(**{"adapter": adapter, **options})
    assert adapter.envelopes == []


def test_sync_guard_options_are_typed() -> None:
    # mypy --strict checks this file with warn_unused_ignores: each ignore below is needed,
    # so a wrong option is a type error, as it is for Guard.
    with pytest.raises(TypeError, match="no_such_option"):
        SyncGuard(no_such_option=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no_such_option"):
        Guard(no_such_option=True)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match=r"adapter=.*an Adapter"):
        SyncGuard(adapter=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"on_store_error must be"):
        SyncGuard(on_store_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"pause_for=.*timedelta"):
        SyncGuard(pause_for=3600)  # type: ignore[arg-type]


def test_sync_guard_refuses_a_bad_timeout() -> None:
    with pytest.raises(ConfigurationError, match=r"SyncGuard\(timeout=.*positive"):
        SyncGuard(timeout=0)
    with pytest.raises(ConfigurationError, match=r"SyncGuard\(timeout=.*positive"):
        SyncGuard(timeout="5")  # type: ignore[arg-type]


class _CallsBack(RecordingAdapter):
    """An adapter that, mid-send, asks the SyncGuard it runs under (in that guard's loop)."""

    sync: SyncGuard
    caught: list[BaseException]

    async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
        try:
            self.sync.is_suppressed("a@example.com")
        except Exception as exc:  # noqa: BLE001 (what it raised is the point)
            self.caught.append(exc)
        return await super().deliver(envelope)


def test_sync_guard_called_from_its_own_loop_is_a_configuration_error() -> None:
    adapter = _CallsBack()
    adapter.caught = []
    with SyncGuard(adapter=adapter) as sync:
        adapter.sync = sync
        sync.send(message(["a@example.com"]))
    assert len(adapter.caught) == 1
    assert isinstance(adapter.caught[0], ConfigurationError)
    assert str(adapter.caught[0]) == "SyncGuard called from its own event loop: use the async Guard"


def test_sync_guard_has_the_signature_of_guard() -> None:
    guard = inspect.signature(Guard.__init__).parameters
    sync = dict(inspect.signature(SyncGuard.__init__).parameters)
    timeout = sync.pop("timeout")
    assert timeout.kind is inspect.Parameter.KEYWORD_ONLY
    assert timeout.default is None
    assert list(sync) == list(guard)
    for name, parameter in guard.items():
        mirrored = sync[name]
        assert mirrored.kind == parameter.kind, name
        assert mirrored.default == parameter.default, name
        assert mirrored.annotation == parameter.annotation, name


# -- the HTTP adapters and webhook verifiers -------------------------------------------------


def _http_adapters() -> dict[str, tuple[Callable[..., object], dict[str, Any]]]:
    from sendguard_mailgun import MailgunAdapter, WebhookVerifier  # noqa: PLC0415
    from sendguard_postmark import PostmarkAdapter  # noqa: PLC0415
    from sendguard_sendgrid import SendGridAdapter  # noqa: PLC0415
    from sendguard_ses import SESAdapter, SNSVerifier  # noqa: PLC0415

    return {
        "ses": (
            SESAdapter,
            {"region": "eu-west-1", "access_key_id": "A", "secret_access_key": "S"},
        ),
        "mailgun": (MailgunAdapter, {"api_key": "key", "domain": "mg.example.com"}),
        "postmark": (PostmarkAdapter, {"server_token": "token"}),
        "sendgrid": (SendGridAdapter, {"api_key": "key"}),
        "sns": (SNSVerifier, {"topic_arns": ["arn:aws:sns:eu-west-1:123456789012:ses"]}),
        "mailgun-webhook": (WebhookVerifier, {"signing_keys": ["signing-key"]}),
    }


HTTP_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("ses", {"region": "eu west 1"}, r"region=.*AWS region such as 'eu-west-1'"),
    ("ses", {"region": "https://email.eu-west-1.amazonaws.com"}, r"region=.*AWS region"),
    ("ses", {"region": None}, r"region=.*AWS region"),
    ("ses", {"access_key_id": "AKIA\n"}, r"access_key_id=.*line break"),
    ("ses", {"access_key_id": 1}, r"access_key_id=.*string"),
    ("ses", {"secret_access_key": ""}, r"secret_access_key=.*not be empty"),
    ("ses", {"secret_access_key": "sécret"}, r"secret_access_key=.*ASCII"),
    ("ses", {"session_token": "t\r\n"}, r"session_token=.*line break"),
    ("ses", {"endpoint_url": "localhost:4566"}, r"endpoint_url=.*http:// or https:// URL"),
    ("ses", {"endpoint_url": "http://[::1"}, r"endpoint_url=.*http:// or https:// URL"),
    ("ses", {"endpoint_url": "http://h:port"}, r"endpoint_url=.*bad port"),
    ("ses", {"configuration_set": "a\nb"}, r"configuration_set=.*line break"),
    ("ses", {"timeout": 0}, r"timeout=.*positive number of seconds"),
    ("ses", {"transport": object()}, r"transport=.*httpx.AsyncBaseTransport"),
    ("mailgun", {"api_key": "key\r\nX-Evil: 1"}, r"api_key=.*line break"),
    ("mailgun", {"api_key": "këy"}, r"api_key=.*ASCII"),
    ("mailgun", {"domain": "mg.example.com/../v4"}, r"domain=.*domain name"),
    ("mailgun", {"domain": ""}, r"domain=.*not be empty"),
    ("mailgun", {"base_url": "api.eu.mailgun.net"}, r"base_url=.*http:// or https:// URL"),
    ("mailgun", {"timeout": "30"}, r"timeout=.*positive number of seconds"),
    ("postmark", {"server_token": "tökén"}, r"server_token=.*ASCII"),
    ("postmark", {"server_token": "t\n"}, r"server_token=.*line break"),
    ("postmark", {"message_stream": ""}, r"message_stream=.*not be empty"),
    ("postmark", {"base_url": "ftp://api.postmarkapp.com"}, r"base_url=.*http://"),
    ("postmark", {"timeout": -1}, r"timeout=.*positive"),
    ("sendgrid", {"api_key": "SG.€"}, r"api_key=.*ASCII"),
    ("sendgrid", {"api_key": None}, r"api_key=.*string"),
    ("sendgrid", {"base_url": "https://"}, r"base_url=.*http://"),
    ("sendgrid", {"transport": "mock"}, r"transport=.*httpx.AsyncBaseTransport"),
    ("sns", {"topic_arns": []}, r"needs the TopicArns it accepts"),
    ("sns", {"topic_arns": "arn:aws:sns:eu-west-1:1:ses"}, r"takes a list of TopicArns"),
    ("sns", {"topic_arns": ["ses-events"]}, r"topic_arns=.*TopicArns such as"),
    ("sns", {"regions": []}, r"regions=.*at least one region"),
    ("sns", {"regions": "eu-west-1"}, r"regions=.*takes a list"),
    ("sns", {"regions": ["Ireland"]}, r"regions=.*AWS regions"),
    ("sns", {"fetch": lambda url: b"", "transport": object()}, r"fetch= or transport=, not both"),
    ("sns", {"fetch": "https://"}, r"fetch=.*function"),
    ("sns", {"transport": object()}, r"transport=.*httpx.BaseTransport"),
    ("sns", {"confirm_subscriptions": "yes"}, r"confirm_subscriptions=.*True or False"),
    ("sns", {"max_age": 3600}, r"max_age=.*timedelta"),
    ("sns", {"skew": dt.timedelta(seconds=-1)}, r"skew=.*not be negative"),
    ("sns", {"clock": None}, r"clock=.*function"),
    ("mailgun-webhook", {"signing_keys": []}, r"at least one signing key"),
    ("mailgun-webhook", {"signing_keys": [""]}, r"signing_keys=.*not be empty"),
    ("mailgun-webhook", {"signing_keys": [b"key"]}, r"signing_keys=.*string"),
    ("mailgun-webhook", {"max_age": 900}, r"max_age=.*timedelta"),
    ("mailgun-webhook", {"max_age": dt.timedelta(0)}, r"max_age=.*positive"),
    ("mailgun-webhook", {"clock": 0}, r"clock=.*function"),
]


@pytest.mark.parametrize(
    ("which", "options", "says"),
    HTTP_BAD,
    ids=[f"{w}-{repr(o)[1:-1][:30]}" for w, o, _ in HTTP_BAD],
)
def test_http_adapters_and_verifiers_refuse_at_construction(
    which: str, options: dict[str, Any], says: str
) -> None:
    make, good = _http_adapters()[which]
    make(**good)  # the good options construct
    with pytest.raises(ConfigurationError, match=says):
        make(**{**good, **options})


@pytest.mark.parametrize(
    ("which", "option"),
    [
        ("ses", "secret_access_key"),
        ("mailgun", "api_key"),
        ("postmark", "server_token"),
        ("sendgrid", "api_key"),
    ],
)
def test_a_bad_secret_is_never_repeated(which: str, option: str) -> None:
    make, good = _http_adapters()[which]
    with pytest.raises(ConfigurationError) as caught:
        make(**{**good, option: "hunter2\n"})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "prefix", "says"),
    [
        (5, "sendguard", r"open_store\(url=.*string"),
        (None, "sendguard", r"open_store\(url=.*string"),
        ("", "sendguard", r"open_store\(url=.*not be empty"),
        ("redis://localhost\r\n:6379", "sendguard", r"open_store\(url=.*line break"),
        ("memory://", "", r"open_store\(prefix=.*not be empty"),
        ("memory://", 7, r"open_store\(prefix=.*string"),
    ],
)
def test_open_store_refuses_what_is_not_a_url(url: Any, prefix: Any, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        open_store(url, prefix=prefix)
