"""Any framework's e-mail backend as a sendguard adapter (Django's, Flask-Mailman's, anymail's).

A framework backend takes the framework's own message object (a Django ``EmailMessage``), so
the guard is given that object as ``original`` (``Guard.send(..., original=message)``) and
this adapter hands the backend a copy of it for the recipients the guard cleared, then turns
what the backend said into one :class:`Reply` per recipient.  The whole pipeline applies:
suppression, warmup caps, pauses, shaping, the breaker, retries and ``status()`` counts.

What the backend's outcome means, as SMTP-style replies the guard decides on:

* django-anymail's per-recipient ``anymail_status`` (recognised by its names; anymail is never
  imported here): ``sent``/``queued``/``scheduled`` are a 250; ``rejected`` (the ESP refuses
  the recipient: its own suppression list, a hard bounce on record) a 550 5.7.1 with the
  provider's verdict ``suppressed``, so the guard lists it too; ``invalid`` a 553 5.1.3
  (``syntaxerror``: a failure, never a suppression); ``failed`` a 451 (retried);
  ``unknown`` no reply after the message (uncertain: never re-sent automatically);
* ``AnymailAPIError``: HTTP 429 or 5xx is a 451 (retried), another status a 554 content
  error, no status at all (the ESP was never reached) is retried;
* smtplib's exceptions (a backend that speaks SMTP itself): ``SMTPRecipientsRefused`` gives
  each refused recipient its own reply at RCPT, and so does a partial refusal, which smtplib
  returns from ``sendmail`` and Django's and Flask-Mailman's SMTP backends drop (the adapter
  watches the backend's ``smtplib.SMTP`` connection for it); ``SMTPSenderRefused`` is a
  refusal at MAIL FROM (it pauses the sender when the server refused the sender, and never
  suppresses anyone); ``SMTPDataError`` a reply to DATA; a connection refused (or a name
  that does not resolve) is retried, a connection lost on the way uncertain;
* any other exception: uncertain (the backend may have sent the message before it failed);
* otherwise ``send_messages`` returning 1 is a 250 for everyone, 0 uncertain.

What the application sees: the copy keeps the original's ``To`` and ``Cc`` headers (only the
envelope differs, as on the guard's own SMTP), for every backend that builds the message with
``message()``; ESPs that build their own request from the lists (most of anymail's) show each
copy's recipients, as anymail's batch sending does.  anymail's ``anymail_status`` of every copy
is merged onto the application's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import smtplib
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sendguard._adapter import Adapter
from sendguard._address import envelope_address, normalize_address
from sendguard._errors import ConfigurationError, NotSentError, SendGuardError
from sendguard._framework_message import freeze, thaw
from sendguard._models import Envelope, Reply, SendResult, Stage

__all__ = [
    "FrameworkBackendAdapter",
    "Handed",
    "anymail_reply",
    "carry_status",
    "counts_as_sent",
    "error_replies",
    "message_for",
    "replies_for",
]

_ADDRESS_FIELDS = ("to", "cc", "bcc")

_ANYMAIL_ACCEPTED = frozenset({"sent", "queued", "scheduled"})

# Errors that say the message never left: retried.  A connection lost later (the server
# gone, reset or a broken pipe after the data was written, with no reply to the final dot)
# may have delivered it, so it is uncertain and never re-sent, as on the guard's own SMTP.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    smtplib.SMTPConnectError,
    ConnectionRefusedError,
    socket.gaierror,
)


def _wire(raw: str) -> str | None:
    """The wire form of the framework's address *raw* (a name may come with it), if valid."""
    try:
        return normalize_address(envelope_address(raw)).wire
    except SendGuardError:
        return None


def _internal(name: object) -> bool:
    """Whether *name* is a header of the guard's own that never leaves (the stream's)."""
    return isinstance(name, str) and name.strip().lower() == "x-sendguard-stream"


