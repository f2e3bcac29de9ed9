"""Flask-Mailman's backend that sends through the app's guard (``MAIL_BACKEND``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from flask_mailman.backends.base import BaseEmailBackend
except ImportError as exc:  # an optional dependency: say how to get it
    need = "Flask-Mailman is not installed: pip install 'sendguard-flask[mailman]'"
    raise ImportError(need) from exc

from sendguard import ConfigurationError, envelope_address
from sendguard_flask import current_guard, record

__all__ = ["EmailBackend"]


class EmailBackend(BaseEmailBackend):
    """Sends each message through the guard; returns how many reached a recipient.

    ``fail_silently`` hides delivery errors (the store down, a bad message) but never a
    configuration error.  Each message gets ``message.sendguard_result``.
    """

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Send *email_messages*; how many were accepted for at least one recipient."""
        guard = current_guard()
        sent = 0
        for message in email_messages:
            try:
                result = guard.send(
                    message.message(),
                    sender=envelope_address(message.from_email),
                    recipients=[envelope_address(r) for r in message.recipients()],
                )
            except ConfigurationError:
                raise
            except Exception:
                if not self.fail_silently:
                    raise
                continue
            message.sendguard_result = result
            record(result)
            if result.accepted:
                sent += 1
        return sent
