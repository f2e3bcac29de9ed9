"""Flask-Mail: its connections hand the SMTP work to the guard of a guarded app."""

from __future__ import annotations

import email
import smtplib
from types import ModuleType
from typing import Any

from flask import current_app

from sendguard import DeliveryStatus, envelope_address
from sendguard_flask import current_guard, record

__all__ = ["GuardHost", "patch"]


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
        result = self.guard.send(
            email.message_from_bytes(raw),
            sender=envelope_address(from_addr),
            recipients=[envelope_address(a) for a in to_addrs],
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
