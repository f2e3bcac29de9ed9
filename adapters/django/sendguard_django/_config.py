"""The process's SyncGuard, built once from ``settings.SENDGUARD`` and Django's EMAIL_* settings."""

from __future__ import annotations

import atexit
import datetime as dt
import os
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from sendguard import (
    Breaker,
    ConfigurationError,
    RetryPolicy,
    Shaping,
    SMTPAdapter,
    SyncGuard,
    WarmupSchedule,
    open_store,
    store_url,
)

__all__ = ["SMTP_BACKEND", "config", "get_guard", "project_store_url", "reset_guard"]

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
KEYS = frozenset(
    {
        "BACKEND",
        "STORE",
        "REDIS_URL",
        "PREFIX",
        "CLUSTER",
        "WARMUP",
        "RETRY",
        "SHAPING",
        "BREAKER",
        "BOUNCE_SECRET",
        "REDACT_ADDRESSES",
    }
)

_lock = threading.Lock()
_guard: SyncGuard | None = None


def config() -> dict[str, Any]:
    """``settings.SENDGUARD``, checked: an unknown key is a typo, and an error."""
    raw = getattr(settings, "SENDGUARD", {}) or {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured("SENDGUARD must be a dict")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        known = ", ".join(sorted(KEYS))
        raise ImproperlyConfigured(f"SENDGUARD has unknown keys {unknown}; known: {known}")
    return {"BACKEND": SMTP_BACKEND, **raw}


def project_store_url(conf: dict[str, Any]) -> str:
    """The store URL of the settings.

    ``STORE``, else ``REDIS_URL`` (with ``CLUSTER``), else a SQLite file ``sendguard.db`` in
    ``BASE_DIR`` (in the working directory if the settings have no ``BASE_DIR``).
    """
    base = getattr(settings, "BASE_DIR", None)
    try:
        return store_url(
            conf.get("STORE"),
            conf.get("REDIS_URL"),
            cluster=bool(conf.get("CLUSTER")),
            default=f"sqlite:///{Path(base) / 'sendguard.db' if base else 'sendguard.db'}",
        )
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"SENDGUARD: {exc}") from exc


def _warmup(spec: dict[str, Any]) -> WarmupSchedule:
    spec = dict(spec)
    started = spec.pop("started_on", None)
    started_on = dt.date.fromisoformat(started) if isinstance(started, str) else started
    if "preset" in spec:
        return WarmupSchedule.preset(spec.pop("preset"), started_on=started_on, **spec)
    if started_on is None:
        raise ImproperlyConfigured("SENDGUARD['WARMUP'] needs started_on (YYYY-MM-DD)")
    if "table" in spec:
        table = {int(day): int(cap) for day, cap in spec.pop("table").items()}
        return WarmupSchedule.from_table(table, started_on=started_on, **spec)
    shape = spec.pop("schedule", "exponential")
    if shape not in ("exponential", "linear"):
        raise ImproperlyConfigured("SENDGUARD['WARMUP']['schedule'] is exponential or linear")
    build = WarmupSchedule.exponential if shape == "exponential" else WarmupSchedule.linear
    return build(started_on=started_on, **spec)


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
    options["store"] = open_store(project_store_url(conf), prefix=conf.get("PREFIX") or "sendguard")
    if conf.get("WARMUP"):
        options["warmup"] = _warmup(conf["WARMUP"])
    if conf.get("RETRY"):
        options["retry"] = RetryPolicy(**conf["RETRY"])
    if conf.get("SHAPING"):
        options["shaping"] = Shaping(conf["SHAPING"])
    if conf.get("BREAKER") is not None:
        options["breaker"] = Breaker(**conf["BREAKER"])
    if conf.get("BOUNCE_SECRET"):
        options["bounce_secret"] = conf["BOUNCE_SECRET"]
    if "REDACT_ADDRESSES" in conf:
        options["redact_addresses"] = bool(conf["REDACT_ADDRESSES"])
    return options


def get_guard() -> SyncGuard:
    """The process's guard, built on first use; configuration errors raise ImproperlyConfigured.

    A worker forked after the guard was built (``gunicorn --preload``) builds its own: the
    parent's thread and connections did not come along.
    """
    global _guard  # noqa: PLW0603 (one guard per process, as one connection pool)
    with _lock:
        if _guard is not None and _guard.forked:
            _guard = None  # the parent's: left to the parent
        if _guard is None:
            try:
                _guard = SyncGuard(**_options(config()))
            except (ConfigurationError, TypeError, ValueError) as exc:
                raise ImproperlyConfigured(f"SENDGUARD: {exc}") from exc
        return _guard


def reset_guard() -> None:
    """Close the guard; the next use builds it from the settings again."""
    global _guard
    with _lock:
        guard, _guard = _guard, None
    if guard is not None:
        guard.close()


def _forked() -> None:
    global _lock  # noqa: PLW0603
    _lock = threading.Lock()  # one of the parent's threads may have held it


os.register_at_fork(after_in_child=_forked)


@receiver(setting_changed)
def _settings_changed(*, setting: str, **_: Any) -> None:  # noqa: ANN401
    if setting == "SENDGUARD" or setting.startswith("EMAIL_"):
        reset_guard()


atexit.register(reset_guard)
