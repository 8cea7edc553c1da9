from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from diagnosis import api_auth
from tests.diagnosis.helpers import case_for, finished_analysis, image_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader() -> APIClient:
    _, token = api_auth.api_client_create("ehr", ["read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_it_lists_and_filters(nurse, reader) -> None:
    done = finished_analysis(image_for(case_for(nurse, "MRN-1")))
    queued = image_for(case_for(nurse, "MRN-2")).analyses.get()
    ids = lambda url: [row["id"] for row in reader.get(url).json()["results"]]  # noqa: E731
    assert ids("/api/v1/analyses") == [queued.pk, done.pk]
    assert ids("/api/v1/analyses?patient=MRN-1") == [done.pk]
    assert ids("/api/v1/analyses?status=queued") == [queued.pk]
    assert ids("/api/v1/analyses?label=monkeypox") == [done.pk]
    today = done.queued_at.date().isoformat()
    assert set(ids(f"/api/v1/analyses?date={today}")) == {done.pk, queued.pk}
    assert ids("/api/v1/analyses?date=2001-01-01") == []


def test_it_pages_with_a_cursor(nurse, reader, monkeypatch) -> None:
    from diagnosis.api import AnalysisCursor

    monkeypatch.setattr(AnalysisCursor, "page_size", 1)
    first = image_for(case_for(nurse, "MRN-1")).analyses.get()
    second = image_for(case_for(nurse, "MRN-2")).analyses.get()
    page = reader.get("/api/v1/analyses").json()
    assert [row["id"] for row in page["results"]] == [second.pk]
    page = reader.get(page["next"]).json()
    assert [row["id"] for row in page["results"]] == [first.pk]
    assert page["next"] is None


def test_bad_filters_are_400_with_field_errors(reader) -> None:
    response = reader.get("/api/v1/analyses?status=lost&date=yesterday")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert "status" in response.json()["errors"]


def test_an_impossible_date_is_400_not_500(reader) -> None:
    response = reader.get("/api/v1/analyses?date=2026-02-30")
    assert response.status_code == 400
    assert "date" in response.json()["errors"]
