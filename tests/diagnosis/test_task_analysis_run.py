from __future__ import annotations

import pytest
from django.db import OperationalError, connection

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


def test_a_second_photo_s_result_leaves_a_case_awaiting_review_at_its_version(nurse, predictor) -> None:
    case = case_for(nurse)
    first, second = image_for(case), image_for(case, body_part="face", stage="later")
    services.analysis_run(analysis_id=first.analyses.get().pk)
    case.refresh_from_db()
    shown, updated = case.version, case.updated_at
    services.analysis_run(analysis_id=second.analyses.get().pk)
    case.refresh_from_db()
    assert (case.status, case.version, case.updated_at) == (Case.Status.AWAITING_REVIEW, shown, updated)
    # The risk now counts both photos: the higher mpox probability, the early stage and the face.
    mpox = max(analysis.mpox_probability for analysis in Analysis.objects.all())
    assert case.risk == pytest.approx(mpox + services.PRIORITY_EARLY_STAGE + services.PRIORITY_SITE)


def test_an_analysis_runs_a_fixed_number_of_queries(nurse, predictor, django_assert_max_num_queries) -> None:
    case = case_for(nurse)
    images = [image_for(case) for _ in range(3)]
    services.analysis_run(analysis_id=images[0].analyses.get().pk)  # the model version row exists from here on
    services.analysis_run(analysis_id=images[1].analyses.get().pk)
    # Claim, the analysis with its photo, case and uploader, the model version, the result, the case (locked), its
    # photos and their analyses, its update, the audit chain's head and entry (and its lock on PostgreSQL); savepoints.
    with django_assert_max_num_queries(14 + (connection.vendor == "postgresql")):
        services.analysis_run(analysis_id=images[2].analyses.get().pk)
