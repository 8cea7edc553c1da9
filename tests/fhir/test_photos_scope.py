"""FHIR and the `photos` scope: Binary needs it; a report for a client without it carries no photo URLs."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.base import ContentFile

from diagnosis.models import AuditEntry
from tests.diagnosis.helpers import case_for, finished_analysis, image_for
from tests.fhir.conftest import fhir_json, system_with

pytestmark = pytest.mark.django_db


def media(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [resource for resource in report["contained"] if resource["resourceType"] == "Media"]


def test_a_read_only_client_is_refused_a_sensitive_photo_with_an_operation_outcome_and_audited(nurse) -> None:
    image = image_for(case_for(nurse), body_part="genital")
    assert image.is_sensitive
    outcome = fhir_json(system_with("read").get(f"/fhir/Binary/photo-{image.pk}"), 403)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"] == "This API client lacks the photos scope this operation needs."
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.API_CALL).get()
    assert entry.outcome == AuditEntry.Outcome.DENIED
    assert entry.detail["endpoint"] == "fhir-binary"
    assert entry.detail["status"] == 403


def test_read_and_photos_download_the_photo(nurse) -> None:
    image = image_for(case_for(nurse), body_part="genital")
    response = system_with("read", "photos").get(f"/fhir/Binary/photo-{image.pk}")
    assert response.status_code == 200
    with image.file.open("rb") as handle:
        assert response.getvalue() == handle.read()


def test_a_report_links_the_photo_and_heatmap_only_for_a_client_with_photos(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse), body_part="genital"))
    analysis.heatmap_overlay.save("o.png", ContentFile(b"\x89PNG fake"))
    path = f"/fhir/DiagnosticReport/{analysis.pk}"

    without = fhir_json(system_with("read").get(path))
    photo, heatmap = media(without)
    assert photo["content"] == {"contentType": "image/jpeg", "title": "Lesion photo"}
    assert "url" not in heatmap["content"]
    assert [item["link"]["reference"] for item in without["media"]] == ["#photo", "#heatmap"]
    assert "/fhir/Binary/" not in str(without)
    assert "/heatmap" not in str(without)

    viewer = system_with("read", "photos")
    photo, heatmap = media(fhir_json(viewer.get(path)))
    assert photo["content"]["url"] == f"http://testserver/fhir/Binary/photo-{analysis.image_id}"
    assert viewer.get(photo["content"]["url"]).status_code == 200
    assert viewer.get(heatmap["content"]["url"]).status_code == 200

    searched = fhir_json(system_with("read").get("/fhir/DiagnosticReport"))
    [entry] = searched["entry"]
    assert all("url" not in item["content"] for item in media(entry["resource"]))
