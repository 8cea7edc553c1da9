from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from diagnosis.models import Analysis, AuditEntry
from tests.diagnosis.helpers import case_for, finished_analysis, image_for, review_for
from tests.fhir.conftest import fhir_json, system_with

pytestmark = pytest.mark.django_db

ALICE, BOB = "MRN-1000001", "MRN-2000002"


def ids(bundle: dict[str, Any]) -> list[int]:
    return [int(entry["resource"]["id"]) for entry in bundle.get("entry", [])]


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


@pytest.fixture
def reports(nurse, clinician) -> dict[str, Analysis]:
    """Alice: one preliminary, one final and one still queued; Bob: one preliminary."""
    alice = case_for(nurse, ALICE)
    preliminary = finished_analysis(image_for(alice))
    reviewed_case = case_for(nurse, ALICE)
    final = finished_analysis(image_for(reviewed_case))
    review_for(reviewed_case, clinician)
    queued = image_for(case_for(nurse, ALICE)).analyses.get()
    bob = finished_analysis(image_for(case_for(nurse, BOB)))
    return {"preliminary": preliminary, "final": final, "queued": queued, "bob": bob}


def search(client: APIClient, query: str, status: int = 200) -> dict[str, Any]:
    return fhir_json(client.get("/fhir/DiagnosticReport" + query), status)


def post_search(client: APIClient, url: str, params: dict[str, str]) -> Any:
    """FHIR's search by POST: the parameters as a form-encoded body."""
    return client.post(url, urlencode(params), content_type="application/x-www-form-urlencoded")


def test_it_searches_by_patient_and_status(reports) -> None:
    reader = system_with("read")
    bundle = search(reader, f"?patient={ALICE}")
    assert (bundle["resourceType"], bundle["type"], bundle["total"]) == ("Bundle", "searchset", 3)
    assert ids(bundle) == [reports["queued"].pk, reports["final"].pk, reports["preliminary"].pk]  # newest first
    first = bundle["entry"][0]
    assert first["fullUrl"] == f"http://testserver/fhir/DiagnosticReport/{reports['queued'].pk}"
    assert first["search"] == {"mode": "match"}

    assert ids(search(reader, f"?patient={ALICE}&status=final")) == [reports["final"].pk]
    assert ids(search(reader, f"?patient={ALICE}&status=final,registered")) == [
        reports["queued"].pk,
        reports["final"].pk,
    ]
    assert ids(search(reader, "?status=preliminary")) == [reports["bob"].pk, reports["preliminary"].pk]
    assert [entry["resource"]["status"] for entry in search(reader, "")["entry"]] == [
        "preliminary",
        "registered",
        "final",
        "preliminary",
    ]


def test_an_unknown_patient_is_an_empty_bundle(reports) -> None:
    bundle = search(system_with("read"), "?patient=MRN-nobody")
    assert bundle["total"] == 0
    assert "entry" not in bundle


def test_pages_follow_the_next_link(reports) -> None:
    reader = system_with("read")
    page = search(reader, "?_count=3")
    assert page["total"] == 4
    assert len(page["entry"]) == 3
    second = fhir_json(reader.get(links(page)["next"]))
    assert ids(second) == [reports["preliminary"].pk]
    assert "next" not in links(second)
    assert ids(page) + ids(second) == ids(search(reader, ""))


def test_a_post_search_keeps_the_patient_out_of_every_url(reports) -> None:
    reader = system_with("read")
    response = post_search(reader, "/fhir/DiagnosticReport/_search", {"patient": ALICE, "_count": "2"})
    page = fhir_json(response)
    assert page["total"] == 3
    assert ids(page) == [reports["queued"].pk, reports["final"].pk]
    assert ALICE not in " ".join(links(page).values())
    assert links(page)["next"] == f"http://testserver/fhir/DiagnosticReport/_search?_cursor={reports['final'].pk}"
    rest = fhir_json(post_search(reader, links(page)["next"], {"patient": ALICE, "_count": "2"}))
    assert ids(rest) == [reports["preliminary"].pk]


def test_the_patient_identifier_is_neither_logged_nor_audited(reports, caplog) -> None:
    with caplog.at_level(logging.DEBUG):
        search(system_with("read"), f"?patient={ALICE}")
        search(system_with("read"), "?patient=MRN-nobody&status=bogus", 400)
    assert caplog.records  # the request was logged about (the 400 at least), just not with the identifier
    assert not any(ALICE in record.getMessage() or "MRN-nobody" in record.getMessage() for record in caplog.records)
    calls = AuditEntry.objects.filter(action=AuditEntry.Action.API_CALL)
    assert [entry.detail["endpoint"] for entry in calls] == ["fhir-diagnostic-reports"] * 2  # audited, like the API
    for entry in calls:
        assert ALICE not in str(entry.detail)
        assert "MRN-nobody" not in str(entry.detail)


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("?status=bogus", "status"),
        ("?subject=Patient/1", "subject"),
        ("?_count=abc", "_count"),
        ("?_count=0", "_count"),
        ("?_count=²", "_count"),
        ("?_cursor=" + "9" * 40, "_cursor"),
        (f"?patient={ALICE}&patient={BOB}", "patient"),
        ("?patient=", "patient"),
    ],
)
def test_bad_search_parameters_are_a_400_operation_outcome(reports, query: str, says: str) -> None:
    outcome = search(system_with("read"), query, 400)
    assert outcome["resourceType"] == "OperationOutcome"
    [issue] = outcome["issue"]
    assert issue["code"] == "invalid"
    assert issue["diagnostics"].startswith(says + ":")


def test_bad_parameters_in_a_post_search_body_are_refused_too(reports) -> None:
    response = post_search(system_with("read"), "/fhir/DiagnosticReport/_search", {"patient": ALICE, "name": "A"})
    [issue] = fhir_json(response, 400)["issue"]
    assert issue["diagnostics"] == "name: not a search parameter of this server."
    response = post_search(system_with("read"), "/fhir/DiagnosticReport/_search", {"patient": "MRN\x00"})
    [issue] = fhir_json(response, 400)["issue"]
    assert "NUL" in issue["diagnostics"]
    multipart = system_with("read").post("/fhir/DiagnosticReport/_search", {"patient": ALICE})
    assert fhir_json(multipart, 415)["issue"][0]["code"] == "not-supported"


def test_searching_needs_the_read_scope() -> None:
    assert search(APIClient(), "", 401)["issue"][0]["code"] == "login"
    assert search(system_with("submit"), "", 403)["issue"][0]["code"] == "forbidden"
    response = post_search(system_with("stats"), "/fhir/DiagnosticReport/_search", {"patient": ALICE})
    assert fhir_json(response, 403)["issue"][0]["code"] == "forbidden"


def test_a_page_costs_the_same_queries_however_many_reports_it_holds(nurse, clinician) -> None:
    def queries_for_a_search() -> int:
        reader = system_with("read")
        with CaptureQueriesContext(connection) as captured:
            search(reader, "?_count=100")
        return len(captured)

    def add_reviewed_case(identifier: str) -> None:
        case = case_for(nurse, identifier)
        finished_analysis(image_for(case))
        review_for(case, clinician)

    add_reviewed_case("MRN-1")
    few = queries_for_a_search()
    for number in range(2, 7):
        add_reviewed_case(f"MRN-{number}")
    assert queries_for_a_search() == few
