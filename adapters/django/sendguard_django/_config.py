"""The process's SyncGuard, built once from ``settings.SENDGUARD`` and Django's EMAIL_* settings."""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from sendguard import (
    ConfigurationError,
    Guard,
    SMTPAdapter,
    SyncGuard,
)
from sendguard import config as sendguard_config
from sendguard._perprocess import PerProcess

__all__ = [
    "SMTP_BACKEND",
    "config",
    "get_guard",
    "guard_options",
    "project_store_url",
    "read",
    "reset_guard",
    "worker_guard",
]

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def config() -> dict[str, Any]:
    """``settings.SENDGUARD``, checked (an unknown key is an error), with its ``BACKEND``."""
    raw = getattr(settings, "SENDGUARD", {}) or {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured("SENDGUARD must be a dict")
    read(raw)
    return {"BACKEND": SMTP_BACKEND, **{k.upper(): v for k, v in raw.items()}}


def read(conf: dict[str, Any]) -> sendguard_config.Settings:
    """The settings read by :mod:`sendguard.config` (as every integration reads its own)."""
    try:
        settings_read = sendguard_config.from_mapping(
            conf, extra=("BACKEND", "KEPT", "NOT_SENT"), source="SENDGUARD"
        )
    except ConfigurationError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
    upper = {k.upper(): v for k, v in conf.items()}
    for key, allowed, what in _CHOICES:
        if upper.get(key, allowed[0]) not in allowed:
            raise ImproperlyConfigured(
                f"SENDGUARD[{key!r}] must be {' or '.join(map(repr, allowed))} ({what}), "
                f"not {upper[key]!r}"
            )
    return settings_read


_CHOICES = (
    ("KEPT", ("sent", "raise"), "whether a message kept for later counts as sent"),
    ("NOT_SENT", ("raise", "ignore"), "whether a message that reached no one raises"),
)


def project_store_url(conf: dict[str, Any]) -> str:
    """The store URL of the settings.

    ``STORE``, else ``REDIS_URL`` (with ``CLUSTER``), else a SQLite file ``sendguard.db`` in
    ``BASE_DIR`` (in the working directory if the settings have no ``BASE_DIR``).
    """
    try:
        return read(conf).store_url(_default_store())
    except ConfigurationError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


def _default_store() -> str:
    base = getattr(settings, "BASE_DIR", None)
    return f"sqlite:///{Path(base) / 'sendguard.db' if base else 'sendguard.db'}"


def guard_options(conf: dict[str, Any]) -> dict[str, Any]:
    """Guard options of the settings, the store excepted (what ``manage.py sendguard`` uses)."""
    return dict(read(conf).options)


def _options(conf: dict[str, Any]) -> dict[str, Any]:
    """Guard options from the settings."""
    options: dict[str, Any] = {}
    if conf["BACKEND"] == SMTP_BACKEND:
        # Like Django's SMTP backend: log in only when both are set.
        login = bool(settings.EMAIL_HOST_USER and settings.EMAIL_HOST_PASSWORD)
        options["adapter"] = SMTPAdapter(
            settings.EMAIL_HOST,
            int(settings.EMAIL_PORT),
            username=settings.EMAIL_HOST_USER if login else None,
            password=settings.EMAIL_HOST_PASSWORD if login else None,
            use_tls=bool(settings.EMAIL_USE_SSL),
            start_tls=bool(settings.EMAIL_USE_TLS),
            timeout=float(settings.EMAIL_TIMEOUT or 60),
        )
    else:
        # Any other backend is an adapter: the whole pipeline applies to what it sends.
        from sendguard_django.adapter import BackendAdapter  # noqa: PLC0415 (imports backend)

        options["adapter"] = BackendAdapter(conf["BACKEND"])
    from sendguard_django.signals import send_outbox_signal  # noqa: PLC0415 (imports this)

    options["on_outbox"] = send_outbox_signal
    return {**options, **read(conf).guard_options(default_store=_default_store())}


def worker_guard() -> Guard:
    """A guard like the project's (its adapter, store and options) for an outbox worker."""
    try:
        return Guard(**_options(config()))
    except (ConfigurationError, TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"SENDGUARD: {exc}") from exc


def _build() -> SyncGuard:
    from sendguard_django.signals import send_later_signals  # noqa: PLC0415 (imports this)

    try:
        # The request's guard: mail_kept is sent by the backend, on the request's thread.
        return SyncGuard(**{**_options(config()), "on_outbox": send_later_signals})
    except (ConfigurationError, TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"SENDGUARD: {exc}") from exc


_guards = PerProcess(_build)


def get_guard() -> SyncGuard:
    """The process's guard, built on first use; configuration errors raise ImproperlyConfigured.

    A worker forked after the guard was built (``gunicorn --preload``) builds its own: the
    parent's thread and connections did not come along.
    """
    return _guards.get()


def reset_guard() -> None:
    """Close the guard; the next use builds it from the settings again."""
    _guards.close()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **_: Any) -> None:  # noqa: ANN401
    if setting == "SENDGUARD" or setting.startswith("EMAIL_"):
        reset_guard()


atexit.register(reset_guard)
