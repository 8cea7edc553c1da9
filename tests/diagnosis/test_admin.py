"""The Django admin pages render for every model, without ever linking a private file."""

from __future__ import annotations

from datetime import date

import pytest

from diagnosis import api_auth, services
from diagnosis.models import ApiClient
from tests.conftest import client_for
from tests.diagnosis.helpers import case_for, image_for

pytestmark = pytest.mark.django_db


def test_every_admin_page_renders_without_file_urls(nurse, admin_user, predictor) -> None:
    case = case_for(nurse, "MRN-004821")
    image = image_for(case)
    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)
    assert analysis is not None
    model_version = analysis.model_version
    assert model_version is not None
    client = client_for(admin_user)
    pages = [
        ("patient", case.patient.pk),
        ("case", case.pk),
        ("lesionimage", image.pk),
        ("analysis", analysis.pk),
        ("modelversion", model_version.pk),
    ]
    for name, pk in pages:
        for url in (f"/admin/diagnosis/{name}/", f"/admin/diagnosis/{name}/{pk}/change/"):
            response = client.get(url)
            assert response.status_code == 200, url
            assert "/private-files-are-not-served/" not in response.content.decode()
    changelist = client.get("/admin/diagnosis/patient/").content.decode()
    assert "•••••4821" in changelist
    assert "MRN-004821" not in changelist


def test_an_api_client_page_says_what_each_scope_allows(admin_user) -> None:
    client, _ = api_auth.api_client_create("ehr", ["read"])
    page = client_for(admin_user).get(f"/admin/diagnosis/apiclient/{client.pk}/change/")
    assert page.status_code == 200
    for scope, allows in ApiClient.SCOPES.items():
        assert f"{scope} ({allows})" in page.content.decode()  # the admin shows help texts as HTML


def test_a_nurse_cannot_use_the_admin(nurse) -> None:
    response = client_for(nurse).get("/admin/diagnosis/patient/")
    assert response.status_code == 302


def test_reviews_and_lab_results_are_read_only_in_the_admin(nurse, clinician, admin_user) -> None:
    case = case_for(nurse)
    review = services.review_record(
        case=case, reviewer=clinician, expected_version=0, label="mpox", confidence="sure", disposition="test_only"
    )
    result = services.lab_result_record(
        case=case,
        recorded_by=clinician,
        expected_version=1,
        pcr="positive",
        collected_on=date(2026, 3, 1),
        sample_reference="LAB-1",
    )
    client = client_for(admin_user)
    for name, pk in (("review", review.pk), ("labresult", result.pk)):
        assert client.get(f"/admin/diagnosis/{name}/").status_code == 200
        page = client.get(f"/admin/diagnosis/{name}/{pk}/change/")
        assert page.status_code == 200
        assert 'name="_save"' not in page.content.decode()
        assert client.post(f"/admin/diagnosis/{name}/{pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/diagnosis/review/add/").status_code == 403
