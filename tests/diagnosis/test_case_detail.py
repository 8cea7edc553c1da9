from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import client_for
from tests.diagnosis.helpers import case_for, finished_analysis, image_for

pytestmark = pytest.mark.django_db


def test_the_nurse_sees_her_case_with_the_upload_form(nurse) -> None:
    case = case_for(nurse, "MRN-004821")
    response = client_for(nurse).get(f"/cases/{case.pk}/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "•••••4821" in body
    assert "MRN-004821" not in body
    assert 'accept="image/jpeg,image/png,image/webp"' in body
    assert 'capture="environment"' in body
    assert 'type="radio" name="body_part" value="close_range"' in body
    assert 'type="radio" name="stage" value="unknown"' in body


def test_a_case_with_a_queued_photo_polls_and_refreshes_without_javascript(nurse) -> None:
    case = case_for(nurse)
    image = image_for(case)
    body = client_for(nurse).get(f"/cases/{case.pk}/").content.decode()
    assert f'hx-get="/images/{image.pk}/status"' in body
    assert 'hx-trigger="every 1s"' in body
    assert '<noscript><meta http-equiv="refresh"' in body
    assert "Queued" in body


def test_a_finished_case_does_not_poll(nurse) -> None:
    case = case_for(nurse)
    finished_analysis(image_for(case))
    body = client_for(nurse).get(f"/cases/{case.pk}/").content.decode()
    assert "hx-trigger" not in body
    assert "http-equiv" not in body
    assert "Decision support, not a diagnosis." in body


def test_another_nurses_case_is_not_found(nurse, other_nurse) -> None:
    case = case_for(other_nurse)
    assert client_for(nurse).get(f"/cases/{case.pk}/").status_code == 404


def test_a_missing_case_is_not_found(nurse) -> None:
    assert client_for(nurse).get("/cases/999/").status_code == 404


def test_a_clinician_sees_any_case_and_may_upload(nurse, clinician) -> None:
    case = case_for(nurse)
    response = client_for(clinician).get(f"/cases/{case.pk}/")
    assert response.status_code == 200
    assert b'id="upload-form"' in response.content


def test_an_auditor_sees_the_case_without_the_upload_form(nurse, auditor) -> None:
    case = case_for(nurse)
    response = client_for(auditor).get(f"/cases/{case.pk}/")
    assert response.status_code == 200
    assert b'id="upload-form"' not in response.content


def test_anonymous_visitors_are_sent_to_log_in(nurse) -> None:
    case = case_for(nurse)
    response = Client().get(f"/cases/{case.pk}/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_the_patients_earlier_cases_are_listed_as_a_timeline(nurse, other_nurse) -> None:
    first = case_for(nurse, "MRN-004821")
    second = case_for(nurse, "MRN-004821")
    hidden = case_for(other_nurse, "MRN-004821")  # same patient, another nurse's case: not hers to see
    unrelated = case_for(nurse, "MRN-000001")
    body = client_for(nurse).get(f"/cases/{second.pk}/").content.decode()
    assert f'<a href="/cases/{first.pk}/">Case {first.pk}</a>' in body
    assert f'href="/cases/{hidden.pk}/"' not in body
    assert f'href="/cases/{unrelated.pk}/"' not in body
