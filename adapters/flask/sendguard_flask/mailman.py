"""Flask-Mailman's backend that sends through the app's guard (``MAIL_BACKEND``).

``SENDGUARD_BACKEND`` names the Flask-Mailman backend the guard delivers through instead of
talking SMTP itself (``"locmem"``, ``"console"``, a dotted path to a custom one): it becomes
the guard's adapter, :class:`BackendAdapter`, so the whole pipeline applies to what it sends
(suppression, warmup caps, pauses, shaping, the breaker, retries, ``status()`` counts).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

try:
    from flask_mailman import EmailMessage
    from flask_mailman.backends.base import BaseEmailBackend
except ImportError as exc:  # an optional dependency: say how to get it
    need = "Flask-Mailman is not installed: pip install 'sendguard-flask[mailman]'"
    raise ImportError(need) from exc

from flask import Flask, current_app

from sendguard import ConfigurationError, envelope_address
from sendguard._backend_adapter import FrameworkBackendAdapter, Handed, counts_as_sent
from sendguard_flask import current_guard, kept_setting, record
from sendguard_flask._flask_mail import RawMail

__all__ = ["BackendAdapter", "EmailBackend"]


class EmailBackend(BaseEmailBackend):
    """Sends each message through the guard; returns how many reached a recipient or were kept.

    ``fail_silently`` hides delivery errors (the store down, a bad message) but never a
    configuration error.  Each message gets ``message.sendguard_result``.
    """

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Send *email_messages*; how many reached at least one recipient or were kept.

        A message that did neither raises :class:`sendguard.NotSentError` unless
        ``fail_silently`` or ``SENDGUARD_NOT_SENT = "ignore"`` (with ``SENDGUARD_KEPT =
        "raise"`` a kept one raises too).
        """
        guard = current_guard()
        kept, not_sent = kept_setting(current_app.config)
        sent = 0
        for message in email_messages:
            try:
                result = guard.send(
                    message.message(),
                    sender=envelope_address(message.from_email),
                    recipients=[envelope_address(r) for r in message.recipients()],
                    original=message,
                )
            except ConfigurationError:
                raise
            except Exception:
                if not self.fail_silently:
                    raise
                continue
            message.sendguard_result = result
            record(result)
            sent += counts_as_sent(
                result, kept=kept, not_sent=not_sent, fail_silently=self.fail_silently
            )
        return sent


def backend_class(name: str) -> type[Any]:
    """The Flask-Mailman backend class *name* names, as ``MAIL_BACKEND`` would.

    ``"locmem"`` is ``flask_mailman.backends.locmem.EmailBackend``; a dotted path names a
    module (its ``EmailBackend``) or a class ending in ``EmailBackend``.
    """
    if "." not in name:
        module, attribute = f"flask_mailman.backends.{name}", "EmailBackend"
    elif name.endswith("EmailBackend"):
        module, _, attribute = name.rpartition(".")
    else:
        module, attribute = name, "EmailBackend"
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot import the mail backend {name!r}: {exc}") from exc
    if not isinstance(found, type) or not callable(getattr(found, "send_messages", None)):
        raise ConfigurationError(f"{name!r} is not a mail backend class (no send_messages)")
    if issubclass(found, EmailBackend):
        raise ConfigurationError(
            f"{name!r} is sendguard's own backend: SENDGUARD_BACKEND names the backend the "
            "guard sends through"
        )
    return found


class BackendAdapter(FrameworkBackendAdapter):
    """Delivers through *app*'s Flask-Mailman backend *backend* (a name, or an instance).

    A name gets a fresh backend per delivery (``fail_silently=False``: its errors are the
    guard's to read), built with the app's Flask-Mailman extension when it has one; each
    delivery runs in a worker thread inside an app context of *app*.  See
    :mod:`sendguard._backend_adapter` for how the backend's outcome becomes replies.
    """

    def __init__(self, app: Flask, backend: str | object, /) -> None:
        if not isinstance(app, Flask):
            raise ConfigurationError(f"BackendAdapter takes the Flask app first, not {app!r}")
        self.app = app
        if isinstance(backend, str):
            klass = backend_class(backend)

            def connect() -> object:
                mailman = app.extensions.get("mailman")
                if mailman is None and issubclass(klass, BaseEmailBackend):
                    raise ConfigurationError(
                        f"SENDGUARD_BACKEND={backend!r} is a Flask-Mailman backend: "
                        "register Flask-Mailman on the app (flask_mailman.Mail(app))"
                    )
                made: object = klass(mailman=mailman, fail_silently=False)
                return made

            super().__init__(connect=connect, name=backend, message_base=(EmailMessage, RawMail))
        else:
            super().__init__(backend, message_base=(EmailMessage, RawMail))

    def send(self, message: object) -> Handed:
        """See :meth:`FrameworkBackendAdapter.send`: inside an app context of the app."""
        with self.app.app_context():
            return super().send(message)
