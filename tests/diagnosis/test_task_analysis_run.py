from __future__ import annotations

import pytest
from django.db import OperationalError

from diagnosis import services, tasks
from diagnosis.models import Analysis, Case
from tests.diagnosis.helpers import case_for, image_for

pytestmark = pytest.mark.django_db


def test_it_runs_the_analysis_service(nurse, predictor) -> None:
    image = image_for(case_for(nurse))
    tasks.analysis_run.apply(args=(image.analyses.get().pk,), throw=True)
    assert Analysis.objects.get().status == Analysis.Status.DONE
    image.case.refresh_from_db()
    assert image.case.status == Case.Status.AWAITING_REVIEW
    # The queue's sort key is stored as the analysis finishes: the mpox probability plus the early-stage bonus.
    mpox = Analysis.objects.get().mpox_probability
    assert image.case.ai_mpox_max == pytest.approx(mpox)
    assert image.case.risk == pytest.approx(mpox + services.PRIORITY_EARLY_STAGE)


def test_a_poisoned_photo_fails_once_without_retrying(nurse, predictor) -> None:
    image = image_for(case_for(nurse))
    with image.file.open("wb") as handle:
        handle.write(b"not a photo any more")
    result = tasks.analysis_run.apply(args=(image.analyses.get().pk,))
    assert result.successful()
    analysis = Analysis.objects.get()
    assert analysis.status == Analysis.Status.FAILED
    assert analysis.attempts == 1
    assert "not a photo" in analysis.error_message
    image.case.refresh_from_db()
    assert image.case.status == Case.Status.AWAITING_REVIEW  # a clinician looks at the photo instead


def test_database_errors_are_retried_a_bounded_number_of_times(monkeypatch) -> None:
    calls: list[int] = []

    def flaky(*, analysis_id: int) -> None:
        calls.append(analysis_id)
        raise OperationalError("database is locked")

    monkeypatch.setattr(services, "analysis_run", flaky)
    result = tasks.analysis_run.apply(args=(7,))
    assert isinstance(result.result, OperationalError)
    assert calls == [7] * (1 + 3)  # the first try and max_retries


def test_the_worker_start_up_hook_loads_the_model_and_activates_it(db, predictor) -> None:
    tasks._warm_model()
    assert Analysis.objects.count() == 0
    from diagnosis.models import ModelVersion

    assert ModelVersion.objects.get(active=True).weights_sha256 == predictor.weights_sha256
