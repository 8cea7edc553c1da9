from __future__ import annotations

import pytest

from tests.conftest import client_for
from tests.diagnosis.helpers import case_awaiting_review, case_for

pytestmark = pytest.mark.django_db


def test_a_nurse_sees_her_own_cases_with_masked_identifiers(nurse, other_nurse) -> None:
    mine = case_for(nurse, "MRN-004821")
    theirs = case_for(other_nurse, "MRN-007777")
    response = client_for(nurse).get("/cases/")
    assert response.status_code == 200
    body = response.content.decode()
    assert f"/cases/{mine.pk}/" in body
    assert f"/cases/{theirs.pk}/" not in body
    assert "•••••4821" in body
    assert "MRN-004821" not in body
    assert "Start a case" in body


def test_a_clinician_sees_every_case(nurse, other_nurse, clinician) -> None:
    cases = [case_for(nurse, "A1"), case_for(other_nurse, "B2")]
    body = client_for(clinician).get("/cases/").content.decode()
    for case in cases:
        assert f"/cases/{case.pk}/" in body


def test_an_auditor_sees_cases_but_cannot_start_one(nurse, auditor) -> None:
    case = case_for(nurse)
    body = client_for(auditor).get("/cases/").content.decode()
    assert f"/cases/{case.pk}/" in body
    assert "Start a case" not in body


def test_a_nurse_sees_the_status_of_her_cases(nurse) -> None:
    case_awaiting_review(nurse, "MRN-1", mpox=0.5)
    assert "Awaiting review" in client_for(nurse).get("/cases/").content.decode()
