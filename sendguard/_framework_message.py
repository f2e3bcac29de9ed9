"""A framework's e-mail message object written down as JSON for the outbox, and rebuilt.

Django's and Flask-Mailman's ``EmailMessage`` (and django-anymail's ``AnymailMessage``) are
plain objects whose attributes say everything a backend needs: subject, body, the address
lists, headers, attachments, alternatives, anymail's tags, metadata and ``send_at``.  Most ESP
backends build their request from those attributes, not from MIME, so mail kept for later
keeps the object itself: its attributes as typed JSON (bytes, dates, tuples and named tuples,
MIME parts marked as such), and its class by name.

Rebuilding never imports anything: the class (and the class of a named tuple) must belong to a
module the process has imported already, and must be a subclass of the integration's message
class, so a store's content cannot make the process load code.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import json
import sys
from email.message import Message
from email.mime.base import MIMEBase
from typing import Any

from sendguard._errors import ConfigurationError
from sendguard._log import logger

__all__ = ["freeze", "thaw"]

log = logger("outbox")

_SKIPPED = frozenset({"connection", "anymail_status", "sendguard_result"})
"""Attributes that are the send's, not the message's: a backend connection, results."""


class _UnkeepableError(TypeError):
    """A value that has no JSON form here."""


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode(value: object) -> object:  # noqa: PLR0911, PLR0912 (one return per kind of value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str(value)  # a SafeString is a str
    if isinstance(value, bytes | bytearray):
        return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$d": value.isoformat()}
    if isinstance(value, Message):
        return {"$mime": base64.b64encode(value.as_bytes()).decode("ascii")}
    if isinstance(value, tuple):
        items = [_encode(v) for v in value]
        named = type(value) is not tuple and hasattr(value, "_fields")
        return {"$t": items, **({"cls": _path(type(value))} if named else {})}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise _UnkeepableError("a mapping with keys that are not text")
        kept: dict[str, object] = {}
        for k, v in value.items():
            try:
                kept[k] = _encode(v)
            except _UnkeepableError as exc:  # one value less, not the whole mapping
                log.warning("sendguard.outbox_value_dropped", key=k, kind=str(exc))
        return {"$m": kept}
    if type(value).__name__ == "__proxy__":  # Django's lazy translation of a text
        return str(value)
    raise _UnkeepableError(type(value).__name__)


def freeze(message: object) -> str:
    """*message*'s class and attributes as JSON text.

    An attribute with a value that has no JSON form (an ESP option holding a function) is
    left out and logged: the message is kept without it.
    """
    state: dict[str, object] = {}
    for name, value in vars(message).items():
        if name == "connection":
            state[name] = None  # the worker's backend sends it, not the app's connection
            continue
        if name in _SKIPPED:
            continue
        given = value
        if name == "extra_headers" and isinstance(value, dict):
            # Django and Flask-Mailman str() every header value when they build the message.
            given = {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}
        try:
            state[name] = _encode(given)
        except _UnkeepableError as exc:
            log.warning("sendguard.outbox_attribute_dropped", attribute=name, kind=str(exc))
    status = "anymail_status" in vars(message)  # made again, empty, by thaw
    # The class and its bases: a worker that has not imported the app's own subclass (its
    # module is imported by a view, say) rebuilds the message as the nearest base it has.
    classes = [_path(c) for c in type(message).__mro__ if c is not object]
    return json.dumps(
        {"class": classes[0], "bases": classes[1:], "state": state, "status": status},
        separators=(",", ":"),
    )


def _resolve(path: str) -> type:
    """The class *path* names, from a module already imported (nothing is imported here)."""
    module_name, _, qualname = path.partition(":")
    module = sys.modules.get(module_name)
    found: object = module
    for part in qualname.split("."):
        found = getattr(found, part, None) if found is not None else None
    if not isinstance(found, type):
        raise ConfigurationError(f"a kept message names {path!r}, which this process has not")
    return found


def _decode_state(cls: type, state: object) -> dict[str, object]:
    """The attributes of a kept message of class *cls*, decoded."""
    if not callable(getattr(cls, "message", None)) or not isinstance(state, dict):
        raise ConfigurationError(f"a kept message's class {cls.__name__} is no e-mail message")
    return {str(k): _decode(v) for k, v in state.items()}


def _first_class(names: list[str], base: type | tuple[type, ...] | None) -> type:
    """The first of *names* this process has (imported), of *base* when given."""
    for name in names:
        try:
            found = _resolve(name)
        except ConfigurationError:
            continue
        if base is None or issubclass(found, base):
            return found  # else a mixin of the class, say: its bases come next
    bases = base if isinstance(base, tuple) else (base,) if base is not None else ()
    wanted = " or ".join(f"a {b.__name__}" for b in bases) or "a class"
    raise ConfigurationError(
        f"a kept message names {names[0]!r}: this process has no such class, nor {wanted} "
        "among its bases"
    )


def _decode(value: Any) -> object:  # noqa: ANN401, PLR0911 (JSON; one return per kind)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$b" in value:
        return base64.b64decode(value["$b"])
    if "$dt" in value:
        return dt.datetime.fromisoformat(value["$dt"])
    if "$d" in value:
        return dt.date.fromisoformat(value["$d"])
    if "$mime" in value:
        parsed = email.message_from_bytes(base64.b64decode(value["$mime"]))
        part = MIMEBase(parsed.get_content_maintype(), parsed.get_content_subtype())
        part._headers = parsed._headers  # type: ignore[attr-defined]
        part._payload = parsed._payload  # type: ignore[attr-defined]
        return part
    if "$t" in value:
        items = [_decode(v) for v in value["$t"]]
        if "cls" in value:
            cls = _resolve(str(value["cls"]))
            fields = getattr(cls, "_fields", None)
            if not issubclass(cls, tuple) or not isinstance(fields, tuple):
                raise ConfigurationError(f"a kept message names {value['cls']!r} as a tuple")
            if len(fields) != len(items):
                raise ConfigurationError(f"a kept {cls.__name__} has {len(items)} fields")
            # tuple.__new__ itself: no constructor of the class runs, whatever it does.
            return tuple.__new__(cls, items)
        return tuple(items)
    if "$m" in value:
        return {k: _decode(v) for k, v in value["$m"].items()}
    raise ConfigurationError("a kept message holds a value of no known kind")


def thaw(text: str, *, base: type | tuple[type, ...] | None = None) -> object:
    """The message :func:`freeze` wrote as *text*; its class must subclass *base*."""
    try:
        data = json.loads(text)
        names = [str(data["class"]), *map(str, data.get("bases", []))]
        state = data["state"]
        cls = _first_class(names, base)
        decoded = _decode_state(cls, state)
    except ConfigurationError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        # Damaged or hostile stored text (binascii.Error is a ValueError; deep nesting a
        # RecursionError): a typed error, the letter left for a person.
        raise ConfigurationError(
            f"a kept message cannot be read back: {type(exc).__name__}: {exc}"[:300]
        ) from None
    made: Any = object.__new__(cls)
    vars(made).update(decoded)
    if data.get("status"):
        _fresh_status(made)
    return made


def _fresh_status(message: object) -> None:
    """Give an anymail message the empty ``anymail_status`` anymail's constructor gives it."""
    status = getattr(sys.modules.get("anymail.message"), "AnymailStatus", None)
    if callable(status):
        message.anymail_status = status()  # type: ignore[attr-defined]
