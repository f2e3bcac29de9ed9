"""Logs go through the standard library's logging, under ``sendguard``, and are never printed."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs
from structlog.types import EventDict

from sendguard import Guard, WarmupSchedule
from sendguard._log import logger
from sendguard.testing import ScriptedSMTPServer
from tests.conftest import message

CORPUS = Path(__file__).parent / "corpus" / "emails"


class Records(logging.Handler):
    """Keeps the records it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """A handler on the ``sendguard`` logger, at DEBUG, as an application would set one."""
    handler = Records()
    root = logging.getLogger("sendguard")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler.records
    root.removeHandler(handler)
    root.setLevel(level)


def _mixed_guard(make_guard: Callable[..., Guard]) -> Guard:
    # Two a day on the fake clock's first day: the third recipient reserved for is held.
    return make_guard(warmup=WarmupSchedule.from_table({1: 2}, started_on=date(2026, 11, 1)))


async def _send_mixed(guard: Guard, smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script("bob@example.com", "550 5.1.1 <bob@example.com>: User unknown")
    await guard.suppress("sue@example.com")
    to = [
        "alice@example.com",
        "bob@example.com",
        "sue@example.com",
        "tom@example.com",
        "eve@example..com",
    ]
    await guard.send(message(to))


async def test_each_recipient_is_a_record_at_its_level_with_its_fields(
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    records: list[logging.LogRecord],
) -> None:
    await _send_mixed(_mixed_guard(make_guard), smtp_server)
    recipients = [r for r in records if getattr(r, "event", None) == "sendguard.recipient"]
    seen = {(r.recipient, r.status, r.levelno) for r in recipients}  # type: ignore[attr-defined]
    assert seen == {
        ("a***@example.com", "accepted", logging.INFO),
        ("b***@example.com", "rejected", logging.WARNING),
        ("s***@example.com", "suppressed", logging.WARNING),
        ("t***@example.com", "throttled", logging.WARNING),
        ("***@<>", "invalid", logging.WARNING),
    }
    assert {r.name for r in records} == {"sendguard.guard"}
    bob = next(r for r in recipients if r.recipient == "b***@example.com")  # type: ignore[attr-defined]
    assert (bob.reply_code, bob.enhanced_code, bob.reason, bob.suppressed) == (  # type: ignore[attr-defined]
        550,
        "5.1.1",
        "userunknown",
        True,
    )
    assert (bob.module, bob.funcName) == ("facade", "_log_result")  # the call, not structlog's
    # The message is the event and its fields, as a template Sentry groups by.
    assert bob.msg.startswith("sendguard.recipient recipient=%s status=%s ")
    assert bob.getMessage().startswith(
        "sendguard.recipient recipient=b***@example.com status=rejected reason=userunknown"
        " reply_code=550 enhanced_code=5.1.1 "
    )
    assert "bob@example.com" not in repr([r.__dict__ for r in records])


async def test_capture_logs_still_sees_every_event(
    make_guard: Callable[..., Guard], smtp_server: ScriptedSMTPServer
) -> None:
    with capture_logs() as logs:
        await _send_mixed(_mixed_guard(make_guard), smtp_server)
    levels = {e["status"]: e["log_level"] for e in logs if e["event"] == "sendguard.recipient"}
    assert levels == {
        "accepted": "info",
        "rejected": "warning",
        "suppressed": "warning",
        "throttled": "warning",
        "invalid": "warning",
    }
    assert any(e["event"] == "sendguard.suppressed" for e in logs)


@pytest.fixture
def no_logging_configured() -> Iterator[None]:
    """The root logger as a program that never configured logging has it: no handlers."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    yield
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("no_logging_configured")
async def test_nothing_is_printed_when_the_app_configured_no_logging(
    make_guard: Callable[..., Guard],
    smtp_server: ScriptedSMTPServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    made: list[logging.LogRecord] = []
    guard_logger = logging.getLogger("sendguard.guard")

    def keep(record: logging.LogRecord) -> bool:
        made.append(record)
        return True

    guard_logger.addFilter(keep)
    try:
        await _send_mixed(_mixed_guard(make_guard), smtp_server)
    finally:
        guard_logger.removeFilter(keep)
    assert any(r.levelno == logging.WARNING for r in made)  # warnings were logged ...
    assert capfd.readouterr() == ("", "")  # ... and nothing printed, not even as a last resort


def test_a_program_that_configured_nothing_prints_nothing(tmp_path: Path) -> None:
    program = (
        "import asyncio\n"
        "from sendguard import Guard, RetryPolicy, SMTPAdapter\n"
        "from tests.conftest import free_port, message\n"
        "async def main():\n"
        "    adapter = SMTPAdapter('127.0.0.1', free_port(), timeout=1)\n"
        "    async with Guard(adapter=adapter, retry=RetryPolicy.never()) as guard:\n"
        "        await guard.suppress('sue@example.com')\n"
        "        to = ['sue@example.com', 'bob@example.com', 'eve@example..com']\n"
        "        await guard.send(message(to))\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_apps_structlog_configuration_is_neither_used_nor_changed(
    records: list[logging.LogRecord],
) -> None:
    seen: list[str] = []

    def app_processor(_logger: object, _method: str, event_dict: EventDict) -> str:
        seen.append(str(event_dict["event"]))
        raise structlog.DropEvent

    before = structlog.get_config()
    structlog.configure(processors=[app_processor])
    try:
        logger("test").warning("sendguard.test", value=1)
        assert seen == []
        assert records[-1].getMessage() == "sendguard.test value=1"
    finally:
        structlog.configure(**before)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("plain", "plain"),
        ("", '""'),
        ("two words", '"two words"'),
        ("a=b", '"a=b"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("100%", "100%"),
        ("caf\u00e9", "caf\u00e9"),
        (None, "None"),
        (True, "True"),
        (550, "550"),
    ],
)
def test_a_field_is_one_token_of_the_message(
    records: list[logging.LogRecord], value: object, shown: str
) -> None:
    logger("test").info("sendguard.test", detail=value, other="x")
    record = records[-1]
    assert record.getMessage() == f"sendguard.test detail={shown} other=x"
    assert record.detail == value  # type: ignore[attr-defined]


def test_fields_named_like_record_attributes_keep_both(records: list[logging.LogRecord]) -> None:
    logger("test").warning("sendguard.test", name="n", message="m", module="x")
    record = records[-1]
    assert (record.name, record.module) == ("sendguard.test", "test_logging")
    assert (record.name_, record.message_, record.module_) == ("n", "m", "x")  # type: ignore[attr-defined]
    assert record.getMessage() == "sendguard.test name=n message=m module=x"


def test_an_exception_is_the_records_exc_info(records: list[logging.LogRecord]) -> None:
    try:
        int("boom")
    except ValueError:
        logger("test").exception("sendguard.test_failed", operation="x")
    record = records[-1]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError
    assert record.getMessage() == "sendguard.test_failed operation=x"


def test_the_cli_prints_its_logs_to_stderr_and_keeps_stdout_for_output(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    eml = CORPUS / "lhost-exim-02.eml"
    done = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "sendguard",
            "ingest",
            "--apply",
            str(eml),
            "--store",
            f"sqlite:///{db}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "sendguard.bounce" not in done.stdout
    logged = [line for line in done.stderr.splitlines() if "sendguard.bounce " in line]
    assert len(logged) == 2
    assert " INFO sendguard.bounce recipient=k***@example.jp " in logged[0]
