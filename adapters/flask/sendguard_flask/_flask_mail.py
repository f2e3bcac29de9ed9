"""Flask-Mail: its connections hand the SMTP work to the guard of a guarded app.

With ``SENDGUARD_BACKEND`` the guard's adapter is a Flask-Mailman backend
(:class:`sendguard_flask.mailman.BackendAdapter`): each Flask-Mail message reaches it as a
:class:`RawMail`, the exact MIME Flask-Mail made, for the recipients the guard cleared.
"""

from __future__ import annotations

import email
import email.message
import smtplib
from types import ModuleType
from typing import Any

from flask import current_app

from sendguard import DeliveryStatus, envelope_address
from sendguard_flask import current_guard, record

__all__ = ["GuardHost", "RawMail", "patch"]


class _RawMessage(email.message.Message):
    """A parsed message that serializes as Flask-Mailman's do (``as_bytes(linesep=)``)."""

    def as_bytes(self, unixfrom: bool = False, policy: Any = None, linesep: str = "\n") -> bytes:  # noqa: ANN401 (the stdlib's signature)
        policy = (policy or self.policy).clone(linesep=linesep)
        return super().as_bytes(unixfrom=unixfrom, policy=policy)


class RawMail:
    """One Flask-Mail message as Flask-Mailman's backends take an ``EmailMessage``.

    ``to`` holds the envelope recipients (Bcc among them); the headers are Flask-Mail's own,
    in ``data``; ``extra_headers`` (the guard's Message-ID, its bounce token) replace theirs.
    """

    def __init__(self, from_email: str, recipients: list[str], data: bytes) -> None:
        self.from_email = from_email
        self.to = list(recipients)
        self.cc: list[str] = []
        self.bcc: list[str] = []
        self.extra_headers: dict[str, str] = {}
        self.encoding: str | None = None
        self.data = data

    def recipients(self) -> list[str]:
        """Every recipient of the envelope."""
        return [*self.to, *self.cc, *self.bcc]

    def message(self) -> email.message.Message:
        """The message as Flask-Mail made it, with ``extra_headers`` in front."""
        parsed = email.message_from_bytes(self.data, _class=_RawMessage)
        for name, value in self.extra_headers.items():
            del parsed[name]
            parsed[name] = value
        return parsed


class GuardHost:
    """Stands in for Flask-Mail's ``smtplib.SMTP``: ``sendmail`` goes through the guard."""

    def __init__(self, guard: Any) -> None:  # noqa: ANN401 (a SyncGuard)
        self.guard = guard

    def sendmail(
        self,
        from_addr: str,
        to_addrs: list[str],
        msg: bytes | str,
        mail_options: object = (),
        rcpt_options: object = (),
    ) -> dict[str, tuple[int, bytes]]:
        """Like ``smtplib.SMTP.sendmail``: refused recipients back, an error if all were."""
        del mail_options, rcpt_options
        raw = msg if isinstance(msg, bytes) else msg.encode()
        recipients = [envelope_address(a) for a in to_addrs]
        result = self.guard.send(
            email.message_from_bytes(raw),
            sender=envelope_address(from_addr),
            recipients=recipients,
            original=RawMail(from_addr, list(to_addrs), raw),
        )
        record(result)
        refused = {
            rr.address: (rr.reply_code or 0, rr.detail.encode())
            for rr in result.recipients.values()
            if rr.status
            in (DeliveryStatus.REJECTED, DeliveryStatus.DEFERRED, DeliveryStatus.INVALID)
        }
        if refused and not result.accepted:
            raise smtplib.SMTPRecipientsRefused(refused)
        return refused

    def quit(self) -> None:
        """Nothing to close: the guard keeps its pool."""


def patch(flask_mail: ModuleType) -> None:
    """Wrap ``flask_mail.Connection.configure_host`` once, for guarded apps only."""
    connection = flask_mail.Connection
    if getattr(connection.configure_host, "_sendguard", False):
        return
    original = connection.configure_host

    def configure_host(self: Any) -> Any:  # noqa: ANN401 (flask_mail's Connection)
        if "sendguard" not in current_app.extensions:
            return original(self)
        return GuardHost(current_guard())

    configure_host._sendguard = True  # type: ignore[attr-defined]
    connection.configure_host = configure_host
