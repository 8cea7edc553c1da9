from __future__ import annotations

# Importing the Celery app here makes @shared_task use it in web processes too.
from mpoxsite.celery import app as celery_app

__all__ = ["celery_app"]
