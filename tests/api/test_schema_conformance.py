"""Property-based run of schemathesis against the published OpenAPI schema, through the site's WSGI app.

Each operation gets a few generated requests, valid and invalid; none may answer 5xx, and every answer (status,
content type, headers, body) must be one the schema documents.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from pytest_django.fixtures import Settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from diagnosis import api_auth
from diagnosis.models import ApiClient
from tests.diagnosis.helpers import case_for, finished_analysis, image_for

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    unsupported_method,
]


TOKEN = "mpx_schemathesis-only-token-for-the-test-database"

# Loaded at collection through the app itself (the schema view touches no database); schemathesis sends the token
# itself, so it knows which of its requests are authenticated.
schema = schemathesis.openapi.from_wsgi(
    "/api/v1/schema?format=json",
    get_wsgi_application(),
    config=schemathesis.Config.from_dict({"auth": {"openapi": {"bearer": {"bearer": TOKEN}}}}),
)


@pytest.fixture
def fuzzer(nurse, settings: Settings) -> Iterator[None]:
    """A client with every scope holding TOKEN, and a little data for the generated ids to find (ids start at 1)."""
    settings.MPOX_API_RATE = "100000/min"
    settings.MPOX_API_UNAUTHENTICATED_RATE = "100000/min"  # it checks that calls without a token are 401
    # As Django's test client does: the start and end of a request must not close the connection that holds the
    # test's transaction (PostgreSQL would lose it; SQLite's in-memory database ignores the close).
    finished_analysis(image_for(case_for(nurse)))
    ApiClient.objects.create(
        name="fuzzer",
        scopes=list(ApiClient.SCOPES),
        token_prefix=TOKEN[: api_auth.PREFIX_LENGTH],
        token_sha256=api_auth.token_hash(TOKEN),
    )
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_its_schema_says(case: schemathesis.Case, fuzzer: None) -> None:
    # In a multipart form every value travels as text: the "array" schemathesis sends where a string belongs
    # arrives as the string "[]", a valid value, so rejecting type violations there cannot be asked of the server.
    multipart = case.media_type == "multipart/form-data"
    case.call_and_validate(checks=[check for check in CHECKS if not (multipart and check is negative_data_rejection)])
