"""sendguard's loggers: structlog over the standard library's ``logging``, never configured.

Each module takes one logger, ``logger("guard")`` for ``sendguard.guard``: a structlog bound
logger over ``logging.getLogger("sendguard.guard")`` with processors of its own, so the
application's structlog configuration is neither used nor changed, and every event reaches the
application's ``logging`` handlers (Django's ``LOGGING``, Sentry, ``caplog``). The ``sendguard``
logger has a ``NullHandler``: with no logging configured nothing is printed, not even the
standard library's last-resort warnings on stderr.

A record's message is the event name followed by its fields as ``key=value`` (a value with
spaces, quotes, ``=`` or unprintable characters JSON-quoted), as a ``%``-template with the
values as arguments, so Sentry groups one event's records together; each field is also an
attribute of the record (``extra``; one named like a ``LogRecord`` attribute gets a trailing
``_``), as is ``event``, the event name, which ``structlog.stdlib.ExtraAdder`` turns back into
structlog's own event dict.

Under ``structlog.testing.capture_logs()`` every event goes to the capture, whatever its level,
as it did when sendguard logged through structlog's global configuration.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import structlog
from structlog.stdlib import BoundLogger
from structlog.testing import LogCapture
from structlog.types import EventDict, WrappedLogger

ROOT = "sendguard"
logging.getLogger(ROOT).addHandler(logging.NullHandler())

# What a LogRecord is made with, and what Formatter.format adds: not for extra.
_RECORD_KEYS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)
_PLAIN_UNSAFE = frozenset(' "=\\')


def logger(area: str) -> BoundLogger:
    """The bound logger of ``sendguard.<area>``."""
    stdlib = logging.getLogger(f"{ROOT}.{area}")
    if not any(isinstance(f, _CallSite) for f in stdlib.filters):
        stdlib.addFilter(_CallSite())
    return structlog.wrap_logger(  # type: ignore[no-any-return]
        stdlib,
        processors=[_captured, structlog.stdlib.filter_by_level, _to_record],
        wrapper_class=BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=True,
    )


def handled(name: str = ROOT) -> bool:
    """Whether a record of logger *name* reaches a handler the application set (not a Null one)."""
    current: logging.Logger | None = logging.getLogger(name)
    while current is not None:
        if any(not isinstance(handler, logging.NullHandler) for handler in current.handlers):
            return True
        current = current.parent if current.propagate else None
    return False


def to_stderr() -> Callable[[], None]:
    """Print ``sendguard`` records of INFO and above to ``sys.stderr``; the undo.

    For the command line, where the application configured no logging: the stream is the
    ``sys.stderr`` of each record's time (a test runner's too).
    """
    root = logging.getLogger(ROOT)
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    level = root.level
    root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)

    def undo() -> None:
        root.removeHandler(handler)
        root.setLevel(level)

    return undo


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler writing to whatever ``sys.stderr`` is when it emits."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_NOT_CALL_SITES = (
    os.path.dirname(structlog.__file__) + os.sep,
    os.path.normcase(logging.__file__),
    os.path.normcase(__file__),
)


class _CallSite(logging.Filter):
    """Set a record's file, line and function to sendguard's call, not structlog's."""

    def filter(self, record: logging.LogRecord) -> bool:
        frame = sys._getframe(1)
        while frame.f_back is not None and os.path.normcase(frame.f_code.co_filename).startswith(
            _NOT_CALL_SITES
        ):
            frame = frame.f_back
        code = frame.f_code
        record.pathname = code.co_filename
        record.filename = os.path.basename(code.co_filename)
        record.module = os.path.splitext(record.filename)[0]
        record.lineno = frame.f_lineno
        record.funcName = code.co_name
        return True


def _captured(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Hand the event to ``capture_logs`` (structlog's configured processors) when it is on."""
    processors = structlog.get_config()["processors"]
    if any(isinstance(processor, LogCapture) for processor in processors):
        for processor in processors:
            event_dict = processor(logger, method_name, event_dict)  # the capture drops it
        raise structlog.DropEvent
    return event_dict


def _to_record(
    _logger: WrappedLogger, _method_name: str, event_dict: EventDict
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of the ``logging.Logger`` call: ``(template, *values)``, keywords."""
    event = str(event_dict.pop("event", ""))
    kwargs: dict[str, Any] = {}
    for key in ("exc_info", "stack_info"):
        if key in event_dict:
            kwargs[key] = event_dict.pop(key)
    template = event.replace("%", "%%") + "".join(f" {key}=%s" for key in event_dict)
    values = tuple(_plain(value) for value in event_dict.values())
    extra = {(f"{key}_" if key in _RECORD_KEYS else key): v for key, v in event_dict.items()}
    extra["event"] = event
    kwargs["extra"] = extra
    return (template, *values), kwargs


def _plain(value: object) -> str:
    """*value* as one token of a ``key=value`` line: JSON-quoted unless that is plain."""
    text = value if isinstance(value, str) else str(value)
    if text and text.isprintable() and not _PLAIN_UNSAFE.intersection(text):
        return text
    return json.dumps(text)
