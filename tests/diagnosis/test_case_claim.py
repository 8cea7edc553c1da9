from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from diagnosis import services
from tests.conftest import client_for, make_user
from tests.diagnosis.helpers import case_awaiting_review

pytestmark = pytest.mark.django_db


def test_opening_a_case_claims_it_for_the_clinician(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "K1", mpox=0.5)
    body = client_for(clinician).get(f"/cases/{case.pk}/").content.decode()
    case.refresh_from_db()
    assert case.claimed_by == clinician
    assert "You hold this case for review." in body


def test_a_colleague_sees_who_holds_the_claim_and_does_not_take_it(nurse, clinician) -> None:
    colleague = make_user("clinician", "dr-two")
    case = case_awaiting_review(nurse, "K2", mpox=0.5)
    client_for(clinician).get(f"/cases/{case.pk}/")
    body = client_for(colleague).get(f"/cases/{case.pk}/").content.decode()
    case.refresh_from_db()
    assert case.claimed_by == clinician
    assert "clinician is reviewing this case." in body


def test_a_claim_expires(nurse, clinician, settings) -> None:
    settings.MPOX_CLAIM_MINUTES = 20
    colleague = make_user("clinician", "dr-two")
    case = case_awaiting_review(nurse, "K3", mpox=0.5)
    start = timezone.now()
    services.case_claim(case=case, user=clinician, now=start)
    assert case.claim_holder(now=start + timedelta(minutes=19)) == clinician
    services.case_claim(case=case, user=colleague, now=start + timedelta(minutes=19))
    assert case.claimed_by == clinician
    assert case.claim_holder(now=start + timedelta(minutes=20)) is None
    services.case_claim(case=case, user=colleague, now=start + timedelta(minutes=20))
    assert case.claimed_by == colleague


def test_releasing_frees_the_case(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "K4", mpox=0.5)
    client = client_for(clinician)
    client.get(f"/cases/{case.pk}/")
    response = client.post(f"/cases/{case.pk}/release")
    assert response.status_code == 302
    assert response["Location"] == "/review/"
    case.refresh_from_db()
    assert case.claimed_by is None


def test_a_nurse_opening_a_case_claims_nothing_and_may_not_release(nurse) -> None:
    case = case_awaiting_review(nurse, "K5", mpox=0.5)
    client = client_for(nurse)
    client.get(f"/cases/{case.pk}/")
    case.refresh_from_db()
    assert case.claimed_by is None
    assert client.post(f"/cases/{case.pk}/release").status_code == 403
