"""``BackendAdapter``: any Django e-mail backend as the guard's adapter (anymail's, SES's, ...)."""

from __future__ import annotations

from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.module_loading import import_string

from sendguard import ConfigurationError
from sendguard._backend_adapter import FrameworkBackendAdapter

__all__ = ["BackendAdapter"]


class BackendAdapter(FrameworkBackendAdapter):
    """Delivers through the Django backend *backend*: a dotted path, or an instance.

    A path gets a fresh backend per delivery (``fail_silently=False``: its errors are the
    guard's to read); an instance is used for every delivery, one at a time.  The guard is
    given each ``EmailMessage`` as ``original`` and the backend a copy of it for the
    recipients the guard cleared; see :mod:`sendguard._backend_adapter` for how the
    backend's outcome (anymail's per-recipient statuses too) becomes per-recipient replies.
    """

    def __init__(self, backend: str | BaseEmailBackend, /, **kwargs: Any) -> None:  # noqa: ANN401 (the backend's options)
        if isinstance(backend, str):
            try:
                klass = import_string(backend)
            except ImportError as exc:
                raise ConfigurationError(
                    f"cannot import the e-mail backend {backend!r}: {exc}"
                ) from exc
            from sendguard_django.backend import EmailBackend  # noqa: PLC0415 (a cycle)

            if not (isinstance(klass, type) and issubclass(klass, BaseEmailBackend)):
                raise ConfigurationError(f"{backend!r} is not a Django e-mail backend class")
            if issubclass(klass, EmailBackend):
                raise ConfigurationError(
                    f"{backend!r} is sendguard's own backend: name the backend it should send "
                    "through (SENDGUARD['BACKEND'])"
                )

            def connect() -> BaseEmailBackend:
                made: BaseEmailBackend = klass(fail_silently=False, **kwargs)  # type: ignore[call-arg]
                return made

            super().__init__(connect=connect, name=backend, message_base=EmailMessage)
        else:
            if not isinstance(backend, BaseEmailBackend):
                raise ConfigurationError(
                    f"BackendAdapter takes a backend's dotted path or a Django e-mail backend, "
                    f"not {backend!r}"
                )
            super().__init__(
                backend,
                name=type(backend).__module__ + "." + type(backend).__qualname__,
                message_base=EmailMessage,
            )
