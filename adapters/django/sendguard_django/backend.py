"""``EMAIL_BACKEND = "sendguard_django.EmailBackend"``: every message Django sends, guarded.

With Django's SMTP backend configured as ``SENDGUARD["BACKEND"]`` (the default) the guard
delivers itself, to EMAIL_HOST: per-recipient results, retries with backoff, suppression of
dead addresses, pauses, warmup.  With any other backend (django-anymail's, a console, a custom
one) the guard drops suppressed recipients before the send and maps the backend's outcome
after it, django-anymail's per-recipient ``anymail_status`` included.

Each message gets its :class:`sendguard.SendResult` as ``message.sendguard_result``.
``send_messages`` returns how many messages reached at least one recipient.  ``fail_silently``
hides delivery errors, as Django documents, but never a configuration error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.base import BaseEmailBackend

from sendguard import (
    ConfigurationError,
    DeliveryStatus,
    RecipientResult,
    SendGuardError,
    SendResult,
    envelope_address,
    normalize_address,
)
from sendguard_django._config import SMTP_BACKEND, config, get_guard

__all__ = ["EmailBackend"]

# django-anymail's per-recipient statuses, as the guard reports them.
_ANYMAIL_STATUS = {
    "sent": DeliveryStatus.ACCEPTED,
    "queued": DeliveryStatus.ACCEPTED,
    "scheduled": DeliveryStatus.ACCEPTED,
    "rejected": DeliveryStatus.REJECTED,
    "invalid": DeliveryStatus.INVALID,
    "failed": DeliveryStatus.DEFERRED,
    "unknown": DeliveryStatus.DEFERRED,
}


class EmailBackend(BaseEmailBackend):
    """A Django e-mail backend that sends through the sendguard guard."""

    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:  # noqa: ANN401 (Django's signature)
        super().__init__(fail_silently=fail_silently)
        self._conf = config()  # a configuration error raises here, whatever fail_silently says
        self._kwargs = kwargs
        self._inner: BaseEmailBackend | None = None

    @property
    def delivers_itself(self) -> bool:
        """Whether the guard talks SMTP itself (Django's SMTP backend configured)."""
        return bool(self._conf["BACKEND"] == SMTP_BACKEND)

    def open(self) -> bool | None:
        """Open the wrapped backend's connection, when it is not the guard's own SMTP."""
        if self.delivers_itself:
            get_guard()  # build it now, so configuration errors surface here
            return False
        if self._inner is None:
            self._inner = get_connection(
                self._conf["BACKEND"], fail_silently=self.fail_silently, **self._kwargs
            )
        return self._inner.open()

    def close(self) -> None:
        """Close the wrapped backend's connection (the guard's pool stays open)."""
        if self._inner is not None:
            self._inner.close()

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Send each message; how many reached at least one recipient."""
        if not email_messages:
            return 0
        guard = get_guard()  # ImproperlyConfigured passes through, fail_silently or not
        sent = 0
        for message in email_messages:
            try:
                if self.delivers_itself:
                    result = guard.send(
                        message.message(),
                        sender=envelope_address(message.from_email),
                        recipients=[envelope_address(r) for r in message.recipients()],
                    )
                else:
                    result = self._filtered_send(message)
            except ConfigurationError as exc:
                raise ImproperlyConfigured(str(exc)) from exc
            except Exception:
                if not self.fail_silently:
                    raise
                continue
            message.sendguard_result = result
            if result.accepted:
                sent += 1
        return sent

    # -- any other backend ---------------------------------------------------------------------

    def _filtered_send(self, message: EmailMessage) -> SendResult:
        guard = get_guard()
        results: dict[str, RecipientResult] = {}
        keys: dict[str, str] = {}
        for raw in message.recipients():
            try:
                key = normalize_address(envelope_address(raw)).key
            except SendGuardError as exc:
                results[raw] = RecipientResult(raw, DeliveryStatus.INVALID, detail=str(exc))
                continue
            keys[raw] = key
            entry = guard.suppression(key)
            if entry is not None:
                results[key] = RecipientResult(
                    key, DeliveryStatus.SUPPRESSED, detail=f"suppressed: {entry.reason}"
                )
        dropped = {raw for raw, key in keys.items() if key in results}
        dropped |= {raw for raw in message.recipients() if raw not in keys}
        message.to = [a for a in message.to if a not in dropped]
        message.cc = [a for a in message.cc if a not in dropped]
        message.bcc = [a for a in message.bcc if a not in dropped]
        sender = normalize_address(envelope_address(message.from_email)).key
        if not message.recipients():
            return SendResult(sender=sender, message_id=None, recipients=results)
        self.open()
        inner = self._inner
        if inner is None:  # pragma: no cover (open() always sets it here)
            raise ImproperlyConfigured("SENDGUARD['BACKEND'] did not open")
        refused: str | None = None
        try:
            count = inner.send_messages([message])
        except Exception as exc:
            refused = _anymail_refused(exc)
            if refused is None:
                raise
            count = 0
        anymail = getattr(message, "anymail_status", None)
        statuses = getattr(anymail, "recipients", None) or {}
        for raw in message.recipients():
            key = keys.get(raw, raw)
            status = statuses.get(envelope_address(raw)) or statuses.get(key)
            if status is not None:
                # Anymail's per-recipient word, also when it raised "every recipient was
                # refused": an "invalid" there is not a "rejected".
                self._record(guard, key, str(status.status), refused or "", results)
            elif refused is not None:
                self._record(guard, key, "rejected", refused, results)
            else:
                accepted = DeliveryStatus.ACCEPTED if count else DeliveryStatus.DEFERRED
                results[key] = RecipientResult(key, accepted)
        message_id = getattr(anymail, "message_id", None)
        return SendResult(
            sender=sender,
            message_id=message_id if isinstance(message_id, str) else None,
            recipients=results,
        )

    @staticmethod
    def _record(
        guard: Any,  # noqa: ANN401 (the SyncGuard)
        key: str,
        status: str,
        detail: str,
        results: dict[str, RecipientResult],
    ) -> None:
        mapped = _ANYMAIL_STATUS.get(status, DeliveryStatus.DEFERRED)
        suppressed = False
        if status == "rejected":
            # The ESP refused the recipient outright (its own suppression list, a hard bounce
            # on record): never worth trying again, so the guard's list has it too.
            guard.suppress(
                key, reason="suppressed", detail=detail or "rejected by the ESP", source="anymail"
            )
            suppressed = True
        results[key] = RecipientResult(key, mapped, detail=detail or status, suppressed=suppressed)


def _anymail_refused(exc: Exception) -> str | None:
    """The description of django-anymail's "every recipient was refused", if *exc* is it."""
    if type(exc).__name__ == "AnymailRecipientsRefused":
        return str(exc)
    return None
