"""Django settings of the sendguard-django tests (pytest-django)."""

SECRET_KEY = "sendguard-tests"
INSTALLED_APPS = ["django.contrib.contenttypes", "anymail", "sendguard_django"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
EMAIL_BACKEND = "sendguard_django.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = 25
SENDGUARD: dict[str, object] = {}
ANYMAIL: dict[str, object] = {}
DEFAULT_FROM_EMAIL = "news@shop.example"
