"""FHIR calls without a valid token share the REST API's per-address rate: 401 up to it, then a 429 OperationOutcome."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from diagnosis.models import AuditEntry
from tests.diagnosis.helpers import case_for, finished_analysis, image_for
from tests.fhir.conftest import fhir_json, system_with

pytestmark = pytest.mark.django_db

RATE = 3


@pytest.fixture(autouse=True)
def _low_rate(settings) -> None:
    settings.MPOX_API_UNAUTHENTICATED_RATE = f"{RATE}/min"


def test_a_stranger_gets_401_up_to_the_rate_then_a_throttled_outcome_and_few_audit_entries() -> None:
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION="Bearer mpx_wrong-token-of-the-right-length")
    for _ in range(RATE):
        [issue] = fhir_json(stranger.get("/fhir/DiagnosticReport/1"), 401)["issue"]
        assert issue["code"] == "login"
    for _ in range(10):
        response = stranger.get("/fhir/DiagnosticReport?status=final")
        [issue] = fhir_json(response, 429)["issue"]
        assert issue["code"] == "throttled"
        assert issue["diagnostics"].startswith("Too many calls without a valid token from this address.")
        assert 0 < int(response["Retry-After"]) <= 60
    entries = AuditEntry.objects.filter(action=AuditEntry.Action.API_CALL).order_by("seq")
    assert [entry.detail["status"] for entry in entries] == [401] * RATE + [429]


def test_a_valid_system_from_the_same_address_reads_on_and_the_metadata_stays_open(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse)))
    stranger = APIClient()
    statuses = [stranger.post("/fhir/DiagnosticReport/_search").status_code for _ in range(RATE + 1)]
    assert statuses == [401] * RATE + [429]
    report = fhir_json(system_with("read").get(f"/fhir/DiagnosticReport/{analysis.pk}"))
    assert report["id"] == str(analysis.pk)
    fhir_json(stranger.get("/fhir/metadata"))
