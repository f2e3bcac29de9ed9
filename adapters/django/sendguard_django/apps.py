"""The Django app: in INSTALLED_APPS it connects anymail's signals and adds the command.

``manage.py sendguard ...`` runs the sendguard command line with the project's settings.
"""

from __future__ import annotations

from django.apps import AppConfig


class SendguardConfig(AppConfig):
    """Connects django-anymail's signals when anymail is installed."""

    name = "sendguard_django"
    verbose_name = "sendguard"

    def ready(self) -> None:
        """Register the settings check; connect the anymail receivers (when anymail is there)."""
        from django.core import checks  # noqa: PLC0415

        from sendguard_django import signals  # noqa: PLC0415 (needs the app registry)
        from sendguard_django.checks import check_settings  # noqa: PLC0415

        checks.register(check_settings, checks.Tags.compatibility)
        signals.connect()
