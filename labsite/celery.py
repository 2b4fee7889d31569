"""The Celery app: Redis broker, JSON only, late acknowledgement.

``task_acks_late`` with ``task_reject_on_worker_lost`` means a message is removed from
the broker only when its task has finished; if the worker dies first, Redis hands the
message out again (after the broker's visibility timeout). ``worker_prefetch_multiplier=1``
keeps a busy worker from hoarding queued runs that an idle worker could start. Everything
is configured from Django settings (``CELERY_*``); see ``labsite.settings``. The beat
process's schedule and start-up hook are ``labsite.beat``'s.
"""

from __future__ import annotations

import os

from celery import Celery

from labsite import beat  # noqa: F401  (connects the beat process's start-up hook)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")

app = Celery("labsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
