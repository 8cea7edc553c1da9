"""Helpers for the FHIR tests: every resource the server answers goes through a real R4 validator."""

from __future__ import annotations

import itertools
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from rest_framework.test import APIClient

from diagnosis import api_auth
from tests.api.conftest import _clear_throttle_cache, private_storage

__all__ = ["_clear_throttle_cache", "fhir_json", "fhir_valid", "private_storage", "system_with"]

_names = itertools.count(1)

FHIR_JSON = "application/fhir+json"


def system_with(*scopes: str) -> APIClient:
    """A test client carrying the token of a new API client (another hospital system) with these scopes."""
    _, token = api_auth.api_client_create(f"system-{next(_names)}", list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def fhir_valid(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` if it validates against its FHIR R4 (4.0/4.3, R4B models) type, contained resources included."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def fhir_json(response: Any, status: int = 200) -> dict[str, Any]:
    """The validated body of a FHIR answer, after checking its status and media type."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].split(";")[0] == FHIR_JSON
    return fhir_valid(response.json())
