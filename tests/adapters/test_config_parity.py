"""One configuration: the same options through Django, Flask, the environment and a file.

Each source is read by ``sendguard.config`` and must give a guard with equal options; an
unknown key fails in each with a "did you mean"; ``manage.py check`` reports it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from flask import Flask
from sendguard_django import get_guard
from sendguard_flask import SendGuard, current_guard
from typer.testing import CliRunner

from sendguard import ConfigurationError, Guard, config
from sendguard.cli import app as cli_app

OPTIONS: dict[str, Any] = {
    "WARMUP": {
        "schedule": "linear",
        "start": 7,
        "target": 700,
        "days": 10,
        "started_on": "2026-11-01",
    },
    "RETRY": {"attempts": 2, "initial_wait": 0.5, "max_wait": 2},
    "RULES": [{"reason": "mailboxfull", "pattern": "casella piena"}, "userunknown: utente ignoto"],
    "SOFT_BOUNCE": {"threshold": 3, "span": "2d"},
    "PAUSE_FOR": "2h",
    "TRANSIENT_PAUSE_FOR": 600,
    "BREAKER": {"bounce_pause": 0.07, "window": "12h"},
    "SHAPING": {"google": "500/hour", "*": "1000/hour"},
    "SPREAD_OVER": "8h",
    "SPREAD_BURST": 0.1,
    "ON_STORE_ERROR": "send",
    "STORE_TIMEOUT": 5,
    "JOURNAL": False,
    "BOUNCE_SECRET": "s" * 32,
    "REDACT_ADDRESSES": False,
}

TOML = """
warmup = { schedule = "linear", start = 7, target = 700, days = 10, started_on = "2026-11-01" }
retry = { attempts = 2, initial_wait = 0.5, max_wait = 2 }
rules = [{ reason = "mailboxfull", pattern = "casella piena" }, "userunknown: utente ignoto"]
soft_bounce = { threshold = 3, span = "2d" }
pause_for = "2h"
transient_pause_for = 600
breaker = { bounce_pause = 0.07, window = "12h" }
shaping = { google = "500/hour", "*" = "1000/hour" }
spread_over = "8h"
spread_burst = 0.1
on_store_error = "send"
store_timeout = 5
journal = false
bounce_secret = "ssssssssssssssssssssssssssssssss"
redact_addresses = false
"""


def fingerprint(guard: Guard) -> dict[str, object]:
    warmup = guard.warmup
    breaker = guard.breaker
    shaping = guard.shaping
    assert warmup is not None
    assert breaker is not None
    assert shaping is not None
    return {
        "warmup": (warmup.caps, warmup.started_on, warmup.counting),
        "retry": guard.retry,
        "rules": guard.rules.rules,
        "soft_bounce": guard.soft_bounce,
        "pauses": (guard.pause_for, guard.transient_pause_for),
        "breaker": (breaker.bounce_pause, breaker.window),
        "shaping": (dict(shaping.limits), shaping.recover_every),
        "spread": (guard.spread_over, guard.spread_burst),
        "store": (guard.on_store_error, guard.store_timeout),
        "signed": guard._signer is not None,
        "redact": guard._redact("a@example.com"),
    }


EXPECTED_SPOTS = {
    "pauses": (dt.timedelta(hours=2), dt.timedelta(minutes=10)),
    "spread": (dt.timedelta(hours=8), 0.1),
    "store": ("send", 5.0),
    "signed": True,
    "redact": "a@example.com",
}


def from_django() -> dict[str, object]:
    with override_settings(SENDGUARD={**OPTIONS, "STORE": "memory://"}):
        return fingerprint(get_guard().guard)


def from_flask(tmp_path: Path) -> dict[str, object]:
    app = Flask("parity", instance_path=str(tmp_path / "flask"))
    app.config.update({f"SENDGUARD_{k}": v for k, v in OPTIONS.items()})
    app.config["SENDGUARD_STORE"] = "memory://"
    SendGuard(app)
    guard = current_guard(app)
    try:
        return fingerprint(guard.guard)
    finally:
        guard.close()


async def from_settings(settings: config.Settings) -> dict[str, object]:
    guard = Guard(**settings.guard_options())
    try:
        return fingerprint(guard)
    finally:
        await guard.aclose()


async def test_every_source_gives_the_same_guard(tmp_path: Path) -> None:
    env = {
        f"SENDGUARD_{k}": json.dumps(v) if isinstance(v, dict | list) else str(v)
        for k, v in OPTIONS.items()
    }
    (tmp_path / "sendguard.toml").write_text(TOML)
    (tmp_path / "pyproject.toml").write_text("[tool.sendguard]\n" + TOML)
    prints = {
        "mapping": await from_settings(config.from_mapping(OPTIONS)),
        "environment": await from_settings(config.from_env(env)),
        "sendguard.toml": await from_settings(config.from_file(tmp_path / "sendguard.toml")),
        "pyproject.toml": await from_settings(config.from_file(tmp_path / "pyproject.toml")),
        "flask": from_flask(tmp_path),
    }
    prints["django"] = await asyncio.to_thread(from_django)
    first = prints["mapping"]
    for name, seen in prints.items():
        assert seen == first, name
    for key, value in EXPECTED_SPOTS.items():
        assert first[key] == value, key
    assert first["warmup"][0][:2] == (7, 84)  # type: ignore[index]  # linear from 7
    (tmp_path / "deeper" / "still").mkdir(parents=True)
    assert config.find_file(tmp_path / "deeper" / "still") == tmp_path / "sendguard.toml"


@pytest.mark.parametrize(
    ("read", "where"),
    [
        (lambda: config.from_mapping({"WARMPU": {}}), "SENDGUARD"),
        (lambda: config.from_prefixed({"SENDGUARD_WARMPU": {}, "MAIL_SERVER": "x"}), "SENDGUARD_*"),
        (lambda: config.from_env({"SENDGUARD_WARMPU": "{}"}), "environment"),
    ],
)
def test_a_typo_is_named_with_what_was_meant(read: Any, where: str) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown key 'WARMPU'; did you mean 'WARMUP'"):
        read()


def test_a_typo_in_a_file_and_in_flask(tmp_path: Path) -> None:
    path = tmp_path / "sendguard.toml"
    path.write_text("breakr = { bounce_pause = 0.07 }\n")
    with pytest.raises(ConfigurationError, match="did you mean 'BREAKER'"):
        config.from_file(path)
    app = Flask("typo", instance_path=str(tmp_path / "flask"))
    app.config.update(SENDGUARD_STORE="memory://", SENDGUARD_RETYR={"attempts": 2})
    with pytest.raises(ConfigurationError, match="did you mean 'RETRY'"):
        SendGuard(app)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"PAUSE_FOR": "soon"}, "PAUSE_FOR"),
        ({"WARMUP": {"schedule": "linear", "start": 7}}, "started_on"),
        ({"RETRY": {"attempts": 2, "no_such": 1}}, "RETRY"),
        ({"RULES": ["no colon"]}, "RULES"),
        ({"ON_STORE_ERROR": "ignore"}, "ON_STORE_ERROR"),
        ({"REDACT_ADDRESSES": "maybe"}, "REDACT_ADDRESSES"),
        ({"STORE": "memory://", "REDIS_URL": "redis://localhost"}, "not both"),
    ],
)
def test_a_bad_value_names_its_key(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        config.from_mapping(options)


def test_manage_py_check_reports_a_typo() -> None:
    with override_settings(SENDGUARD={"WARMPU": {}}), pytest.raises(SystemCheckError) as failed:
        call_command("check")
    assert "sendguard.E001" in str(failed.value)
    assert "did you mean 'WARMUP'" in str(failed.value)
    with override_settings(SENDGUARD={"STORE": "memory://", "PAUSE_FOR": "1h"}):
        call_command("check")  # a good configuration passes


def test_the_cli_shows_the_configured_ramp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sendguard.toml").write_text(TOML + 'store = "memory://"\n')
    monkeypatch.chdir(tmp_path)
    found = CliRunner().invoke(cli_app, ["warmup", "plan"])
    assert found.exit_code == 0, found.output
    day_one = found.output.splitlines()[1].split()
    assert (day_one[0], day_one[1], day_one[2]) == ("1", "2026-11-01", "7")
    default = CliRunner().invoke(
        cli_app, ["--config", str(tmp_path / "none.toml"), "warmup", "plan"]
    )
    assert default.exit_code == 2  # a config file named but missing is an error
    explicit = CliRunner().invoke(cli_app, ["warmup", "plan", "--start", "20"])
    assert explicit.output.splitlines()[1].split()[2] == "20"


def test_flask_sendguard_shows_the_apps_ramp(tmp_path: Path) -> None:
    app = Flask("ramp", instance_path=str(tmp_path / "flask"))
    app.config.update(SENDGUARD_STORE="memory://", SENDGUARD_WARMUP=OPTIONS["WARMUP"])
    SendGuard(app)
    try:
        found = app.test_cli_runner().invoke(args=["sendguard", "warmup", "plan"])
        assert found.exit_code == 0, found.output
        assert found.output.splitlines()[1].split()[2] == "7"
    finally:
        current_guard(app).close()