def message_for(
    original: object, recipients: Iterable[str], headers: Sequence[tuple[str, str]] = ()
) -> Any:  # noqa: ANN401 (the framework's own message class)
    """A shallow copy of the framework message *original* addressed to *recipients* only.

    *original* has the ``to``, ``cc`` and ``bcc`` lists of Django's and Flask-Mailman's
    ``EmailMessage``; each address is kept in its own list, spelled as the application wrote
    it, when its wire form is one of *recipients* (the guard's).  *headers* (the guard's
    ``Message-ID`` and bounce token) go into ``extra_headers``.
    """
    if original is None:
        raise ConfigurationError(
            "a framework backend adapter needs the framework's message: "
            "call guard.send(..., original=message)"
        )
    if not all(isinstance(getattr(original, f, None), list | tuple) for f in _ADDRESS_FIELDS):
        raise ConfigurationError(
            f"original must be a framework e-mail message with to, cc and bcc lists, "
            f"not {type(original).__name__}"
        )
    wanted = {r.lower() for r in recipients}
    message: Any = copy.copy(original)
    for name in _ADDRESS_FIELDS:
        kept = []
        for address in getattr(original, name):
            wire = (_wire(address) or "").lower()
            if wire in wanted:
                kept.append(address)
                wanted.discard(wire)  # once, as the guard counts it
        setattr(message, name, kept)
    extra = getattr(original, "extra_headers", None)
    if headers or (isinstance(extra, dict) and any(_internal(n) for n in extra)):
        names = {n.lower() for n, _ in headers}
        kept_headers = {
            n: v
            for n, v in (extra if isinstance(extra, dict) else {}).items()
            if n.lower() not in names and not _internal(n)
        }
        message.extra_headers = {**kept_headers, **dict(headers)}
    if any(list(getattr(message, f)) != list(getattr(original, f)) for f in ("to", "cc")):
        _keep_visible_headers(message, original)
    # anymail writes its status onto the message it sends: never onto the application's.
    vars(message).pop("anymail_status", None)
    return message


def _keep_visible_headers(message: Any, original: Any) -> None:  # noqa: ANN401
    """Make *message*'s ``message()`` show *original*'s ``To`` and ``Cc``, not its own lists.

    Django and Flask-Mailman take an ``extra_headers["To"]`` too, but Flask-Mailman then writes
    the header twice; replacing the headers on the built message works for both.  A ``To`` or
    ``Cc`` the application set in ``extra_headers`` is already on the copy and stays.
    """
    build = getattr(message, "message", None)
    if not callable(build):
        return
    extra = getattr(original, "extra_headers", None)
    own = {n.lower() for n in extra} if isinstance(extra, dict) else set()
    visible = {
        name: ", ".join(str(v) for v in getattr(original, name.lower()))
        for name in ("To", "Cc")
        if name.lower() not in own
    }

    def built() -> Any:  # noqa: ANN401 (the framework's MIME message)
        made = build()
        for name, value in visible.items():
            del made[name]
            if value:
                made[name] = value
        return made

    message.message = built


def carry_status(original: object, message: object) -> None:
    """Merge the ``anymail_status`` anymail wrote on the copy *message* onto *original*.

    Several copies of one message (a retry, a copy per recipient) each get their own status
    from anymail; the application's message gets one with every recipient's, as anymail's
    ``set_recipient_status`` computes it (one message ID, or the set of them).
    """
    status = getattr(message, "anymail_status", None)
    recipients = getattr(status, "recipients", None)
    if status is None or not isinstance(recipients, Mapping) or original is None:
        return
    target: Any = getattr(original, "anymail_status", None)
    merge = getattr(target, "set_recipient_status", None)
    if type(target) is not type(status) or not callable(merge):
        with contextlib.suppress(AttributeError):
            original.anymail_status = status  # type: ignore[attr-defined]
        return
    merge(dict(recipients))
    with contextlib.suppress(AttributeError):
        target.esp_response = getattr(status, "esp_response", None)


def anymail_reply(status: str, detail: str = "") -> Reply:
    """The reply for one of django-anymail's per-recipient statuses."""
    detail = detail or f"the ESP's status: {status}"
    if status in _ANYMAIL_ACCEPTED:
        return Reply(250, f"2.0.0 {detail}", Stage.DATA_END, "2.0.0")
    if status == "rejected":
        return Reply(550, f"5.7.1 {detail}", Stage.RCPT, "5.7.1", reason="suppressed")
    if status == "invalid":
        return Reply(553, f"5.1.3 {detail}", Stage.RCPT, "5.1.3", reason="syntaxerror")
    if status == "failed":
        return Reply(451, f"4.0.0 {detail}", Stage.DATA, "4.0.0")
    return Reply(None, f"delivery uncertain: {detail}", Stage.DATA_END)  # "unknown", or new


