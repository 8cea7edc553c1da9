from __future__ import annotations

import io

import pytest
from rest_framework.test import APIClient

from diagnosis import api_auth, audit
from diagnosis.models import AuditEntry
from tests.api.conftest import api_client_with
from tests.diagnosis.helpers import case_for, finished_analysis, image_for
from tests.photos import jpeg_bytes

pytestmark = pytest.mark.django_db


def api_calls() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=AuditEntry.Action.API_CALL).order_by("seq"))


def test_a_read_is_audited_with_client_endpoint_object_and_patient(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse)))
    client, token = api_auth.api_client_create("ehr", ["read"])
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert reader.get(f"/api/v1/analyses/{analysis.pk}").status_code == 200
    [entry] = api_calls()
    assert entry.api_client_id == client.pk
    assert entry.actor_label == "ehr"
    assert entry.outcome == "success"
    assert entry.detail == {"endpoint": "api-analysis", "method": "GET", "status": 200, "object_id": analysis.pk}
    assert (entry.object_type, entry.object_id) == ("analysis", str(analysis.pk))
    assert entry.case_id == analysis.image.case_id
    assert entry.patient_id == analysis.image.case.patient_id
    assert audit.audit_chain_verify().intact


def test_a_list_filtered_by_patient_keeps_the_identifier_out_of_the_log(nurse) -> None:
    api_client_with("read").get("/api/v1/analyses", {"patient": "MRN-SECRET-4711"})
    [entry] = api_calls()
    assert entry.detail == {"endpoint": "api-analyses", "method": "GET", "status": 200}
    assert "MRN-SECRET" not in repr(AuditEntry.objects.values())


def test_a_submission_has_its_call_and_its_upload_entry() -> None:
    form = {"image": io.BytesIO(jpeg_bytes()), "body_part": "arm", "stage": "early", "patient_id": "MRN-9"}
    body = api_client_with("submit").post("/api/v1/analyses", form, format="multipart").json()
    [call] = api_calls()
    assert call.detail["status"] == 202
    assert (call.object_type, call.object_id) == ("analysis", str(body["id"]))
    assert AuditEntry.objects.filter(action=AuditEntry.Action.UPLOAD).count() == 1


@pytest.mark.parametrize(
    ("authorization", "label"),
    [(None, "no token"), ("Bearer mpx_wrong-token-of-the-right-length", "unknown token")],
)
def test_failed_authentication_is_audited_as_denied_without_the_token(authorization, label) -> None:
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    assert client.get("/api/v1/stats").status_code == 401
    [entry] = api_calls()
    assert (entry.outcome, entry.actor_label, entry.api_client_id) == ("denied", label, None)
    assert entry.detail == {"endpoint": "api-stats", "method": "GET", "status": 401}
    assert "wrong-token" not in repr(AuditEntry.objects.values())


def test_a_missing_scope_and_the_rate_limit_are_denied_and_a_missing_object_failed(settings) -> None:
    settings.MPOX_API_RATE = "3/min"
    client = api_client_with("read")
    statuses = [
        client.get("/api/v1/stats").status_code,
        client.get("/api/v1/analyses/424242").status_code,
        client.get("/api/v1/analyses").status_code,
        client.get("/api/v1/analyses").status_code,
        client.get("/api/v1/analyses").status_code,
    ]
    assert statuses == [403, 404, 200, 429, 429]  # every call counts against the rate, the refused one too
    # Past the rate, only the period's first refusal is audited.
    assert [(entry.outcome, entry.detail["status"]) for entry in api_calls()] == [
        ("denied", 403),
        ("failed", 404),
        ("success", 200),
        ("denied", 429),
    ]
    assert api_calls()[1].detail["object_id"] == 424242


def test_the_schema_and_docs_are_not_audited() -> None:
    APIClient().get("/api/v1/schema")
    APIClient().get("/api/v1/docs")
    assert api_calls() == []
