"""Choosing a patient for the access report: by hospital identifier, in a posted form, never in a URL."""

from __future__ import annotations

import pytest

from diagnosis.models import AuditEntry
from tests.conftest import client_for
from tests.diagnosis.audit_helpers import last_entry
from tests.diagnosis.helpers import case_for

pytestmark = pytest.mark.django_db


def test_the_page_asks_for_a_hospital_identifier_in_a_posted_form(auditor) -> None:
    response = client_for(auditor).get("/audit/patients/")
    assert response.status_code == 200
    body = response.content.decode()
    assert '<form method="post" action="/audit/patients/find"' in body
    assert "Patient&#x27;s hospital identifier" in body
    assert last_entry(AuditEntry.Action.AUDIT_VIEW).detail == {"page": "patient_find"}


def test_an_identifier_leads_to_the_patients_report_by_row_id(nurse, admin_user) -> None:
    case = case_for(nurse, "MRN-004821")
    response = client_for(admin_user).post("/audit/patients/find", {"hospital_identifier": "MRN-004821"})
    assert response.status_code == 302
    assert response["Location"] == f"/audit/patients/{case.patient_id}/"


@pytest.mark.parametrize(
    ("identifier", "error"),
    [("MRN-000000", "No patient has this hospital identifier."), ("", "Enter the patient&#x27;s hospital identifier.")],
)
def test_an_unknown_or_missing_identifier_is_a_form_error(auditor, identifier, error) -> None:
    response = client_for(auditor).post("/audit/patients/find", {"hospital_identifier": identifier})
    assert response.status_code == 400
    assert error in response.content.decode()


@pytest.mark.parametrize("role", ["nurse", "clinician"])
def test_other_roles_are_refused(role, request) -> None:
    client = client_for(request.getfixturevalue(role))
    assert client.get("/audit/patients/").status_code == 403
    assert client.post("/audit/patients/find", {"hospital_identifier": "MRN-1"}).status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client) -> None:
    assert client.get("/audit/patients/")["Location"] == "/accounts/login/?next=/audit/patients/"
    assert client.post("/audit/patients/find", {"hospital_identifier": "MRN-1"})["Location"].startswith(
        "/accounts/login/"
    )
