from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from diagnosis.models import AuditEntry
from tests.api.conftest import api_client_with

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete", "options"])
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing",
        "/api/v1/analyses/",
        "/api/v1/analyses/abc",
        "/api/v1/cases/1",
        "/api/v1/cases/1%0A/lab-results",
    ],
)
def test_an_unrouted_path_is_a_404_problem_whatever_the_method(method, path) -> None:
    response = getattr(api_client_with("read"), method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["title"] == "There is no such API endpoint; see /api/v1/docs."


def test_an_unrouted_path_with_a_bad_token_is_still_401() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer mpx_not-a-token")
    assert client.get("/api/v1/nothing").status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("delete", "/api/v1/analyses", "GET, HEAD, POST"),
        ("put", "/api/v1/analyses/1", "GET, HEAD"),
        ("post", "/api/v1/analyses/1/heatmap", "GET, HEAD"),
        ("get", "/api/v1/cases/1/lab-results", "POST"),
        ("post", "/api/v1/stats", "GET, HEAD"),
    ],
)
def test_a_wrong_method_is_a_405_problem_naming_the_allowed_ones(method, path, allow) -> None:
    response = getattr(api_client_with("read", "submit", "lab", "stats", "photos"), method)(path)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/problem+json"
    assert f'"{method.upper()}"' in response.json()["title"]
    assert set(response["Allow"].split(", ")) == {*allow.split(", "), "OPTIONS"}
    entry = AuditEntry.objects.get(action=AuditEntry.Action.API_CALL)
    assert (entry.outcome, entry.detail["status"]) == ("failed", 405)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/stats", {"stage": "early", "stagee": "later"}, "stagee"),
        ("/api/v1/analyses", {"patient": "MRN-1", "page": "2"}, "page"),
        ("/api/v1/analyses/1", {"x": "1"}, "x"),
        ("/api/v1/analyses", {"status": ""}, "status"),
        ("/api/v1/stats", {"body_part": "arm\x00"}, None),
    ],
)
def test_unknown_empty_or_nul_query_parameters_are_400_problems(path, params, field) -> None:
    response = api_client_with("read", "stats").get(path, params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    if field:
        assert list(response.json()["errors"]) == [field]
