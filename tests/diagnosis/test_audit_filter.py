"""The audit log's filter form (POST): a hospital identifier becomes the patient's row id in the list's URL."""

from __future__ import annotations

import pytest

from diagnosis.models import AuditEntry
from tests.conftest import client_for
from tests.diagnosis.audit_helpers import last_entry
from tests.diagnosis.helpers import case_for

pytestmark = pytest.mark.django_db


def test_an_identifier_is_resolved_to_the_patient_row_and_never_put_in_the_url(nurse, auditor) -> None:
    case = case_for(nurse, "MRN-004821")
    response = client_for(auditor).post(
        "/audit/filter",
        {"hospital_identifier": " MRN-004821 ", "user": "nurse", "action": "case_view", "date_from": "2026-03-01"},
    )
    assert response.status_code == 302
    assert response["Location"] == (
        f"/audit/?user=nurse&patient={case.patient_id}&action=case_view&date_from=2026-03-01"
    )
    assert "4821" not in response["Location"]


def test_the_chosen_patient_is_kept_when_other_filters_change(nurse, auditor) -> None:
    case = case_for(nurse)
    response = client_for(auditor).post("/audit/filter", {"patient": case.patient_id, "case": case.pk})
    assert response["Location"] == f"/audit/?patient={case.patient_id}&case={case.pk}"
    page = client_for(auditor).get(response["Location"]).content.decode()
    assert f"Patient <strong>{case.patient.masked_identifier}</strong>" in page
    assert f'href="?case={case.pk}">any patient</a>' in page


def test_an_unknown_identifier_is_a_form_error(auditor) -> None:
    response = client_for(auditor).post("/audit/filter", {"hospital_identifier": "MRN-000000"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "No patient has this hospital identifier." in body
    assert 'value="MRN-000000"' in body  # shown back in the form, to correct it


def test_a_bad_date_is_a_form_error(auditor) -> None:
    response = client_for(auditor).post("/audit/filter", {"date_to": "yesterday"})
    assert response.status_code == 400
    assert "Enter a valid date." in response.content.decode()


def test_other_roles_are_refused(nurse, clinician, client) -> None:
    assert client.post("/audit/filter", {"user": "x"})["Location"].startswith("/accounts/login/")
    for user in (nurse, clinician):
        assert client_for(user).post("/audit/filter", {"hospital_identifier": "MRN-1"}).status_code == 403
    assert last_entry(AuditEntry.Action.AUDIT_VIEW).outcome == AuditEntry.Outcome.DENIED


def test_it_only_takes_posts(auditor) -> None:
    assert client_for(auditor).get("/audit/filter").status_code == 405
