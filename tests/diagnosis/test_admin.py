"""The Django admin pages render for every model, without ever linking a private file."""

from __future__ import annotations

import pytest

from diagnosis import services
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


def test_a_nurse_cannot_use_the_admin(nurse) -> None:
    response = client_for(nurse).get("/admin/diagnosis/patient/")
    assert response.status_code == 302
