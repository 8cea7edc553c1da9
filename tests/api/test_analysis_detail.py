from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from rest_framework.test import APIClient

from tests.api.conftest import api_client_with
from tests.diagnosis.helpers import case_for, finished_analysis, image_for

pytestmark = pytest.mark.django_db


def test_a_finished_analysis_as_json(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse)))
    analysis.heatmap_overlay.save("o.png", ContentFile(b"\x89PNG fake"))
    response = api_client_with("read", "photos").get(f"/api/v1/analyses/{analysis.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == analysis.pk
    assert body["case_id"] == analysis.image.case_id
    assert body["status"] == "done"
    assert body["label"] == "monkeypox"
    assert body["review"] is None
    assert body["error"] is None
    assert body["heatmap_url"].endswith(f"/api/v1/analyses/{analysis.pk}/heatmap")


def test_the_heatmap_is_served_as_png_with_nosniff(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse)))
    analysis.heatmap_overlay.save("o.png", ContentFile(b"\x89PNG fake"))
    response = api_client_with("read", "photos").get(f"/api/v1/analyses/{analysis.pk}/heatmap")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.getvalue() == b"\x89PNG fake"


def test_errors_are_problem_json(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse)))
    for client, url, status in [
        (APIClient(), f"/api/v1/analyses/{analysis.pk}", 401),
        (api_client_with("submit"), f"/api/v1/analyses/{analysis.pk}", 403),
        (api_client_with("read"), "/api/v1/analyses/999999", 404),
        (api_client_with("read", "photos"), f"/api/v1/analyses/{analysis.pk}/heatmap", 404),
    ]:
        response = client.get(url)
        assert response.status_code == status, url
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["status"] == status
        assert response.json()["title"]
