"""Django system checks: a mistake in ``SENDGUARD`` is reported by ``manage.py check``."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

__all__ = ["check_settings"]


def check_settings(app_configs: Any = None, **_: Any) -> list[checks.CheckMessage]:  # noqa: ANN401
    """``SENDGUARD`` read as the guard will read it: unknown keys and bad values are errors."""
    from sendguard_django._config import config  # noqa: PLC0415 (needs the settings)

    try:
        config()
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint="see the configuration table in sendguard's README",
                obj="settings.SENDGUARD",
                id="sendguard.E001",
            )
        ]
    return []
