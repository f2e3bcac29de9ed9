"""The examples run as a user would run them, and show what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str) -> str:
    """Run examples/*name* as a user would; its output."""
    done = subprocess.run(  # noqa: S603 (our own example, run with this interpreter)
        [sys.executable, f"examples/{name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quickstart_suppresses_on_550_and_skips_on_the_second_send() -> None:
    stdout = run_example("quickstart.py")
    first, second = stdout.split("Second send")
    assert "bob@example.com        rejected    550 5.1.1" in first
    assert "[suppressed now]" in first
    assert "carol@example.com      deferred    451 4.7.1" in first
    assert "bob@example.com        suppressed" in second
    rcpts = second.split("RCPT TO seen by the server:")[1].splitlines()[0]
    assert "alice@example.com" in rcpts
    assert "bob" not in rcpts.lower()


def test_bounces_example_trusts_only_signed_bounces() -> None:
    stdout = run_example("bounces.py")
    listing = dict(
        line.split()
        for line in stdout.split("Suppression list now:")[1].splitlines()
        if line.strip()
    )
    assert listing == {
        "alice@example.com": "feedback",
        "bob@example.com": "userunknown",
        "carol@example.com": "-",
        "dave@example.com": "-",
    }


def test_django_example_suppresses_and_never_sends_to_the_suppressed_again() -> None:
    stdout = run_example("django_project/demo.py")
    assert "first send: 1 message sent; the server accepted ['ok@example.com']" in stdout
    assert "gone@example.com suppressed: True" in stdout
    assert "second send: 0 sent, RCPT TO seen: none" in stdout


def test_flask_example_suppresses_after_the_550() -> None:
    stdout = run_example("flask_app/app.py")
    lines = stdout.splitlines()
    assert "'ok@example.com': 'accepted'" in lines[0]
    assert "'gone@example.com': 'rejected'" in lines[1]
    assert "'gone@example.com': 'suppressed'" in lines[2]
    assert lines[3] == "the server accepted: ['ok@example.com']"