def _anymail_statuses(message: object) -> dict[str, str]:
    """django-anymail's ``message.anymail_status.recipients`` as address (lower) -> status."""
    status = getattr(message, "anymail_status", None)
    recipients = getattr(status, "recipients", None)
    if not isinstance(recipients, Mapping):
        return {}
    found: dict[str, str] = {}
    for address, one in recipients.items():
        value = getattr(one, "status", None)
        if isinstance(address, str) and value is not None:
            found[(_wire(address) or address).lower()] = str(value)
    return found


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _describe(exc: BaseException) -> str:
    """``str(exc)``, or its first argument when its ``__str__`` fails (anymail's can)."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 (a third party's __str__)
        return str(exc.args[0]) if exc.args else type(exc).__name__


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _anymail_error(recipients: Sequence[str], exc: BaseException) -> dict[str, Reply]:
    code = getattr(exc, "status_code", None)
    text = f"{type(exc).__name__}: {_describe(exc)}"
    if not isinstance(code, int):  # the ESP was never reached
        return dict.fromkeys(recipients, Reply(None, text, Stage.CONNECT))
    if code == 429 or code >= 500:
        reason = "ratelimited" if code == 429 else None
        reply = Reply(451, f"4.0.0 HTTP {code} {text}", Stage.DATA, "4.0.0", reason=reason)
    else:
        reply = Reply(554, f"5.6.0 HTTP {code} {text}", Stage.DATA, "5.6.0", reason="contenterror")
    return dict.fromkeys(recipients, reply)


def _smtp_error(recipients: Sequence[str], exc: smtplib.SMTPException) -> dict[str, Reply] | None:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = {(_wire(_text(a)) or _text(a)).lower(): v for a, v in exc.recipients.items()}
        replies = {}
        for rcpt in recipients:
            answer = refused.get(rcpt.lower())
            replies[rcpt] = (
                Reply.from_smtp(answer[0], _text(answer[1]), Stage.RCPT)
                if answer is not None
                else Reply(None, f"not in the server's refusal: {_describe(exc)}", Stage.RCPT)
            )
        return replies
    if isinstance(exc, smtplib.SMTPSenderRefused):
        reply = Reply.from_smtp(exc.smtp_code, _text(exc.smtp_error), Stage.MAIL)
    elif isinstance(exc, smtplib.SMTPDataError):
        reply = Reply.from_smtp(exc.smtp_code, _text(exc.smtp_error), Stage.DATA)
    else:
        return None
    return dict.fromkeys(recipients, reply)


def error_replies(recipients: Sequence[str], exc: BaseException) -> dict[str, Reply]:
    """What the backend raising *exc* says about each of *recipients* (not anymail's statuses)."""
    if "AnymailAPIError" in _names(exc):
        return _anymail_error(recipients, exc)
    if isinstance(exc, smtplib.SMTPException) and (found := _smtp_error(recipients, exc)):
        return found
    if isinstance(exc, _CONNECTION_ERRORS):
        reply = Reply(
            None, f"backend unreachable: {type(exc).__name__}: {_describe(exc)}", Stage.CONNECT
        )
    else:
        reply = Reply(
            None,
            f"delivery uncertain: the backend raised {type(exc).__name__}: {_describe(exc)}",
            Stage.DATA_END,
        )
    return dict.fromkeys(recipients, reply)


def replies_for(
    recipients: Sequence[str],
    message: object,
    *,
    sent: int | None = None,
    error: BaseException | None = None,
    refused: Mapping[str, tuple[int, bytes | str]] | None = None,
) -> dict[str, Reply]:
    """One reply per recipient from the backend's outcome on *message* (its copy).

    *sent* is what ``send_messages`` returned, *error* what it raised instead, *refused* the
    recipients an SMTP server refused while accepting the others (smtplib's ``sendmail``
    result).  django-anymail's per-recipient statuses on the message speak for the recipients
    they name, also when anymail raised "every recipient was refused".
    """
    statuses = _anymail_statuses(message)
    statuses_refused = {
        (_wire(_text(a)) or _text(a)).lower(): v for a, v in (refused or {}).items()
    }
    # A refusal the guard cannot match to one of its recipients (the backend spelled the
    # address its own way): which recipient it was is unknown, so none is called accepted.
    unmatched = sorted(set(statuses_refused) - {r.lower() for r in recipients})
    if error is not None:
        rest = error_replies(recipients, error)
    elif sent:
        accepted = Reply(250, "2.0.0 the backend sent it", Stage.DATA_END)
        if unmatched:
            detail = f"delivery uncertain: the server refused {', '.join(unmatched)}"
            accepted = Reply(None, detail, Stage.DATA_END)
        rest = dict.fromkeys(recipients, accepted)
    else:
        detail = "delivery uncertain: the backend sent nothing and said nothing"
        rest = dict.fromkeys(recipients, Reply(None, detail, Stage.DATA_END))
    replies: dict[str, Reply] = {}
    for rcpt in recipients:
        status = statuses.get(rcpt.lower())
        answer = statuses_refused.get(rcpt.lower())
        if status is not None:
            replies[rcpt] = anymail_reply(status)
        elif answer is not None and error is None:
            replies[rcpt] = Reply.from_smtp(answer[0], _text(answer[1]), Stage.RCPT)
        else:
            replies[rcpt] = rest[rcpt]
    return replies


def counts_as_sent(
    result: SendResult, *, kept: str, not_sent: str = "raise", fail_silently: bool
) -> bool:
    """Whether a framework's ``send_messages`` counts *result*'s message as sent.

    Sent when a recipient accepted it, or when one is kept for later and *kept* is
    ``"sent"`` (as django-mailer and django-post_office count a queued message).  A message
    that is neither raises :class:`NotSentError` unless *fail_silently* or *not_sent* is
    ``"ignore"`` (as anymail's ``IGNORE_RECIPIENT_STATUS``); a kept one with *kept*
    ``"raise"`` raises whatever *not_sent* says.
    """
    if result.accepted or (result.kept and kept == "sent"):
        return True
    if fail_silently or (not_sent == "ignore" and not result.kept):
        return False
    listed = "; ".join(
        f"{address}: {rr.status}{' (kept for later)' if rr.kept else ''}"
        for address, rr in result.recipients.items()
    )
    raise NotSentError(f"the message reached no recipient: {listed}", result=result)


@dataclass(frozen=True, slots=True)
class Handed:
    """What handing one message to a backend gave.

    ``count`` is what ``send_messages`` returned, ``refused`` the recipients an SMTP server
    refused while it accepted the others.
    """

    count: int
    refused: Mapping[str, tuple[int, bytes | str]] = field(default_factory=dict)


class FrameworkBackendAdapter(Adapter):
    """Delivers through a framework's e-mail backend (anything with ``send_messages``).

    Give either *backend*, one instance used for every delivery (one at a time: a backend
    need not be thread-safe), or *connect*, called for a fresh backend per delivery.  The
    backend runs in a worker thread so the guard's event loop is never blocked.  Mail kept
    for later keeps the framework's message object (see :mod:`sendguard._framework_message`),
    which must be a subclass of *message_base* when given.
    """

    def __init__(
        self,
        backend: object = None,
        *,
        connect: Callable[[], object] | None = None,
        name: str | None = None,
        message_base: type | tuple[type, ...] | None = None,
    ) -> None:
        if (backend is None) == (connect is None):
            raise ConfigurationError("FrameworkBackendAdapter takes a backend or connect=, one")
        if backend is not None and not callable(getattr(backend, "send_messages", None)):
            raise ConfigurationError(
                f"FrameworkBackendAdapter: {backend!r} is no e-mail backend (no send_messages)"
            )
        if connect is not None and not callable(connect):
            raise ConfigurationError("FrameworkBackendAdapter: connect must be callable")
        self._backend = backend
        self._connect = connect
        self._lock = threading.Lock()
        self.name = name or (
            type(backend).__module__ + "." + type(backend).__qualname__
            if backend is not None
            else "backend"
        )
        self.source = "anymail" if self.name.lower().startswith("anymail.") else "backend"
        self.message_base = message_base

    def keep(self, original: object) -> str:
        """See :meth:`sendguard.Adapter.keep`: the message object's attributes, as JSON."""
        return freeze(original)

    def restore(self, kept: str) -> object:
        """See :meth:`sendguard.Adapter.restore` (a class of ``message_base`` only)."""
        return thaw(kept, base=self.message_base)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
        """See :meth:`sendguard.Adapter.deliver`: one ``send_messages`` call, in a thread."""
        headers = dict(envelope.headers)
        given = envelope.message.get("Message-ID")
        if given and "Message-ID" not in headers:
            # The ID the guard reports and logs; a framework would make a new one otherwise.
            headers["Message-ID"] = str(given)
        message = message_for(envelope.original, envelope.recipients, tuple(headers.items()))
        recipients = list(envelope.recipients)
        try:
            handed = await asyncio.to_thread(self.send, message)
        except SendGuardError:
            raise
        except Exception as exc:  # noqa: BLE001 (a backend's failure is an answer)
            carry_status(envelope.original, message)
            return replies_for(recipients, message, error=exc)
        carry_status(envelope.original, message)
        return replies_for(recipients, message, sent=handed.count, refused=handed.refused)

    def send(self, message: object) -> Handed:
        """Hand *message* to the backend (in a worker thread); what it said.

        A subclass wraps it to give the call the context its framework needs.
        """
        if self._connect is not None:
            backend = self._connect()
            try:
                return _count(backend, message)
            finally:
                # Its own for this delivery: closed, also when send_messages raised half-way
                # (some backends leave their connection open then).
                close = getattr(backend, "close", None)
                if callable(close):
                    with contextlib.suppress(Exception):
                        close()
        with self._lock:
            return _count(self._backend, message)


def _count(backend: object, message: object) -> Handed:
    send: Callable[[list[object]], object] = backend.send_messages  # type: ignore[attr-defined]
    _watch(backend)
    refused: dict[str, tuple[int, bytes | str]] = {}
    _sink.refused = refused
    try:
        count = send([message])
    finally:
        _sink.refused = None
    return Handed(count if isinstance(count, int) else 0, refused)


# The refusals smtplib's sendmail returned in this worker thread, during one send_messages.
_sink = threading.local()


_RECORDING: dict[type[smtplib.SMTP], type[smtplib.SMTP]] = {}


def _recording(klass: type[smtplib.SMTP]) -> type[smtplib.SMTP]:
    """*klass* with a ``sendmail`` that also tells the current delivery what it refused."""
    if (made := _RECORDING.get(klass)) is not None:
        return made

    def sendmail(  # noqa: PLR0917 (smtplib's signature)
        self: smtplib.SMTP,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: bytes | str,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        refused = klass.sendmail(self, from_addr, to_addrs, msg, mail_options, rcpt_options)
        sink = getattr(_sink, "refused", None)
        if sink is not None and refused:
            sink.update(refused)
        return refused

    namespace = {"sendmail": sendmail, "__module__": klass.__module__, "_sendguard_watched": True}
    made = _RECORDING[klass] = type(klass.__name__, (klass,), namespace)
    return made


def _record_refusals(connection: object) -> None:
    if isinstance(connection, smtplib.SMTP) and not getattr(connection, "_sendguard_watched", 0):
        with contextlib.suppress(TypeError):  # a class whose layout cannot be swapped
            connection.__class__ = _recording(type(connection))


def _watch(backend: object) -> None:
    """Have *backend*'s smtplib connection, open now or opened by ``open()``, record refusals.

    Django's and Flask-Mailman's SMTP backends call ``sendmail`` and drop what it returns:
    the recipients the server refused while it accepted the others.
    """
    _record_refusals(getattr(backend, "connection", None))
    opener = getattr(backend, "open", None)
    if not callable(opener) or getattr(opener, "_sendguard_watched", False):
        return

    @functools.wraps(opener)
    def open_and_watch(*args: object, **kwargs: object) -> object:
        opened = opener(*args, **kwargs)
        _record_refusals(getattr(backend, "connection", None))
        return opened

    open_and_watch._sendguard_watched = True  # type: ignore[attr-defined]
    with contextlib.suppress(AttributeError):  # a backend with __slots__
        backend.open = open_and_watch  # type: ignore[attr-defined]
