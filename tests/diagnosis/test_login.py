from __future__ import annotations

import json

import pytest
from django.test import Client

from diagnosis.models import AuditEntry
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_the_login_page() -> None:
    response = Client().get("/cases/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/cases/")


def test_the_front_page_leads_to_the_cases() -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"] == "/cases/"


def test_the_login_page_renders() -> None:
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert b'name="username"' in response.content


def test_a_nurse_logs_in_with_her_password() -> None:
    make_user("nurse")
    response = Client().post("/accounts/login/", {"username": "nurse", "password": "not-a-real-password"})
    assert response.status_code == 302
    assert response["Location"] == "/cases/"


def test_a_wrong_password_is_refused() -> None:
    make_user("nurse")
    response = Client().post("/accounts/login/", {"username": "nurse", "password": "wrong"})
    assert response.status_code == 200
    assert b"did not match" in response.content


def test_a_login_is_audited_with_the_source_ip() -> None:
    nurse = make_user("nurse")
    client = Client(REMOTE_ADDR="10.1.2.3")
    client.post("/accounts/login/", {"username": "nurse", "password": "not-a-real-password"})
    entry = AuditEntry.objects.get(action=AuditEntry.Action.LOGIN)
    assert (entry.actor_user_id, entry.actor_label, entry.source_ip) == (nurse.pk, "nurse", "10.1.2.3")
    assert entry.outcome == AuditEntry.Outcome.SUCCESS


def test_a_logout_is_audited() -> None:
    nurse = make_user("nurse")
    client = Client(REMOTE_ADDR="10.1.2.3")
    client.post("/accounts/login/", {"username": "nurse", "password": "not-a-real-password"})
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action=AuditEntry.Action.LOGOUT)
    assert (entry.actor_user_id, entry.source_ip, entry.detail) == (nurse.pk, "10.1.2.3", {})
    assert client.get("/cases/").status_code == 302


def test_a_failed_login_is_audited_with_the_attempted_username_and_never_the_password() -> None:
    make_user("nurse")
    Client(REMOTE_ADDR="10.1.2.3").post("/accounts/login/", {"username": "nurse", "password": "Sunflower-1987"})
    entry = AuditEntry.objects.get(action=AuditEntry.Action.LOGIN_FAILED)
    assert (entry.actor_user_id, entry.actor_label, entry.source_ip) == (None, "nurse", "10.1.2.3")
    assert entry.outcome == AuditEntry.Outcome.FAILED
    row = AuditEntry.objects.filter(pk=entry.pk).values().get()
    assert "Sunflower" not in json.dumps(row, default=str)


def test_a_failed_login_with_an_unknown_username_is_audited_too() -> None:
    response = Client().post("/accounts/login/", {"username": "ghost", "password": "whatever-it-is"})
    assert response.status_code == 200
    assert b"did not match" in response.content
    assert AuditEntry.objects.get(action=AuditEntry.Action.LOGIN_FAILED).actor_label == "ghost"


def test_the_admin_login_page_is_the_site_login_page() -> None:
    response = Client().get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/admin/"


def test_an_admin_logs_in_through_the_site_login_page_into_the_admin() -> None:
    make_user("admin")
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": "admin", "password": "not-a-real-password", "next": "/admin/"}
    )
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
