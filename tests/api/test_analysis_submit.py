from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage

from diagnosis import api
from diagnosis.models import Analysis, Case
from tests.api.conftest import api_client_with
from tests.photos import jpeg_bytes

pytestmark = pytest.mark.django_db


def _form(data: bytes | None = None, **fields: object) -> dict[str, object]:
    form: dict[str, object] = {"body_part": "arm", "stage": "early", "patient_id": "MRN-77"}
    form["image"] = io.BytesIO(data if data is not None else jpeg_bytes())
    form.update(fields)
    return form


def test_a_submission_is_accepted_and_queued() -> None:
    response = api_client_with("submit").post("/api/v1/analyses", _form(), format="multipart")
    assert response.status_code == 202
    body = response.json()
    analysis = Analysis.objects.get(pk=body["id"])
    assert body["status"] == "queued" or body["status"] == analysis.status
    assert body["url"].endswith(f"/api/v1/analyses/{analysis.pk}")
    case = Case.objects.get()
    assert case.patient.hospital_identifier == "MRN-77"
    assert case.created_by.username.startswith("api-client-")
    assert not case.created_by.is_active


def test_a_retry_with_the_same_idempotency_key_answers_the_same_analysis() -> None:
    client = api_client_with("submit")
    first = client.post("/api/v1/analyses", _form(), format="multipart", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post("/api/v1/analyses", _form(), format="multipart", HTTP_IDEMPOTENCY_KEY="k-1")
    other = client.post("/api/v1/analyses", _form(), format="multipart", HTTP_IDEMPOTENCY_KEY="k-2")
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert Case.objects.count() == 2


def test_submitting_needs_the_submit_scope() -> None:
    response = api_client_with("read").post("/api/v1/analyses", _form(), format="multipart")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("form", "status", "field"),
    [
        (lambda: {"body_part": "arm"}, 422, "image"),
        (lambda: _form(stage="late-ish"), 422, "stage"),
        (lambda: _form(data=b"%PDF-1.4 not a photo"), 415, None),
        (lambda: _form(data=jpeg_bytes()[:200]), 422, None),
    ],
)
def test_bad_submissions_are_problems_not_500s(form, status, field) -> None:
    response = api_client_with("submit").post("/api/v1/analyses", form(), format="multipart")
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    if field:
        assert field in response.json()["errors"]
    assert not Case.objects.exists()


def test_a_too_large_photo_is_413(settings) -> None:
    settings.MPOX_MAX_UPLOAD_BYTES = 100
    response = api_client_with("submit").post("/api/v1/analyses", _form(), format="multipart")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"


def test_the_encounter_id_is_stored_on_the_case_and_shown_with_the_analysis() -> None:
    client = api_client_with("submit", "read")
    accepted = client.post("/api/v1/analyses", _form(encounter_id="V-2026-118"), format="multipart").json()
    assert Case.objects.get().encounter_id == "V-2026-118"
    assert client.get(accepted["url"]).json()["encounter_id"] == "V-2026-118"


def test_without_an_encounter_id_it_is_null() -> None:
    client = api_client_with("submit", "read")
    accepted = client.post("/api/v1/analyses", _form(), format="multipart").json()
    assert Case.objects.get().encounter_id == ""
    assert client.get(accepted["url"]).json()["encounter_id"] is None


@pytest.mark.parametrize("field", ["patient_id", "encounter_id"])
def test_identifiers_longer_than_the_hospital_uses_are_422(field: str) -> None:
    form = _form()
    form[field] = "X" * 65
    response = api_client_with("submit").post("/api/v1/analyses", form, format="multipart")
    assert response.status_code == 422
    assert list(response.json()["errors"]) == [field]
    assert not Case.objects.exists()


def test_a_body_that_is_not_multipart_is_415() -> None:
    response = api_client_with("submit").post(
        "/api/v1/analyses", {"body_part": "arm", "stage": "early", "patient_id": "MRN-1"}, format="json"
    )
    assert response.status_code == 415
    assert response["Content-Type"] == "application/problem+json"


def test_a_retry_that_loses_a_race_answers_the_first_analysis_and_leaves_no_file(monkeypatch) -> None:
    client = api_client_with("submit")
    first = client.post("/api/v1/analyses", _form(), format="multipart", HTTP_IDEMPOTENCY_KEY="k-1")
    stored = set(default_storage.listdir("lesions")[1])
    real_lookup = api.earlier_submission
    looks: list[str] = []

    def lookup_that_misses_the_first_attempt(api_client, key):
        # The retry's two looks before it inserts its key miss the first attempt, as when both run at once.
        looks.append(key)
        return None if len(looks) <= 2 else real_lookup(api_client, key)

    monkeypatch.setattr(api, "earlier_submission", lookup_that_misses_the_first_attempt)
    again = client.post("/api/v1/analyses", _form(), format="multipart", HTTP_IDEMPOTENCY_KEY="k-1")

    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert Case.objects.count() == 1
    assert set(default_storage.listdir("lesions")[1]) == stored
