"""Where a request came from, as the audit log records it: the proxy's header only when the proxy is trusted."""

from __future__ import annotations

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from diagnosis.models import AuditEntry
from tests.conftest import client_for
from tests.diagnosis.helpers import case_for

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"
CLIENT = "203.0.113.9"


def viewed_from(nurse, forwarded: str) -> str | None:
    case = case_for(nurse)
    response = client_for(nurse).get(f"/cases/{case.pk}/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)
    assert response.status_code == 200
    return AuditEntry.objects.get(action="case_view").source_ip


def test_without_a_trusted_proxy_the_forwarded_header_is_ignored(nurse) -> None:
    assert viewed_from(nurse, CLIENT) == PROXY


def test_behind_one_trusted_proxy_the_client_address_is_recorded(nurse, settings: Settings) -> None:
    settings.MPOX_TRUSTED_PROXIES = 1
    assert viewed_from(nurse, CLIENT) == CLIENT


def test_an_address_the_client_forged_in_front_of_the_proxys_is_not_believed(nurse, settings: Settings) -> None:
    settings.MPOX_TRUSTED_PROXIES = 1
    assert viewed_from(nurse, f"6.6.6.6, {CLIENT}") == CLIENT


def test_a_malformed_forwarded_address_falls_back_to_the_connection(nurse, settings: Settings) -> None:
    settings.MPOX_TRUSTED_PROXIES = 1
    assert viewed_from(nurse, "not-an-address") == PROXY


def test_a_failed_log_in_behind_the_proxy_records_the_client_address(settings: Settings) -> None:
    settings.MPOX_TRUSTED_PROXIES = 1
    Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=CLIENT).post(
        "/accounts/login/", {"username": "someone", "password": "wrong-password-123"}
    )
    assert AuditEntry.objects.get(action="login_failed").source_ip == CLIENT
