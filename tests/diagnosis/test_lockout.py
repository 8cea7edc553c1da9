"""Log-in lockout after repeated failures: per username (and per source IP when configured), through HTTP."""

from __future__ import annotations

import io

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import aauthenticate
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings

from diagnosis.models import AuditEntry
from tests.conftest import Clock, client_for, make_user

pytestmark = pytest.mark.django_db

PASSWORD = "not-a-real-password"


@pytest.fixture(autouse=True)
def fast_hasher(settings: Settings) -> None:
    """These tests check hundreds of passwords; the hash's cost is not what they are about."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def attempt(username: str, password: str, ip: str = "10.0.0.1") -> Client:
    client = Client(REMOTE_ADDR=ip)
    client.post("/accounts/login/", {"username": username, "password": password})
    return client


def fail(username: str, times: int, ip: str = "10.0.0.1") -> None:
    for _ in range(times):
        attempt(username, "a-wrong-guess", ip)


def logs_in(username: str, ip: str = "10.0.0.1") -> bool:
    return attempt(username, PASSWORD, ip).get("/cases/").status_code == 200


def test_five_failures_lock_the_account_and_the_right_password_is_then_refused() -> None:
    make_user("nurse")
    fail("nurse", 5)
    client = Client(REMOTE_ADDR="10.0.0.1")
    response = client.post("/accounts/login/", {"username": "nurse", "password": PASSWORD})
    assert response.status_code == 403
    page = response.content.decode()
    assert "Too many failed log-ins: this account is locked for 15 more minutes" in page
    assert "ask an administrator to unlock it" in page
    assert client.get("/cases/").status_code == 302
    lockout = AuditEntry.objects.get(action=AuditEntry.Action.LOCKOUT)
    assert (lockout.actor_label, lockout.source_ip) == ("nurse", "10.0.0.1")
    assert lockout.detail == {"scope": "username", "target": "nurse", "failures": 5, "minutes": 15}
    refused = AuditEntry.objects.filter(action=AuditEntry.Action.LOGIN_FAILED).order_by("seq").last()
    assert refused is not None
    assert (refused.outcome, refused.detail) == (AuditEntry.Outcome.DENIED, {"reason": "locked", "scope": "username"})


def test_four_failures_do_not_lock() -> None:
    make_user("nurse")
    fail("nurse", 4)
    assert logs_in("nurse")
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.LOCKOUT).exists()


def test_the_limit_and_the_window_come_from_the_settings(settings: Settings) -> None:
    settings.MPOX_LOGIN_MAX_FAILURES = 2
    settings.MPOX_LOCKOUT_MINUTES = 60
    make_user("nurse")
    fail("nurse", 2)
    response = attempt("nurse", PASSWORD)
    assert response.get("/cases/").status_code == 302
    assert AuditEntry.objects.get(action=AuditEntry.Action.LOCKOUT).detail["minutes"] == 60


def test_the_lockout_ends_after_its_window(clock: Clock) -> None:
    make_user("nurse")
    fail("nurse", 5)
    clock.advance(minutes=14, seconds=50)
    assert not logs_in("nurse")
    clock.advance(seconds=20)
    assert logs_in("nurse")


def test_attempts_during_a_lockout_neither_extend_it_nor_count_towards_the_next(clock: Clock) -> None:
    make_user("nurse")
    fail("nurse", 5)
    clock.advance(minutes=10)
    fail("nurse", 10)
    clock.advance(minutes=5, seconds=10)
    fail("nurse", 4)
    assert logs_in("nurse")
    assert AuditEntry.objects.filter(action=AuditEntry.Action.LOCKOUT).count() == 1


def test_failures_spread_wider_than_the_window_do_not_add_up(clock: Clock) -> None:
    make_user("nurse")
    fail("nurse", 4)
    clock.advance(minutes=16)
    fail("nurse", 4)
    assert logs_in("nurse")


def test_a_lockout_is_per_username() -> None:
    make_user("nurse")
    make_user("nurse", "nurse2")
    fail("nurse", 5)
    assert logs_in("nurse2")
    assert not logs_in("nurse")


def test_an_unknown_username_locks_like_a_real_one_so_the_page_reveals_nothing() -> None:
    fail("ghost", 5)
    response = Client().post("/accounts/login/", {"username": "ghost", "password": PASSWORD})
    assert response.status_code == 403
    assert "this account is locked" in response.content.decode()


def test_the_lockout_holds_for_every_password_check_not_only_the_login_page() -> None:
    make_user("nurse")
    fail("nurse", 5)
    assert Client().login(username="nurse", password=PASSWORD) is False


def test_per_ip_lockout_when_configured(settings: Settings) -> None:
    settings.MPOX_LOGIN_MAX_FAILURES_PER_IP = 3
    make_user("nurse")
    for name in ("anna", "ben", "carl"):
        fail(name, 1, ip="10.9.9.9")
    response = Client(REMOTE_ADDR="10.9.9.9").post("/accounts/login/", {"username": "nurse", "password": PASSWORD})
    assert response.status_code == 403
    assert "Too many failed log-ins from this device" in response.content.decode()
    assert logs_in("nurse", ip="10.0.0.2")
    lockout = AuditEntry.objects.get(action=AuditEntry.Action.LOCKOUT)
    assert lockout.detail["scope"] == "ip"
    assert lockout.detail["target"] == "10.9.9.9"


def test_the_source_ip_does_not_lock_by_default() -> None:
    make_user("nurse")
    for name in ("anna", "ben", "carl", "dora", "emil", "fred"):
        fail(name, 1, ip="10.9.9.9")
    assert logs_in("nurse", ip="10.9.9.9")


def test_an_admin_unlocks_a_user_in_the_admin() -> None:
    nurse = make_user("nurse")
    admin = make_user("admin")
    fail("nurse", 5)
    client = client_for(admin)
    changelist = client.get("/admin/auth/user/").content.decode()
    assert "Log-in locked until" in changelist
    response = client.post("/admin/auth/user/", {"action": "unlock", "_selected_action": [nurse.pk]}, follow=True)
    assert "Unlocked: nurse." in response.content.decode()
    assert logs_in("nurse")
    unlock = AuditEntry.objects.get(action=AuditEntry.Action.UNLOCK)
    assert (unlock.actor_user_id, unlock.detail) == (
        admin.pk,
        {"scope": "username", "target": "nurse", "was_locked": True},
    )


def test_unlocking_a_user_who_is_not_locked_says_so() -> None:
    nurse = make_user("nurse")
    client = client_for(make_user("admin"))
    response = client.post("/admin/auth/user/", {"action": "unlock", "_selected_action": [nurse.pk]}, follow=True)
    assert "None was locked." in response.content.decode()


def test_a_nurse_cannot_unlock_anyone() -> None:
    nurse = make_user("nurse")
    fail("nurse", 5)
    response = client_for(make_user("nurse", "nurse2")).post(
        "/admin/auth/user/", {"action": "unlock", "_selected_action": [nurse.pk]}
    )
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.UNLOCK).exists()
    assert not logs_in("nurse")


def run_unlock(*args: str) -> str:
    out = io.StringIO()
    call_command("login_unlock", *args, stdout=out)
    return out.getvalue()


def test_the_command_unlocks_a_username() -> None:
    make_user("nurse")
    fail("nurse", 5)
    assert run_unlock("nurse") == "Unlocked nurse.\n"
    assert logs_in("nurse")
    assert AuditEntry.objects.get(action=AuditEntry.Action.UNLOCK).actor_label == "manage.py"
    assert run_unlock("nurse") == "nurse was not locked; nothing to do.\n"


def test_the_command_unlocks_an_ip(settings: Settings) -> None:
    settings.MPOX_LOGIN_MAX_FAILURES_PER_IP = 2
    make_user("nurse")
    fail("someone", 2, ip="10.9.9.9")
    assert not logs_in("nurse", ip="10.9.9.9")
    assert run_unlock("--ip", "10.9.9.9") == "Unlocked 10.9.9.9.\n"
    assert logs_in("nurse", ip="10.9.9.9")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Give either a username or --ip ADDRESS."),
        (("nurse", "--ip", "10.0.0.1"), "Give either a username or --ip ADDRESS."),
        (("--ip", "not-an-ip"), "'not-an-ip' is not an IP address."),
    ],
)
def test_the_command_refuses_bad_arguments(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run_unlock(*args)


def test_the_async_password_check_honours_the_lockout_too() -> None:
    make_user("nurse")
    check = async_to_sync(aauthenticate)
    assert check(None, username="nurse", password=PASSWORD) is not None
    fail("nurse", 5)
    assert check(None, username="nurse", password=PASSWORD) is None
