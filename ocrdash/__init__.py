"""The ocrdash project: settings, URLs and the dashboard's Celery app (wiring only)."""

from .celery import app as celery_app

__all__ = ("celery_app",)
