"""A Celery app as an application would write one, for the outbox's Celery test."""
