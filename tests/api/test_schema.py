from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import resolve
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from diagnosis import api
from diagnosis.models import ApiClient

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("/api/v1/analyses", "get"),
    ("/api/v1/analyses", "post"),
    ("/api/v1/analyses/{id}", "get"),
    ("/api/v1/analyses/{id}/heatmap", "get"),
    ("/api/v1/cases/{case_id}/lab-results", "post"),
    ("/api/v1/stats", "get"),
}


def schema() -> dict:
    response = APIClient().get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_valid_openapi_3_and_needs_no_token() -> None:
    document = schema()
    assert document["openapi"].startswith("3.")
    validate_schema(document)
    assert Client().get("/api/v1/schema").content.startswith(b"openapi: 3.")  # YAML by default


def test_every_endpoint_is_documented_with_bearer_security_and_problem_errors() -> None:
    document = schema()
    found = {(path, method) for path, item in document["paths"].items() for method in item}
    assert found == OPERATIONS
    assert document["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer", "description": api.API_TOKEN_DESCRIPTION}
    }
    for path, method in OPERATIONS:
        operation = document["paths"][path][method]
        assert operation["security"] == [{"bearer": []}], path
        for code in ("401", "403", "429"):
            assert list(operation["responses"][code]["content"]) == ["application/problem+json"], (path, code)


def test_the_token_says_what_each_scope_allows() -> None:
    description = schema()["components"]["securitySchemes"]["bearer"]["description"]
    for scope, allows in ApiClient.SCOPES.items():
        assert f"{scope} ({allows})" in description


def test_request_bodies_are_documented() -> None:
    document = schema()
    submit = document["paths"]["/api/v1/analyses"]["post"]["requestBody"]["content"]
    assert list(submit) == ["multipart/form-data"]
    form = document["components"]["schemas"][submit["multipart/form-data"]["schema"]["$ref"].split("/")[-1]]
    assert form["properties"]["image"] == {
        "type": "string",
        "format": "binary",
        "description": form["properties"]["image"]["description"],
    }
    assert set(form["required"]) == {"image", "body_part", "stage", "patient_id"}
    lab = document["paths"]["/api/v1/cases/{case_id}/lab-results"]["post"]
    assert "application/json" in lab["requestBody"]["content"]
    assert {"200", "201", "404", "409", "422"} <= set(lab["responses"])
    heatmap = document["paths"]["/api/v1/analyses/{id}/heatmap"]["get"]["responses"]["200"]["content"]
    assert list(heatmap) == ["image/png"]


def test_every_api_route_is_in_the_schema() -> None:
    """A new endpoint without a schema entry fails here."""
    documented = {resolve(re.sub(r"{\w+}", "1", path)).url_name for path in schema()["paths"]}
    routes = {pattern.name for pattern in api.urlpatterns} - {"api-schema", "api-docs", "api-not-found"}
    assert documented == routes


def test_the_docs_page_loads_only_files_this_site_serves() -> None:
    client = Client()
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert "swagger-ui" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the docs page must work offline"
    assets = re.findall(r"""(?:src|href)=["'](/[^"']+)["']""", html)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert response.getvalue(), asset
    assert "/api/v1/schema" in html
