from __future__ import annotations

from datetime import timedelta

import pytest

from diagnosis import tasks
from diagnosis.models import Analysis
from tests.diagnosis.helpers import case_for, image_for

pytestmark = pytest.mark.django_db


def test_it_requeues_analyses_older_than_the_configured_age(nurse, settings, django_capture_on_commit_callbacks):
    settings.MPOX_ANALYSIS_STALE_SECONDS = 120
    analysis = image_for(case_for(nurse)).analyses.get()
    long_ago = analysis.queued_at - timedelta(seconds=121)
    Analysis.objects.filter(pk=analysis.pk).update(status=Analysis.Status.RUNNING, started_at=long_ago, attempts=1)
    with django_capture_on_commit_callbacks() as callbacks:
        tasks.analysis_requeue_stale.apply(throw=True)
    analysis.refresh_from_db()
    assert analysis.status == Analysis.Status.QUEUED
    assert len(callbacks) == 1


def test_it_leaves_recent_analyses_alone(nurse, settings, django_capture_on_commit_callbacks) -> None:
    settings.MPOX_ANALYSIS_STALE_SECONDS = 120
    image_for(case_for(nurse))
    Analysis.objects.update(status=Analysis.Status.RUNNING)
    with django_capture_on_commit_callbacks() as callbacks:
        tasks.analysis_requeue_stale.apply(throw=True)
    assert Analysis.objects.get().status == Analysis.Status.RUNNING
    assert callbacks == []
