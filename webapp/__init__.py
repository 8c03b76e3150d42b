"""The Django project: settings from the environment, urls, the Celery app, the dashboard."""
from webapp.celery import app as celery_app

__all__ = ["celery_app"]
