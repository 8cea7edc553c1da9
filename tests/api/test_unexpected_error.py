from __future__ import annotations

import logging

import pytest
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory

from diagnosis import api, api_auth
from diagnosis.models import AuditEntry

pytestmark = pytest.mark.django_db


class Broken(api.ApiView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("MRN-4711 details that must not reach the client")


def test_an_unexpected_error_is_a_logged_500_problem_that_tells_the_client_nothing(caplog) -> None:
    _, token = api_auth.api_client_create("ehr", ["read"])
    request = APIRequestFactory().get("/x", HTTP_AUTHORIZATION=f"Bearer {token}")
    with caplog.at_level(logging.ERROR, logger="diagnosis.api"):
        response = Broken.as_view()(request)
    response.render()
    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert b"MRN-4711" not in response.content
    assert response.data["title"] == "Something went wrong on our side; it has been logged."
    assert "RuntimeError" in caplog.text
    entry = AuditEntry.objects.get(action=AuditEntry.Action.API_CALL)
    assert (entry.outcome, entry.detail["status"]) == ("failed", 500)
