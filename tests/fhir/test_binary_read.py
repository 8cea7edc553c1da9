from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.diagnosis.helpers import case_for, image_for
from tests.fhir.conftest import fhir_json, system_with

pytestmark = pytest.mark.django_db


def test_the_photo_a_report_links_to_is_served_as_the_image(nurse) -> None:
    image = image_for(case_for(nurse), body_part="genital")
    response = system_with("read", "photos").get(f"/fhir/Binary/photo-{image.pk}")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, no-store"
    with image.file.open("rb") as handle:
        assert response.getvalue() == handle.read()


def test_other_ids_and_clients_without_the_scopes_are_refused(nurse) -> None:
    image = image_for(case_for(nurse))
    for client, path, status in [
        (APIClient(), f"/fhir/Binary/photo-{image.pk}", 401),
        (system_with("submit"), f"/fhir/Binary/photo-{image.pk}", 403),
        (system_with("photos"), f"/fhir/Binary/photo-{image.pk}", 403),
        (system_with("read", "photos"), "/fhir/Binary/photo-999999", 404),
        (system_with("read", "photos"), f"/fhir/Binary/heatmap-{image.pk}", 404),
        (system_with("read", "photos"), "/fhir/Binary/photo-", 404),
        (system_with("read", "photos"), "/fhir/Binary/photo-" + "9" * 40, 404),
        (system_with("read", "photos"), "/fhir/Binary/photo-²", 404),
    ]:
        outcome = fhir_json(client.get(path), status)
        assert outcome["resourceType"] == "OperationOutcome", path
