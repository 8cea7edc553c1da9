"""Sessions end after MPOX_SESSION_IDLE_MINUTES without activity; the pages' own polling is not activity."""

from __future__ import annotations

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from diagnosis.models import AuditEntry
from tests.conftest import Clock, make_user

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def logged_in(role: str) -> Client:
    make_user(role)
    client = Client(REMOTE_ADDR="10.0.0.7")
    response = client.post("/accounts/login/", {"username": role, "password": "not-a-real-password"})
    assert response.status_code == 302
    return client


def test_a_session_idle_past_the_limit_is_logged_out(clock: Clock) -> None:
    client = logged_in("nurse")
    assert client.get("/cases/").status_code == 200
    clock.advance(minutes=30, seconds=30)
    response = client.get("/cases/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/cases/"
    login_page = client.get(response["Location"]).content.decode()
    assert "You were logged out after 30 minutes without activity. Please log in again." in login_page
    entry = AuditEntry.objects.get(action=AuditEntry.Action.LOGOUT)
    assert (entry.actor_label, entry.source_ip, entry.detail) == ("nurse", "10.0.0.7", {"reason": "idle"})
    # The session is gone, not just hidden: coming back later does not revive it.
    assert client.get("/cases/").status_code == 302


def test_activity_keeps_the_session(clock: Clock) -> None:
    client = logged_in("nurse")
    for _ in range(3):
        clock.advance(minutes=25)
        assert client.get("/cases/").status_code == 200
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.LOGOUT).exists()


def test_the_limit_comes_from_the_settings(clock: Clock, settings: Settings) -> None:
    settings.MPOX_SESSION_IDLE_MINUTES = 5
    client = logged_in("nurse")
    clock.advance(minutes=4)
    assert client.get("/cases/").status_code == 200
    clock.advance(minutes=5, seconds=30)
    assert client.get("/cases/").status_code == 302


def test_polling_is_served_but_does_not_count_as_activity(clock: Clock) -> None:
    client = logged_in("clinician")
    assert client.get("/review/").status_code == 200
    clock.advance(minutes=20)
    assert client.get("/review/", headers=HTMX).status_code == 200  # the queue refreshing itself
    clock.advance(minutes=11)
    response = client.get("/review/", headers=HTMX)
    # htmx replaces the whole page with the log-in page instead of putting a log-in form into the queue's box.
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/"
    assert client.get("/review/").status_code == 302
