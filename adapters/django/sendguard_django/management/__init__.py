"""Django management commands of sendguard-django."""
