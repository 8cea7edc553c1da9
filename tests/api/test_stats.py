from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from diagnosis import services
from diagnosis.models import Analysis, Case, LesionImage, ModelVersion
from tests.api.conftest import api_client_with
from tests.diagnosis.helpers import case_for, finished_analysis, image_for

pytestmark = pytest.mark.django_db

DECISION: dict[str, Any] = {"confidence": "sure", "disposition": "test_only"}


def photo(
    user,
    predicted: str,
    truth: str | None,
    *,
    body_part: str = "arm",
    stage: str = "early",
    model: ModelVersion | None = None,
    uploaded: datetime | None = None,
) -> Case:
    """A case with one analysed photo and a ground truth: a clinician's label, "pcr+" or "pcr-", or none."""
    case = case_for(user, f"MRN-{Case.objects.count() + 1}")
    image = image_for(case, body_part=body_part, stage=stage)
    finished_analysis(image, label=predicted, model_version=model)
    if uploaded is not None:
        LesionImage.objects.filter(pk=image.pk).update(uploaded_at=uploaded)
    case.refresh_from_db()
    if truth in ("pcr+", "pcr-"):
        services.lab_result_record(
            case=case,
            recorded_by=user,
            expected_version=case.version,
            pcr="positive" if truth == "pcr+" else "negative",
            collected_on=date(2026, 3, 1),
            sample_reference=f"S{case.pk}",
        )
    elif truth is not None:
        services.review_record(case=case, reviewer=user, expected_version=case.version, label=truth, **DECISION)
    return case


def get(**params: str):
    return api_client_with("stats").get("/api/v1/stats", params)


@pytest.fixture
def graded(clinician) -> None:
    photo(clinician, "monkeypox", "pcr+", stage="early", body_part="arm")
    photo(clinician, "chickenpox", "mpox", stage="later", body_part="hand")
    photo(clinician, "chickenpox", "chickenpox", stage="early", body_part="arm")
    photo(clinician, "monkeypox", "pcr-")  # a negative PCR, no diagnosis: "not mpox", unknown for the other classes
    photo(clinician, "measles", "other")  # a condition the model has no class for: negative for every class
    photo(clinician, "monkeypox", "unusable")  # no ground truth
    photo(clinician, "monkeypox", None)  # not reviewed yet
    queued = case_for(clinician, "MRN-queued")
    image_for(queued)
    services.review_record(case=queued, reviewer=clinician, expected_version=0, label="mpox", **DECISION)


def test_the_graded_statistics_in_the_issues_shape(graded) -> None:
    response = get()
    assert response.status_code == 200
    body = response.json()
    assert body["n"] == 5
    assert body["per_class"] == {
        "monkeypox": {"precision": 0.5, "recall": 0.5, "specificity": 0.6667, "f1": 0.5, "support": 2},
        "chickenpox": {"precision": 0.5, "recall": 1.0, "specificity": 0.6667, "f1": 0.6667, "support": 1},
        "measles": {"precision": 0.0, "recall": None, "specificity": 0.75, "f1": 0.0, "support": 0},
        "normal": {"precision": None, "recall": None, "specificity": 1.0, "f1": None, "support": 0},
    }
    assert body["mpox_recall_by_stage"] == {
        "early": {"n": 1, "recall": 1.0, "ci95": [0.2065, 1.0]},
        "later": {"n": 1, "recall": 0.0, "ci95": [0.0, 0.7935]},
        "unknown": {"n": 0, "recall": None, "ci95": None},
    }
    by_part = body["mpox_recall_by_body_part"]
    assert set(by_part) == set(LesionImage.BodyPart.values)
    assert by_part["arm"] == {"n": 1, "recall": 1.0, "ci95": [0.2065, 1.0]}
    assert by_part["hand"]["recall"] == 0.0
    assert by_part["face"] == {"n": 0, "recall": None, "ci95": None}


def test_filters_by_tags(graded) -> None:
    hand = get(body_part="hand").json()
    assert hand["n"] == 1
    assert hand["per_class"]["monkeypox"]["recall"] == 0.0
    early = get(stage="early").json()
    assert early["n"] == 4
    assert early["mpox_recall_by_stage"]["later"]["n"] == 0
    assert get(stage="later").json()["n"] == 1
    assert get(stage="unknown").json()["n"] == 0


def test_filters_by_upload_day_and_model_version(clinician) -> None:
    old = ModelVersion.objects.create(name="fast_mpoxnet", version="0.9", weights_sha256="a" * 64)
    new = ModelVersion.objects.create(name="fast_mpoxnet", version="1.0", weights_sha256="b" * 64)
    march = timezone.make_aware(datetime(2026, 3, 10, 12))
    april = timezone.make_aware(datetime(2026, 4, 10, 12))
    photo(clinician, "monkeypox", "mpox", model=old, uploaded=march)
    photo(clinician, "chickenpox", "mpox", model=new, uploaded=april)
    assert get(model_version="0.9").json()["per_class"]["monkeypox"]["recall"] == 1.0
    assert get(model_version="1.0").json()["per_class"]["monkeypox"]["recall"] == 0.0
    assert get(date_from="2026-04-01").json()["n"] == 1
    assert get(date_to="2026-03-10").json()["n"] == 1
    assert get(date_from="2026-03-11", date_to="2026-04-09").json()["n"] == 0
    assert get(date_from="2026-03-10", date_to="2026-04-10").json()["n"] == 2


def test_a_photo_counts_once_with_its_latest_analysis(clinician) -> None:
    case = photo(clinician, "chickenpox", "mpox")
    first = Analysis.objects.get(image__case=case)
    Analysis.objects.create(image=first.image, status=Analysis.Status.DONE, label="monkeypox")
    body = get().json()
    assert body["n"] == 1
    assert body["per_class"]["monkeypox"]["recall"] == 1.0


def test_nothing_graded_yet_is_a_valid_answer(db) -> None:
    body = get().json()
    assert body["n"] == 0
    assert body["per_class"]["monkeypox"] == {
        "precision": None,
        "recall": None,
        "specificity": None,
        "f1": None,
        "support": 0,
    }


def test_the_number_of_queries_does_not_grow_with_the_cases(clinician) -> None:
    client = api_client_with("stats")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/v1/stats").status_code == 200
        return len(captured)

    photo(clinician, "monkeypox", "mpox")
    photo(clinician, "monkeypox", "pcr-")
    few = queries()
    for truth in ("mpox", "pcr+", "pcr-", "measles", "normal", "other", "chickenpox", None):
        photo(clinician, "monkeypox", truth)
    assert queries() == few


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"date_from": "10/03/2026"}, "date_from"),
        ({"date_to": "2026-02-30"}, "date_to"),
        ({"date_from": "2026-04-02", "date_to": "2026-04-01"}, "date_to"),
        ({"body_part": "elbow"}, "body_part"),
        ({"stage": "late"}, "stage"),
        ({"model_version": "9.9"}, "model_version"),
    ],
)
def test_bad_filters_are_400_problems(db, params, field) -> None:
    response = get(**params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert list(response.json()["errors"]) == [field]


def test_statistics_need_the_stats_scope(db) -> None:
    response = api_client_with("read", "submit", "lab").get("/api/v1/stats")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
