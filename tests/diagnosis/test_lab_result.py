from __future__ import annotations

import pytest

from diagnosis.models import Case, LabResult
from tests.conftest import client_for, make_user
from tests.diagnosis.helpers import case_awaiting_review

pytestmark = pytest.mark.django_db

RESULT = {"pcr": "positive", "collected_on": "2026-03-01", "sample_reference": "LAB-2026-0042"}


def post_result(user, case: Case, **fields: object):
    return client_for(user).post(f"/cases/{case.pk}/lab-results", {**RESULT, "version": case.version, **fields})


def test_a_clinician_records_a_pcr_result_and_the_case_closes(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "L1", mpox=0.8)
    response = post_result(clinician, case)
    assert response.status_code == 302
    assert response["Location"] == f"/cases/{case.pk}/#lab"
    result = LabResult.objects.get()
    assert (result.pcr, str(result.collected_on), result.sample_reference) == (
        "positive",
        "2026-03-01",
        "LAB-2026-0042",
    )
    case.refresh_from_db()
    assert case.status == Case.Status.CLOSED
    body = client_for(nurse).get(f"/cases/{case.pk}/").content.decode()
    assert "PCR positive" in body
    assert "Ground truth: <strong>mpox</strong> (pcr)" in body


def test_a_result_needs_a_date_and_a_sample_reference(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "L2", mpox=0.8)
    response = post_result(clinician, case, collected_on="", sample_reference="")
    assert response.status_code == 400
    body = response.content.decode()
    assert "Enter the date the sample was collected." in body
    assert "Enter the sample reference." in body
    assert not LabResult.objects.exists()


def test_a_stale_version_is_refused(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "L3", mpox=0.8)
    post_result(clinician, case)
    response = post_result(clinician, case, pcr="negative")  # the version the page showed before
    assert response.status_code == 409
    assert "recorded a lab result (PCR positive)" in response.content.decode()
    assert LabResult.objects.count() == 1


@pytest.mark.parametrize("role", ["nurse", "auditor", "admin"])
def test_only_clinicians_record_lab_results(nurse, role) -> None:
    case = case_awaiting_review(nurse, "L4", mpox=0.8)
    user = nurse if role == "nurse" else make_user(role)
    assert post_result(user, case).status_code == 403
    assert not LabResult.objects.exists()


def test_another_nurses_case_is_not_found(nurse, other_nurse) -> None:
    case = case_awaiting_review(other_nurse, "L5", mpox=0.8)
    assert post_result(nurse, case).status_code == 404
