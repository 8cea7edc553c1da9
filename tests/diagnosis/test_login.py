from __future__ import annotations

import pytest
from django.test import Client

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
