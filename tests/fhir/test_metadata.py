from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from diagnosis.models import AuditEntry
from tests.fhir.conftest import fhir_json

pytestmark = pytest.mark.django_db


def test_the_capability_statement_is_public_and_valid_r4() -> None:
    statement = fhir_json(APIClient().get("/fhir/metadata", HTTP_ACCEPT="application/json"))
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["format"] == ["json"]
    assert statement["implementation"]["url"] == "http://testserver/fhir"
    [rest] = statement["rest"]
    resources = {resource["type"]: resource for resource in rest["resource"]}
    assert set(resources) == {"DiagnosticReport", "Binary"}
    report = resources["DiagnosticReport"]
    assert {interaction["code"] for interaction in report["interaction"]} == {"read", "search-type"}
    assert {param["name"] for param in report["searchParam"]} == {"patient", "status", "_count"}
    assert "Bearer" in rest["security"]["description"]
    assert not AuditEntry.objects.exists()  # it serves no data


def test_other_methods_are_an_operation_outcome() -> None:
    outcome = fhir_json(APIClient().post("/fhir/metadata"), 405)
    assert outcome["issue"][0]["code"] == "not-supported"
