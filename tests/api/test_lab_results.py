from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.utils import timezone

from diagnosis import services
from diagnosis.models import AuditEntry, Case, LabResult
from tests.api.conftest import api_client_with
from tests.diagnosis.helpers import case_awaiting_review

pytestmark = pytest.mark.django_db


def _post(case_id: int, client=None, **fields: Any):
    body: dict[str, Any] = {"result": "positive", "sample_id": "LAB-2026-0042", "collected_at": "2026-03-04"}
    body.update(fields)
    return (client or api_client_with("lab")).post(f"/api/v1/cases/{case_id}/lab-results", body, format="json")


def test_a_positive_result_is_stored_and_becomes_the_ground_truth(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "MRN-1", mpox=0.2)
    services.review_record(
        case=case,
        reviewer=clinician,
        expected_version=0,
        label="chickenpox",
        confidence="sure",
        disposition="test_only",
    )
    response = _post(case.pk, collected_at="2026-03-04T09:30:00+00:00")
    assert response.status_code == 201, response.content
    body = response.json()
    result = LabResult.objects.get()
    assert body["id"] == result.pk
    assert body["case_id"] == case.pk
    assert body["result"] == "positive"
    assert body["sample_id"] == "LAB-2026-0042"
    assert body["collected_on"] == "2026-03-04"
    assert body["ground_truth"] == {"label": "mpox", "source": "pcr"}
    case.refresh_from_db()
    assert body["case_version"] == case.version == 2
    assert case.status == Case.Status.CLOSED
    assert result.recorded_by.username.startswith("api-client-")
    assert AuditEntry.objects.filter(action=AuditEntry.Action.LAB_RESULT, case_id=case.pk).count() == 1


def test_the_lab_needs_no_case_version_even_after_reviews(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "MRN-2", mpox=0.9)
    for label in ("mpox", "measles"):
        case.refresh_from_db()
        services.review_record(
            case=case,
            reviewer=clinician
            if label == "mpox"
            else services.user_create_with_role(username="c2", role="clinician")[0],
            expected_version=case.version,
            label=label,
            confidence="sure",
            disposition="test_only",
        )
    response = _post(case.pk, result="negative")
    assert response.status_code == 201
    assert response.json()["ground_truth"] == {"label": "measles", "source": "pcr"}


def test_an_inconclusive_result_is_stored_but_is_no_ground_truth(nurse) -> None:
    case = case_awaiting_review(nurse, "MRN-3", mpox=0.5)
    response = _post(case.pk, result="inconclusive")
    assert response.status_code == 201
    assert response.json()["ground_truth"] is None
    assert LabResult.objects.get().pcr == "inconclusive"


def test_a_resend_of_the_same_sample_answers_the_stored_result_without_a_duplicate(nurse) -> None:
    case = case_awaiting_review(nurse, "MRN-4", mpox=0.5)
    client = api_client_with("lab")
    first = _post(case.pk, client)
    again = _post(case.pk, client, collected_at="2026-03-04T23:00:00")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert LabResult.objects.count() == 1
    case.refresh_from_db()
    assert case.version == 1


def test_the_same_sample_with_another_result_is_a_conflict_that_changes_nothing(nurse) -> None:
    case = case_awaiting_review(nurse, "MRN-5", mpox=0.5)
    _post(case.pk)
    response = _post(case.pk, result="negative")
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert "already reported" in response.json()["title"]
    assert list(LabResult.objects.values_list("pcr", flat=True)) == ["positive"]


def test_another_sample_of_the_same_case_is_a_new_result(nurse) -> None:
    case = case_awaiting_review(nurse, "MRN-6", mpox=0.5)
    _post(case.pk)
    response = _post(case.pk, sample_id="LAB-2026-0043", result="negative", collected_at="2026-03-05")
    assert response.status_code == 201
    assert response.json()["ground_truth"] == {"label": "not_mpox", "source": "pcr"}
    assert LabResult.objects.count() == 2


def test_an_unknown_case_is_404(db) -> None:
    response = _post(999_999)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["title"] == "No case has this id."
    assert not LabResult.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"result": "maybe"}, "result"),
        ({"result": None}, "result"),
        ({"sample_id": ""}, "sample_id"),
        ({"sample_id": "S" * 65}, "sample_id"),
        ({"collected_at": "yesterday"}, "collected_at"),
        ({"collected_at": "2026-02-30"}, "collected_at"),
        ({"collected_at": 20260304}, "collected_at"),
        ({"collected_at": (timezone.localdate() + timedelta(days=2)).isoformat()}, "collected_at"),
        ({"collected_at": "0001-01-01T00:00:00+23:59"}, "collected_at"),
    ],
)
def test_field_errors_are_422_problems(nurse, fields, field) -> None:
    case = case_awaiting_review(nurse, "MRN-7", mpox=0.5)
    response = _post(case.pk, **fields)
    assert response.status_code == 422, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert list(body["errors"]) == [field]
    assert field in body["title"]
    assert not LabResult.objects.exists()


def test_a_body_that_is_not_json_is_a_problem(nurse) -> None:
    case = case_awaiting_review(nurse, "MRN-8", mpox=0.5)
    client = api_client_with("lab")
    url = f"/api/v1/cases/{case.pk}/lab-results"
    broken = client.post(url, "{not json", content_type="application/json")
    form = client.post(url, {"result": "positive"})  # multipart
    assert (broken.status_code, form.status_code) == (400, 415)
    assert broken["Content-Type"] == form["Content-Type"] == "application/problem+json"


def test_writing_lab_results_needs_the_lab_scope(nurse) -> None:
    case = case_awaiting_review(nurse, "MRN-9", mpox=0.5)
    response = _post(case.pk, api_client_with("read", "submit", "stats"))
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert not LabResult.objects.exists()


def test_a_date_only_collection_is_kept_as_that_day(nurse) -> None:
    case = case_awaiting_review(nurse, "MRN-10", mpox=0.5)
    assert _post(case.pk, collected_at=date(2026, 1, 31).isoformat()).json()["collected_on"] == "2026-01-31"
