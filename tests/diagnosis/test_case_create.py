from __future__ import annotations

import pytest
from django.test import Client

from diagnosis.models import Case, Patient
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def test_a_nurse_starts_a_case_for_a_new_patient(nurse) -> None:
    response = client_for(nurse).post("/cases/new", {"hospital_identifier": " MRN-004821 "})
    case = Case.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/cases/{case.pk}/"
    assert case.created_by == nurse
    assert case.status == Case.Status.AWAITING_ANALYSIS
    assert case.patient.hospital_identifier == "MRN-004821"
    assert case.patient.created_by == nurse


def test_a_second_case_reuses_the_patient(nurse) -> None:
    client = client_for(nurse)
    client.post("/cases/new", {"hospital_identifier": "MRN-004821"})
    client.post("/cases/new", {"hospital_identifier": "MRN-004821"})
    assert Patient.objects.count() == 1
    assert Case.objects.count() == 2


@pytest.mark.parametrize("identifier", ["", "   ", "<script>", "x" * 65])
def test_it_rejects_a_bad_identifier(nurse, identifier: str) -> None:
    response = client_for(nurse).post("/cases/new", {"hospital_identifier": identifier})
    assert response.status_code == 400
    assert b'class="error"' in response.content
    assert not Case.objects.exists()


def test_an_auditor_cannot_start_a_case(auditor) -> None:
    response = client_for(auditor).post("/cases/new", {"hospital_identifier": "MRN-1"})
    assert response.status_code == 403
    assert not Case.objects.exists()


def test_anonymous_visitors_cannot_start_a_case() -> None:
    response = Client().post("/cases/new", {"hospital_identifier": "MRN-1"})
    assert response.status_code == 302
    assert not Case.objects.exists()


def test_it_only_accepts_post(nurse) -> None:
    assert client_for(nurse).get("/cases/new").status_code == 405
