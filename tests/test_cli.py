"""The sendguard command line, against a real Redis and against a SQLite file."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sendguard import SQLiteStore
from sendguard.cli import app
from tests.conftest import free_port

Invoke = Callable[..., tuple[int, str, str]]


@pytest.fixture(params=["redis", "sqlite"])
def run(request: pytest.FixtureRequest, prefix: str, tmp_path: Path) -> Invoke:
    runner = CliRunner()
    if request.param == "redis":
        request.getfixturevalue("redis_store")  # deletes the prefix's keys afterwards
        env = {"SENDGUARD_REDIS_URL": request.getfixturevalue("redis_url")}
    else:
        SQLiteStore(tmp_path / "cli.db").db.close()  # an existing store: no "starting" note
        env = {"SENDGUARD_STORE": f"sqlite:///{tmp_path / 'cli.db'}"}

    def invoke(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        result = runner.invoke(
            app,
            ["suppress", *args],
            input=stdin,
            env={**env, "SENDGUARD_PREFIX": prefix},
        )
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_add_check_remove(run: Invoke) -> None:
    assert run("add", "Bob@Example.com", "carol@example.com", "--reason", "complaint") == (
        0,
        "suppressed bob@example.com\nsuppressed carol@example.com\n",
        "",
    )
    code, out, _ = run("check", "BOB@example.COM")
    assert code == 0
    assert out.startswith("suppressed bob@example.com reason=complaint source=cli since=")
    assert run("remove", "bob@example.com", "nobody@example.com")[:2] == (
        0,
        "removed bob@example.com\nnot suppressed nobody@example.com\n",
    )
    assert run("check", "bob@example.com")[:2] == (1, "not suppressed bob@example.com\n")


def test_invalid_address_is_a_clear_error(run: Invoke) -> None:
    code, _, err = run("add", "good@example.com", "not an address")
    assert code == 2
    assert "not an address" in err
    assert run("check", "good@example.com")[0] == 1, "nothing is added when one is invalid"


def test_import_reports_bad_rows_and_keeps_good_ones(run: Invoke, tmp_path: Path) -> None:
    source = tmp_path / "list.csv"
    source.write_text(
        "address,reason,created_at\n"
        "a@example.com,userunknown,2025-01-02T03:04:05+00:00\n"
        "not-an-address,userunknown,\n"
        "b@example.com,,\n"
        "c@example.com,hardbounce,yesterday\n"
        "\n"
        "d@example.com,complaint,2025-06-01\n"
        "e@example.com,x,2025-06-01,extra\n",
        encoding="utf-8",
    )
    code, out, err = run("import", str(source))
    assert code == 1
    assert out == "imported 3, already listed 0, bad rows 3\n"
    assert f"{source}:3:" in err
    assert f"{source}:5:" in err
    assert f"{source}:8:" in err
    assert run("import", str(source))[1] == "imported 0, already listed 3, bad rows 3\n"

    code, out, _ = run("export")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [
        ["address", "reason", "created_at", "reply_code", "enhanced_code", "detail", "source"],
        ["a@example.com", "userunknown", "2025-01-02T03:04:05+00:00", "", "", "", "import"],
        ["b@example.com", "import", rows[2][2], "", "", "", "import"],
        ["d@example.com", "complaint", "2025-06-01T00:00:00+00:00", "", "", "", "import"],
    ]


def test_export_then_import_round_trips(run: Invoke, tmp_path: Path) -> None:
    run("add", "a@example.com", "b@example.com", "--reason", "manual")
    target = tmp_path / "out.csv"
    assert run("export", str(target))[0] == 0
    run("remove", "a@example.com", "b@example.com")
    assert run("import", str(target))[:2] == (0, "imported 2, already listed 0, bad rows 0\n")
    assert "a@example.com\tmanual" in run("list")[1]


def test_unreachable_redis_exits_non_zero_with_a_message() -> None:
    result = CliRunner().invoke(
        app,
        ["suppress", "check", "a@example.com", "--redis-url", f"redis://127.0.0.1:{free_port()}/0"],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Redis get failed")


def test_missing_file_exits_non_zero(run: Invoke) -> None:
    code, _, err = run("import", "/nonexistent/list.csv")
    assert code == 2
    assert "cannot open /nonexistent/list.csv" in err


def test_console_script_runs(redis_url: str, prefix: str) -> None:
    done = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "sendguard",
            "suppress",
            "check",
            "x@example.com",
            "--redis-url",
            redis_url,
            "--prefix",
            prefix,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (1, "not suppressed x@example.com\n")


FORMULA_ADDRESSES = [
    "=cmd|'/Ccalc'!A0@example.com",  # DDE; email-validator refuses the classic ' /C calc'
    "+cmd|'/Ccalc'!A0@example.com",
    "-2+3+cmd|'/Ccalc'!A0@example.com",
    "=1+2@example.com",
    "'=1+2@example.com",  # a genuine leading quote before a trigger
    "''-x@example.com",
    "'plain@example.com",  # a genuine leading quote before anything else
    "\uff1d1+1@example.com",  # full-width = + - @
    "\uff0bx@example.com",
    "\uff0dx@example.com",
    "\uff20x@example.com",
]
FORMULA_REASONS = [
    '=HYPERLINK("http://evil.example","x")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-1",
    "+1",
]


def test_export_neutralises_formula_cells_and_import_reads_them_back(
    run: Invoke, tmp_path: Path
) -> None:
    for number, address in enumerate(FORMULA_ADDRESSES):
        reason, detail = FORMULA_REASONS[number % 4], FORMULA_REASONS[(number + 1) % 4]
        assert run("add", f"--reason={reason}", f"--detail={detail}", "--", address)[0] == 0
    target = tmp_path / "out.csv"
    assert run("export", str(target))[0] == 0
    listed = [run("check", "--", a)[1].split(" since=")[0] for a in FORMULA_ADDRESSES]
    cells = [c for row in csv.reader(io.StringIO(target.read_text("utf-8"))) for c in row]
    assert len(cells) == 7 * (1 + len(FORMULA_ADDRESSES))
    assert not [c for c in cells if c and c[0] in "=+-@\t\r\n\uff1d\uff0b\uff0d\uff20"]
    assert all(line.startswith('"') for line in target.read_text("utf-8").splitlines())

    run("remove", "--", *(a.lower() for a in FORMULA_ADDRESSES))
    assert run("list")[1] == ""
    assert run("import", str(target))[:2] == (
        0,
        f"imported {len(FORMULA_ADDRESSES)}, already listed 0, bad rows 0\n",
    )
    assert [run("check", "--", a)[1].split(" since=")[0] for a in FORMULA_ADDRESSES] == listed
    assert run("export")[1] == target.read_text("utf-8")
