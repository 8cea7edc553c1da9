"""Celery tasks: each takes a primary key (or nothing), calls one service, and keeps retries and limits here."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.signals import worker_process_init
from django.conf import settings
from django.db import InterfaceError, OperationalError

from diagnosis import services, webhooks

logger = logging.getLogger(__name__)


# Only database hiccups are worth retrying; a bad photo fails the analysis once, with a message, inside the service.
@shared_task(
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=30,
    max_retries=3,
)
def analysis_run(analysis_id: int) -> None:
    services.analysis_run(analysis_id=analysis_id)


@shared_task
def analysis_requeue_stale() -> None:
    services.analysis_requeue_stale(older_than=timedelta(seconds=settings.MPOX_ANALYSIS_STALE_SECONDS))


@shared_task
def webhook_deliver(delivery_id: int) -> None:
    webhooks.webhook_deliver(delivery_id=delivery_id)


@shared_task
def webhook_sweep() -> None:
    # Each try may wait the full timeout: send only as many as fit well inside the task's soft time limit.
    limit = max(1, int((settings.CELERY_TASK_SOFT_TIME_LIMIT - 10) // settings.MPOX_WEBHOOK_TIMEOUT_SECONDS))
    webhooks.webhook_sweep(limit=limit)


@worker_process_init.connect
def _warm_model(**kwargs: Any) -> None:
    """Load the model as each worker process starts, so the first photo does not wait for it."""
    try:
        model_version = services.model_version_ensure_active()
    except Exception:
        # The worker stays up; each analysis then fails with a message the nurse can pass on.
        logger.exception("could not load the model at worker start")
        return
    logger.info("worker ready with model %s", model_version.version)
