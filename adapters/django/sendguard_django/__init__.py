"""sendguard for Django: ``EMAIL_BACKEND = "sendguard_django.EmailBackend"``."""

from sendguard_django._config import get_guard, reset_guard
from sendguard_django.adapter import BackendAdapter
from sendguard_django.backend import EmailBackend

__version__ = "0.1.0"

__all__ = ["BackendAdapter", "EmailBackend", "get_guard", "reset_guard"]
