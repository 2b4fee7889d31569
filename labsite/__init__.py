"""RSS Lab's Django project: settings, ASGI routing, the Celery app and the web apps.

The Celery app is imported here so that ``celery -A labsite`` and any code that
queues a task (``run_scenario.delay``) share one configured app.
"""

from labsite.celery import app as celery_app

__all__ = ["celery_app"]
