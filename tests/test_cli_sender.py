"""`sendguard warmup plan`, `sendguard status` and `sendguard resume` (against real Redis)."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sendguard import Outcome, Pause, RedisStore, WarmupSchedule
from sendguard.cli import app

runner = CliRunner()


def test_warmup_plan_prints_every_day_and_the_curve() -> None:
    result = runner.invoke(
        app, ["warmup", "plan", "--preset", "new-domain", "--started-on", "2026-11-01"]
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = WarmupSchedule.preset("new-domain", started_on=dt.date(2026, 11, 1)).table()
    rows = [line.split() for line in lines[1 : 1 + len(expected)]]
    assert [(int(r[0]), int(r[2].replace(",", ""))) for r in rows] == expected
    assert rows[0][1] == "2026-11-01"
    assert rows[-1][1] == "2026-12-12"
    chart = [line for line in lines if "|" in line]
    assert len(chart) == 12
    assert chart[0].endswith("#")  # only the last days reach the top
    assert chart[-1].split("|")[1] == "#" * len(expected)  # every day reaches the bottom


def test_warmup_plan_linear_and_bad_input() -> None:
    ok = runner.invoke(
        app,
        [
            "warmup",
            "plan",
            "--schedule",
            "linear",
            "--start",
            "20",
            "--target",
            "2000",
            "--days",
            "30",
            "--started-on",
            "2026-11-01",
        ],
    )
    assert ok.exit_code == 0
    assert "2,000" in ok.stdout
    bad = runner.invoke(app, ["warmup", "plan", "--start", "500", "--target", "20"])
    assert bad.exit_code == 2
    assert "target" in bad.stderr
    unknown = runner.invoke(app, ["warmup", "plan", "--preset", "nope"])
    assert unknown.exit_code == 2
    assert "new-domain" in unknown.stderr


@pytest.mark.usefixtures("redis_store")
def test_status_and_resume(redis_url: str, prefix: str) -> None:
    env = {"SENDGUARD_REDIS_URL": redis_url, "SENDGUARD_PREFIX": prefix}
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)

    async def pause() -> None:
        async with RedisStore.from_url(redis_url, prefix=prefix) as store:
            await store.settle(
                Outcome(
                    dt.datetime.now(dt.UTC),
                    pauses=[Pause("shop.example", "example.com", until, "blocked", "554 5.7.1")],
                )
            )

    asyncio.run(pause())
    shown = runner.invoke(app, ["status", "Shop.Example"], env=env)
    assert shown.exit_code == 0, shown.stderr
    assert "toward example.com" in shown.stdout
    assert "blocked" in shown.stdout
    assert "0 sends" in shown.stdout
    lifted = runner.invoke(app, ["resume", "shop.example"], env=env)
    assert lifted.stdout.strip() == "lifted 1 pause of shop.example"
    again = runner.invoke(app, ["status", "shop.example"], env=env)
    assert "toward" not in again.stdout


def test_warmup_plan_png(tmp_path: Path) -> None:
    target = tmp_path / "ramp.png"
    result = runner.invoke(app, ["warmup", "plan", "--preset", "new-domain", "--png", str(target)])
    if importlib.util.find_spec("matplotlib") is None:
        assert result.exit_code == 2
        assert "pip install matplotlib" in result.stderr
        assert not target.exists()
    else:
        assert result.exit_code == 0, result.stderr
        assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
