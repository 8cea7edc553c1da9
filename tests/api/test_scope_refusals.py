"""A client lacking a scope is answered 403 every time (429 past its rate), but only the first refusal per scope and
period is audited, as is only the first 429 of a client past its rate."""

from __future__ import annotations

import logging
import time

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile

from diagnosis import audit
from diagnosis.models import ApiClient, AuditEntry
from tests.api.conftest import api_client_with
from tests.diagnosis.helpers import case_for, finished_analysis, image_for

pytestmark = pytest.mark.django_db


def api_calls() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=AuditEntry.Action.API_CALL).order_by("seq"))


@pytest.fixture
def heatmap(nurse) -> str:
    analysis = finished_analysis(image_for(case_for(nurse)))
    analysis.heatmap_overlay.save("o.png", ContentFile(b"\x89PNG fake"))
    return f"/api/v1/analyses/{analysis.pk}/heatmap"


def test_repeated_refusals_are_403_naming_the_scope_but_audited_and_logged_once(heatmap, caplog) -> None:
    reader = api_client_with("read")
    with caplog.at_level(logging.WARNING, logger="django.request"):
        responses = [reader.get(heatmap) for _ in range(10)]
    assert [response.status_code for response in responses] == [403] * 10
    assert {response.json()["title"] for response in responses} == {
        "This API client lacks the photos scope this operation needs."
    }
    assert [record.status_code for record in caplog.records] == [403]  # type: ignore[attr-defined]
    [entry] = api_calls()
    assert (entry.outcome, entry.detail["endpoint"], entry.detail["status"]) == ("denied", "api-analysis-heatmap", 403)
    assert entry.detail["unaudited_refusals_for_s"] == 60  # MPOX_API_RATE's period
    assert audit.audit_chain_verify().intact


def test_refusals_count_against_the_clients_rate_and_past_it_are_429_audited_once(heatmap, settings) -> None:
    settings.MPOX_API_RATE = "3/min"
    reader = api_client_with("read")
    responses = [reader.get(heatmap) for _ in range(6)]
    assert [response.status_code for response in responses] == [403] * 3 + [429] * 3
    assert all(0 < int(response["Retry-After"]) <= 60 for response in responses[3:])
    assert [(entry.outcome, entry.detail["status"]) for entry in api_calls()] == [("denied", 403), ("denied", 429)]
    assert audit.audit_chain_verify().intact


def test_a_client_past_its_rate_is_audited_once_per_period(settings) -> None:
    settings.MPOX_API_RATE = "2/min"
    reader = api_client_with("read")
    assert [reader.get("/api/v1/analyses").status_code for _ in range(6)] == [200, 200] + [429] * 4
    assert [entry.detail["status"] for entry in api_calls()] == [200, 200, 429]
    assert api_calls()[-1].detail["unaudited_refusals_for_s"] == 60


def test_a_new_period_audits_again(heatmap) -> None:
    reader = api_client_with("read")
    assert [reader.get(heatmap).status_code for _ in range(3)] == [403] * 3
    cache.clear()  # the period's mark, as when it expires
    assert reader.get(heatmap).status_code == 403
    assert [entry.detail["status"] for entry in api_calls()] == [403, 403]


def test_the_next_audited_refusal_says_how_many_went_unaudited(heatmap, settings) -> None:
    settings.MPOX_API_RATE = "1000/s"  # a period of a second, to wait for
    reader = api_client_with("read")
    assert [reader.get(heatmap).status_code for _ in range(5)] == [403] * 5
    time.sleep(2.1)  # the database cache keeps expiry times to the second
    assert reader.get(heatmap).status_code == 403
    entries = api_calls()
    # Every refusal is audited or counted in a later entry; unless the machine stalled, four were counted.
    counted = [entry.detail.get("unaudited_refusals_before", 0) for entry in entries]
    assert len(entries) + sum(counted) == 6
    assert len(entries) < 6
    assert "unaudited_refusals_before" not in entries[0].detail
    assert entries[-1].detail["unaudited_refusals_before"] >= 1


def test_allowed_calls_and_other_scopes_and_clients_are_audited_as_before(heatmap) -> None:
    reader, other = api_client_with("read"), api_client_with("read")
    first, second = ApiClient.objects.order_by("pk")
    analysis = heatmap.removesuffix("/heatmap")
    statuses = [reader.get(heatmap).status_code for _ in range(3)] + [
        reader.get(analysis).status_code for _ in range(3)
    ]
    statuses += [reader.get("/api/v1/stats").status_code for _ in range(3)]
    statuses += [other.get(heatmap).status_code for _ in range(3)]
    assert statuses == [403] * 3 + [200] * 3 + [403] * 6
    audited = [(entry.api_client_id, entry.detail["endpoint"], entry.detail["status"]) for entry in api_calls()]
    assert audited == [
        (first.pk, "api-analysis-heatmap", 403),
        *[(first.pk, "api-analysis", 200)] * 3,
        (first.pk, "api-stats", 403),
        (second.pk, "api-analysis-heatmap", 403),
    ]


def test_fhir_refusals_are_audited_once_too(nurse) -> None:
    image = image_for(case_for(nurse))
    reader = api_client_with("read")
    assert [reader.get(f"/fhir/Binary/photo-{image.pk}").status_code for _ in range(5)] == [403] * 5
    assert [entry.detail["endpoint"] for entry in api_calls()] == ["fhir-binary"]
