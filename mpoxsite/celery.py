"""The Celery app: web and worker run the same code; only the command differs."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpoxsite.settings")

app = Celery("mpoxsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
