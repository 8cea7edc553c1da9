"""The `photos` scope: the heatmap overlay shows the photo, so `read` alone does not download it."""

from __future__ import annotations

import importlib
import io

import pytest
from django.apps import apps
from django.core.files.base import ContentFile
from django.core.management import call_command

from diagnosis.models import ApiClient, AuditEntry
from tests.api.conftest import api_client_with
from tests.api.test_schema import schema
from tests.diagnosis.helpers import case_for, finished_analysis, image_for

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("diagnosis.migrations.0011_api_client_photos_scope")


def test_a_read_only_client_is_refused_the_heatmap_with_the_missing_scope_named_and_audited(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse), body_part="genital"))
    analysis.heatmap_overlay.save("o.png", ContentFile(b"\x89PNG fake"))
    response = api_client_with("read").get(f"/api/v1/analyses/{analysis.pk}/heatmap")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["title"] == "This API client lacks the photos scope this operation needs."
    assert b"PNG" not in response.content
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.API_CALL).get()
    assert entry.outcome == AuditEntry.Outcome.DENIED
    assert entry.detail["endpoint"] == "api-analysis-heatmap"
    assert entry.detail["status"] == 403

    both_missing = api_client_with("submit").get(f"/api/v1/analyses/{analysis.pk}/heatmap")
    assert both_missing.json()["title"] == "This API client lacks the read and photos scopes this operation needs."
    assert api_client_with("photos").get(f"/api/v1/analyses/{analysis.pk}/heatmap").status_code == 403


def test_read_and_photos_download_the_heatmap(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse), body_part="genital"))
    analysis.heatmap_overlay.save("o.png", ContentFile(b"\x89PNG fake"))
    response = api_client_with("read", "photos").get(f"/api/v1/analyses/{analysis.pk}/heatmap")
    assert response.status_code == 200
    assert response.getvalue() == b"\x89PNG fake"


def test_a_client_without_photos_is_sent_no_heatmap_url_in_the_detail_or_the_list(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse), body_part="genital"))
    analysis.heatmap_overlay.save("o.png", ContentFile(b"\x89PNG fake"))
    reader, viewer = api_client_with("read"), api_client_with("read", "photos")
    detail, listed = f"/api/v1/analyses/{analysis.pk}", "/api/v1/analyses"

    assert reader.get(detail).json()["heatmap_url"] is None
    assert [row["heatmap_url"] for row in reader.get(listed).json()["results"]] == [None]
    assert "/heatmap" not in reader.get(detail).content.decode() + reader.get(listed).content.decode()

    url = viewer.get(detail).json()["heatmap_url"]
    assert url == f"http://testserver/api/v1/analyses/{analysis.pk}/heatmap"
    assert [row["heatmap_url"] for row in viewer.get(listed).json()["results"]] == [url]
    assert viewer.get(url).status_code == 200


def test_the_migration_grants_photos_to_clients_that_read_and_to_no_other() -> None:
    for name, given in [("ehr", ["read", "submit"]), ("lab", ["lab"]), ("viewer", ["photos", "read"])]:
        ApiClient.objects.create(name=name, scopes=given, token_prefix=f"mpx_{name}", token_sha256="0" * 64)
    MIGRATION.grant_photos(apps, None)
    granted = dict(ApiClient.objects.values_list("name", "scopes"))
    assert granted == {"ehr": ["photos", "read", "submit"], "lab": ["lab"], "viewer": ["photos", "read"]}
    MIGRATION.revoke_photos(apps, None)
    revoked = dict(ApiClient.objects.values_list("name", "scopes"))
    assert revoked == {"ehr": ["read", "submit"], "lab": ["lab"], "viewer": ["read"]}


def test_new_clients_get_photos_only_when_given_it() -> None:
    call_command("create_api_client", "results", "--scope", "read", stdout=io.StringIO())
    call_command("create_api_client", "pacs", "--scope", "read", "--scope", "photos", stdout=io.StringIO())
    assert ApiClient.objects.get(name="results").scopes == ["read"]
    assert ApiClient.objects.get(name="pacs").scopes == ["photos", "read"]


def test_the_schema_says_the_heatmap_needs_photos() -> None:
    document = schema()
    heatmap = document["paths"]["/api/v1/analyses/{id}/heatmap"]["get"]
    assert "`read` and `photos` scopes" in heatmap["description"]
    assert "photos" in document["components"]["securitySchemes"]["bearer"]["description"]
    heatmap_url = document["components"]["schemas"]["AnalysisOutput"]["properties"]["heatmap_url"]
    assert heatmap_url["nullable"] is True
    assert "null for a client without the `photos` scope" in heatmap_url["description"]
