"""The exception tree of sendguard.

Every exception sendguard raises derives from :class:`SendGuardError`::

    SendGuardError
    ├── ConfigurationError (ValueError)      options that cannot work together; never hidden
    ├── MessageError (ValueError)            the message itself cannot be sent as given
    │   ├── HeaderInjectionError             a line break or NUL in a header (also when encoded)
    │   ├── InvalidAddressError              an address that is not a valid e-mail address
    │   ├── MessageEncodingError             a header or body that cannot be encoded for the wire
    │   └── NoRecipientsError                no envelope recipient at all
    ├── BounceParseError (ValueError)        input to parse_bounce that is not an e-mail
    ├── WebhookAuthError (PermissionError)   a webhook that is forged, stale or unreadable: 401
    │   └── WebhookPayloadError (ValueError) authenticated, but not a body the provider sends: 400
    ├── WebhookUnavailableError (ConnectionError)  genuine, but not acted on now: 503
    ├── StoreError (ConnectionError)         the suppression store could not give a verdict
    └── NotSentError                         a framework's send that reached no recipient

Mixed delivery outcomes are not exceptions: :meth:`sendguard.Guard.send` returns a
:class:`sendguard.SendResult` with one entry per recipient.  An exception means nothing could be
attempted (or, for :class:`StoreError` raised after a send, that the outcome could not be
recorded; its ``result`` then says what was delivered).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sendguard._models import SendResult

__all__ = [
    "BounceParseError",
    "ConfigurationError",
    "HeaderInjectionError",
    "InvalidAddressError",
    "MessageEncodingError",
    "MessageError",
    "NoRecipientsError",
    "NotSentError",
    "SendGuardError",
    "StoreError",
    "WebhookAuthError",
    "WebhookPayloadError",
    "WebhookUnavailableError",
]


class SendGuardError(Exception):
    """Root of every exception sendguard raises."""


class ConfigurationError(SendGuardError, ValueError):
    """Options that cannot work; raised at construction, never hidden by ``fail_silently``."""


class MessageError(SendGuardError, ValueError):
    """The message cannot be sent as given; nothing was sent."""


class HeaderInjectionError(MessageError):
    """A header name, value or MIME parameter holds a line break or NUL.

    Directly or inside an RFC 2047 word; a line break is anything ``str.splitlines()`` ends a
    line at (CR, LF, VT, FF, FS, GS, RS, NEL, U+2028, U+2029), since the generator folds there.
    """

    def __init__(self, message: str, *, header: str) -> None:
        super().__init__(message)
        self.header = header


class InvalidAddressError(MessageError):
    """An address that is not a syntactically valid e-mail address."""

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


class MessageEncodingError(MessageError):
    """The message cannot be encoded for the wire; refused before any quota is reserved.

    A body whose text its declared charset cannot hold, 8-bit data that cannot be made 7-bit,
    a part whose payload the generator cannot write.  The original error is ``__cause__``.
    """


class NoRecipientsError(MessageError):
    """The message has no envelope recipient (no To, Cc or Bcc, and no ``recipients=``)."""


class BounceParseError(SendGuardError, ValueError):
    """:func:`sendguard.parse_bounce` was given something that is not an e-mail message."""


class WebhookAuthError(SendGuardError, PermissionError):
    """A webhook request failed verification (signature, token, age, origin) or is unreadable.

    Nothing was recorded; the handler should answer 401/403 and the provider retries.  A
    parser raises nothing else, whatever the request.
    """


class WebhookPayloadError(WebhookAuthError, ValueError):
    """A webhook request that passed verification but whose body is not what the provider sends.

    Nothing was recorded; the handler should answer 400 (a 401 would tell the provider its
    credentials are wrong).  A :class:`WebhookAuthError`, so code catching that catches this.
    """


class WebhookUnavailableError(SendGuardError, ConnectionError):
    """A genuine webhook request that could not be acted on now; nothing was recorded.

    The handler should answer 503 so the provider sends it again: an SNS subscription whose
    SubscribeURL did not answer 2xx (or could not be reached) is confirmed at a later try.
    The transport's error is ``__cause__``.
    """


class StoreError(SendGuardError, ConnectionError):
    """The suppression store did not answer; without a verdict nothing is sent.

    ``result`` is set when the store failed *after* a delivery, while recording its outcome:
    it says which recipients were accepted, so the caller does not send them twice.
    """

    def __init__(self, message: str, *, result: SendResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class NotSentError(SendGuardError):
    """A framework integration's send (Django, Flask) that no recipient received.

    Raised unless ``fail_silently``: when every recipient was refused, suppressed, invalid or
    held back without being kept, and (with the integration's ``KEPT = "raise"``) when the
    message was only kept for later.  ``result`` says what happened to each recipient;
    ``kept`` whether some of them wait in the outbox.
    """

    def __init__(self, message: str, *, result: SendResult) -> None:
        super().__init__(message)
        self.result = result
        self.kept = bool(result.kept)
