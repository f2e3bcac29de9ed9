"""Settings of the example project: sendguard in front of Django's SMTP backend."""

import os
from pathlib import Path

# The demo points this at a scratch directory, so that each run starts with an empty list.
BASE_DIR = Path(os.environ.get("EXAMPLE_BASE_DIR") or Path(__file__).resolve().parent)

SECRET_KEY = "example-only"  # noqa: S105 (an example project's key)
INSTALLED_APPS = ["django.contrib.contenttypes", "sendguard_django"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
DEFAULT_FROM_EMAIL = "news@shop.example"

EMAIL_BACKEND = "sendguard_django.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
SENDGUARD = {
    "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    # "REDIS_URL": "redis://localhost:6379/0",   # absent: sendguard.db in BASE_DIR
    "RETRY": {"attempts": 2, "initial_wait": 0.1, "max_wait": 0.2},
}
