"""Calls without a valid token are held to a rate per source address: 401 up to it, then 429, audited sparingly."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from rest_framework.test import APIClient

from diagnosis import api_auth, audit
from diagnosis.models import AuditEntry
from tests.api.conftest import api_client_with

pytestmark = pytest.mark.django_db

RATE = 3


@pytest.fixture(autouse=True)
def _low_rate(settings) -> None:
    settings.MPOX_API_UNAUTHENTICATED_RATE = f"{RATE}/min"


def stranger(authorization: str | None = None, address: str = "127.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client


def api_calls() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=AuditEntry.Action.API_CALL).order_by("seq"))


def revoked_token() -> str:
    client, token = api_auth.api_client_create("old-ehr", ["read"])
    api_auth.api_client_revoke(client)
    return token


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer mpx_wrong-token-of-the-right-length", "Bearer", "revoked"],
    ids=["no token", "wrong token", "empty token", "revoked token"],
)
def test_calls_without_a_valid_token_are_401_up_to_the_rate_then_429_with_retry_after(authorization) -> None:
    if authorization == "revoked":
        authorization = f"Bearer {revoked_token()}"
    client = stranger(authorization)
    assert [client.get("/api/v1/stats").status_code for _ in range(RATE)] == [401] * RATE
    response = client.get("/api/v1/stats")
    assert response.status_code == 429
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 429
    assert body["title"].startswith("Too many calls without a valid token from this address.")
    assert 0 < int(response["Retry-After"]) <= 60


def test_paths_that_do_not_exist_count_too() -> None:
    client = stranger()
    assert [client.get(f"/api/v1/nothing-{n}").status_code for n in range(RATE + 1)] == [404] * RATE + [429]


def test_past_the_rate_only_the_first_refusal_is_audited_and_logged(caplog) -> None:
    client = stranger("Bearer mpx_wrong-token-of-the-right-length")
    with caplog.at_level(logging.WARNING, logger="django.request"):
        statuses = [client.get("/api/v1/stats").status_code for _ in range(RATE + 20)]
    assert [record.status_code for record in caplog.records] == [401] * RATE + [429]  # type: ignore[attr-defined]
    assert statuses == [401] * RATE + [429] * 20
    entries = api_calls()
    assert [entry.detail["status"] for entry in entries] == [401] * RATE + [429]
    assert {(entry.outcome, entry.actor_label, entry.source_ip) for entry in entries} == {
        ("denied", "unknown token", "127.0.0.1")
    }
    assert entries[-1].detail["unaudited_refusals_for_s"] == 60
    assert audit.audit_chain_verify().intact


def test_a_valid_client_from_the_same_address_is_let_in_and_does_not_count() -> None:
    reader = api_client_with("read")
    assert [reader.get("/api/v1/analyses").status_code for _ in range(RATE)] == [200] * RATE
    bad = stranger()
    assert [bad.get("/api/v1/analyses").status_code for _ in range(RATE + 1)] == [401] * RATE + [429]
    assert reader.get("/api/v1/analyses").status_code == 200
    assert api_calls()[-1].detail["status"] == 200


def test_each_source_address_has_its_own_count() -> None:
    first = stranger(address="10.0.0.7")
    assert [first.get("/api/v1/stats").status_code for _ in range(RATE + 1)] == [401] * RATE + [429]
    assert stranger(address="10.0.0.8").get("/api/v1/stats").status_code == 401


def test_behind_a_trusted_proxy_the_address_it_saw_counts_and_a_forged_one_does_not(settings) -> None:
    settings.MPOX_TRUSTED_PROXIES = 1
    for forged in range(RATE):  # the client writes the left part of the header: it changes nothing
        response = stranger(address="10.0.0.1").get("/api/v1/stats", HTTP_X_FORWARDED_FOR=f"192.0.2.{forged}, 10.1.1.1")
        assert response.status_code == 401
    assert stranger(address="10.0.0.1").get("/api/v1/stats", HTTP_X_FORWARDED_FOR="10.1.1.1").status_code == 429
    assert stranger(address="10.0.0.1").get("/api/v1/stats", HTTP_X_FORWARDED_FOR="10.1.1.2").status_code == 401
    assert {entry.source_ip for entry in api_calls()} == {"10.1.1.1", "10.1.1.2"}


def test_the_hold_ends_after_the_period(monkeypatch) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(api_auth.UnauthenticatedRateThrottle, "timer", lambda self: now[0])
    client = stranger()
    assert [client.get("/api/v1/stats").status_code for _ in range(RATE + 1)] == [401] * RATE + [429]
    now[0] += 61
    assert client.get("/api/v1/stats").status_code == 401


def test_the_rate_limits_count_in_the_database_by_default_and_a_bad_rate_fails_loudly(tmp_path) -> None:
    code = "from django.conf import settings as s; print(s.CACHES['default']['BACKEND'])"
    env = {"VAR_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='mpoxsite.settings'; {code}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip() == "django.core.cache.backends.db.DatabaseCache", result.stderr
    bad = subprocess.run(
        [sys.executable, "-c", "import mpoxsite.settings"],
        env={**env, "MPOX_API_UNAUTHENTICATED_RATE": "lots"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "MPOX_API_UNAUTHENTICATED_RATE must be" in bad.stderr
