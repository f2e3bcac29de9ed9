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
    return structlog.wrap_logger(  # type: ignore[no-any-return]
        logging.getLogger(f"{ROOT}.{area}"),
        processors=[_captured, structlog.stdlib.filter_by_level, _to_record],
        wrapper_class=BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=True,
    )


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
