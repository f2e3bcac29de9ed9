"""``EMAIL_BACKEND = "sendguard_django.EmailBackend"``: every message Django sends, guarded.

With Django's SMTP backend configured as ``SENDGUARD["BACKEND"]`` (the default) the guard
delivers itself, to EMAIL_HOST.  Any other backend (django-anymail's, django-ses, a console, a
custom one) is the guard's adapter (:class:`sendguard_django.BackendAdapter`).  Either way every
message goes through the whole pipeline: suppression, warmup caps, pauses, shaping, the
breaker, retries with backoff, and ``status()`` counts what was sent.

Each message gets its :class:`sendguard.SendResult` as ``message.sendguard_result``.
``send_messages`` returns how many messages reached at least one recipient or were kept in the
outbox for a worker to send later (as django-mailer and django-post_office count a queued
message); a message that did neither raises :class:`sendguard.NotSentError`.  ``fail_silently``
hides delivery errors, as Django documents, but never a configuration error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from sendguard import ConfigurationError, envelope_address
from sendguard._backend_adapter import counts_as_sent
from sendguard_django._config import SMTP_BACKEND, config, get_guard
from sendguard_django.signals import send_kept_signals

__all__ = ["EmailBackend"]


class EmailBackend(BaseEmailBackend):
    """A Django e-mail backend that sends through the sendguard guard."""

    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:  # noqa: ANN401 (Django's signature)
        super().__init__(fail_silently=fail_silently)
        self._conf = config()  # a configuration error raises here, whatever fail_silently says
        del kwargs  # the guard's adapter is built once, from the settings

    @property
    def delivers_itself(self) -> bool:
        """Whether the guard talks SMTP itself (Django's SMTP backend configured)."""
        return bool(self._conf["BACKEND"] == SMTP_BACKEND)

    def open(self) -> bool | None:
        """Build the guard now, so configuration errors surface here (its pool stays open)."""
        get_guard()
        return False

    def close(self) -> None:
        """Nothing to close: the guard keeps its connections."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Send each message; how many reached at least one recipient or were kept for later.

        A message none of whose recipients received it or was kept raises
        :class:`sendguard.NotSentError` unless ``fail_silently`` or ``SENDGUARD["NOT_SENT"] =
        "ignore"``; with ``SENDGUARD["KEPT"] = "raise"`` so does one that was only kept.
        """
        if not email_messages:
            return 0
        guard = get_guard()  # ImproperlyConfigured passes through, fail_silently or not
        kept = str(self._conf.get("KEPT", "sent"))
        not_sent = str(self._conf.get("NOT_SENT", "raise"))
        sent = 0
        for message in email_messages:
            _fresh_anymail_status(message)
            try:
                result = guard.send(
                    message.message(),
                    sender=envelope_address(message.from_email),
                    recipients=[envelope_address(r) for r in message.recipients()],
                    original=message,
                )
            except ConfigurationError as exc:
                raise ImproperlyConfigured(str(exc)) from exc
            except Exception:
                if not self.fail_silently:
                    raise
                continue
            message.sendguard_result = result
            if result.kept:
                send_kept_signals(result)
            sent += counts_as_sent(
                result, kept=kept, not_sent=not_sent, fail_silently=self.fail_silently
            )
        return sent


def _fresh_anymail_status(message: EmailMessage) -> None:
    """Start *message*'s ``anymail_status`` afresh, as anymail does on every send.

    The adapter merges each delivered copy's status onto it (a message re-sent, or sent as
    several copies, shows this send's recipients only).  Without anymail installed, a status
    left from an earlier send is dropped.
    """
    old = vars(message).pop("anymail_status", None)
    try:
        from anymail.message import AnymailStatus  # noqa: PLC0415 (optional)
    except ImportError:
        return
    if old is not None or "anymail" in str(config()["BACKEND"]):
        message.anymail_status = AnymailStatus()
