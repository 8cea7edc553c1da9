"""Roles change through user_roles_set, in the admin or in code: the user is logged out everywhere and it is audited."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.test import Client
from pytest_django.fixtures import Settings

from diagnosis import services
from diagnosis.models import AuditEntry
from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_hasher(settings: Settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def browser(username: str) -> Client:
    client = Client()
    response = client.post("/accounts/login/", {"username": username, "password": "not-a-real-password"})
    assert response.status_code == 302
    return client


def change_form(user: User, **fields: object) -> dict[str, object]:
    data: dict[str, object] = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
        "roles": sorted(user.groups.values_list("name", flat=True)),
    }
    data.update(fields)
    return {name: value for name, value in data.items() if value is not None}


def roles_of(user: User) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


def test_changing_roles_in_the_admin_logs_the_user_out_on_every_device() -> None:
    nurse = make_user("nurse")
    admin = make_user("admin")
    tablet, desktop = browser("nurse"), browser("nurse")
    bystander = browser("admin")
    response = client_for(admin).post(f"/admin/auth/user/{nurse.pk}/change/", change_form(nurse, roles=["clinician"]))
    assert response.status_code == 302
    assert roles_of(nurse) == ["clinician"]
    for client in (tablet, desktop):
        assert client.get("/cases/").status_code == 302
    assert bystander.get("/cases/").status_code == 200
    entry = AuditEntry.objects.get(action=AuditEntry.Action.ROLE_CHANGE)
    assert (entry.actor_user_id, entry.object_type, entry.object_id) == (admin.pk, "user", str(nurse.pk))
    assert entry.detail == {"before": ["nurse"], "after": ["clinician"], "sessions_ended": 2}
    assert browser("nurse").get("/review/").status_code == 200  # logging in again gives the new role


def test_saving_the_user_without_a_role_change_keeps_their_sessions() -> None:
    nurse = make_user("nurse")
    admin = make_user("admin")
    tablet = browser("nurse")
    response = client_for(admin).post(
        f"/admin/auth/user/{nurse.pk}/change/", change_form(nurse, email="nurse@hospital.example")
    )
    assert response.status_code == 302
    assert tablet.get("/cases/").status_code == 200
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.ROLE_CHANGE).exists()
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.USER_CHANGE, actor_user_id=admin.pk).get()
    assert entry.detail == {"change": "updated", "fields": ["email"]}


def test_the_admin_role_is_the_staff_and_superuser_flags() -> None:
    user = make_user("clinician")
    admin = make_user("admin")
    client = client_for(admin)
    client.post(f"/admin/auth/user/{user.pk}/change/", change_form(user, roles=["admin", "clinician"]))
    user.refresh_from_db()
    assert (user.is_staff, user.is_superuser, roles_of(user)) == (True, True, ["admin", "clinician"])
    client.post(f"/admin/auth/user/{user.pk}/change/", change_form(user, roles=["clinician"]))
    user.refresh_from_db()
    assert (user.is_staff, user.is_superuser, roles_of(user)) == (False, False, ["clinician"])
    assert client_for(user).get("/admin/").status_code == 302


def test_the_change_page_shows_roles_as_checkboxes() -> None:
    nurse = make_user("nurse")
    page = client_for(make_user("admin")).get(f"/admin/auth/user/{nurse.pk}/change/").content.decode()
    nurse_box = page.split('type="checkbox" name="roles" value="nurse"')[1].split(">")[0]
    clinician_box = page.split('type="checkbox" name="roles" value="clinician"')[1].split(">")[0]
    assert "checked" in nurse_box
    assert "checked" not in clinician_box
    assert 'name="is_superuser"' not in page


def test_an_admin_who_changes_their_own_roles_is_logged_out() -> None:
    admin = make_user("admin")
    client = browser("admin")
    response = client.post(f"/admin/auth/user/{admin.pk}/change/", change_form(admin, roles=["auditor"]))
    assert response.status_code == 302
    assert client.get("/cases/").status_code == 302
    assert roles_of(admin) == ["auditor"]
    assert AuditEntry.objects.filter(action=AuditEntry.Action.LOGOUT, actor_user_id=admin.pk).exists()


def test_other_groups_are_left_alone() -> None:
    nurse = make_user("nurse")
    nurse.groups.add(Group.objects.create(name="night-shift"))
    services.user_roles_set(user=nurse, roles=["clinician"], changed_by=None)
    assert roles_of(nurse) == ["clinician", "night-shift"]


def test_setting_the_same_roles_changes_nothing() -> None:
    nurse = make_user("nurse")
    tablet = browser("nurse")
    assert services.user_roles_set(user=nurse, roles=["nurse"], changed_by=None) is False
    assert tablet.get("/cases/").status_code == 200
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.ROLE_CHANGE).exists()


def test_an_unknown_role_is_refused() -> None:
    nurse = make_user("nurse")
    with pytest.raises(ValidationError, match="unknown role"):
        services.user_roles_set(user=nurse, roles=["surgeon"], changed_by=None)
    assert roles_of(nurse) == ["nurse"]


def test_an_unknown_role_in_the_admin_is_a_form_error() -> None:
    nurse = make_user("nurse")
    response = client_for(make_user("admin")).post(
        f"/admin/auth/user/{nurse.pk}/change/", change_form(nurse, roles=["surgeon"])
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert roles_of(nurse) == ["nurse"]


def test_creating_a_user_records_a_user_change() -> None:
    nurse = make_user("nurse")
    entry = AuditEntry.objects.get(action=AuditEntry.Action.USER_CHANGE, object_id=str(nurse.pk))
    assert entry.detail == {"change": "created", "role": "nurse"}


def test_an_admin_creates_a_user_with_a_role() -> None:
    admin = make_user("admin")
    response = client_for(admin).post(
        "/admin/auth/user/add/",
        {
            "username": "newnurse",
            "role": "nurse",
            "usable_password": "true",
            "password1": "Ward7-night-rota-2026",
            "password2": "Ward7-night-rota-2026",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(username="newnurse")
    assert roles_of(user) == ["nurse"]
    assert not user.is_staff
    created = AuditEntry.objects.get(action=AuditEntry.Action.USER_CHANGE, object_id=str(user.pk))
    assert (created.actor_user_id, created.detail) == (admin.pk, {"change": "created", "role": "nurse"})
    assert AuditEntry.objects.get(action=AuditEntry.Action.ROLE_CHANGE).detail["after"] == ["nurse"]


def test_the_admin_refuses_a_short_password() -> None:
    response = client_for(make_user("admin")).post(
        "/admin/auth/user/add/",
        {
            "username": "newnurse",
            "role": "nurse",
            "usable_password": "true",
            "password1": "Wd7-short",
            "password2": "Wd7-short",
        },
    )
    assert response.status_code == 200
    assert "at least 12 characters" in response.content.decode()
    assert not User.objects.filter(username="newnurse").exists()


def test_a_password_change_in_the_admin_is_audited() -> None:
    nurse = make_user("nurse")
    admin = make_user("admin")
    response = client_for(admin).post(
        f"/admin/auth/user/{nurse.pk}/password/",
        {"password1": "Ward7-night-rota-2026", "password2": "Ward7-night-rota-2026", "set_usable_password": "true"},
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action=AuditEntry.Action.USER_CHANGE, actor_user_id=admin.pk)
    assert entry.detail == {"change": "password"}


def test_deleting_a_user_in_the_admin_is_audited() -> None:
    auditor = make_user("auditor")
    admin = make_user("admin")
    response = client_for(admin).post(f"/admin/auth/user/{auditor.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=auditor.pk).exists()
    entry = AuditEntry.objects.get(action=AuditEntry.Action.USER_CHANGE, actor_user_id=admin.pk)
    assert (entry.object_id, entry.detail) == (str(auditor.pk), {"change": "deleted"})


def test_deleting_users_from_the_list_is_audited_for_each() -> None:
    users = [make_user("nurse", "nurse-a"), make_user("nurse", "nurse-b")]
    admin = make_user("admin")
    response = client_for(admin).post(
        "/admin/auth/user/", {"action": "delete_selected", "_selected_action": [u.pk for u in users], "post": "yes"}
    )
    assert response.status_code == 302
    entries = AuditEntry.objects.filter(action=AuditEntry.Action.USER_CHANGE, actor_user_id=admin.pk)
    assert sorted(entries.values_list("object_id", flat=True)) == sorted(str(u.pk) for u in users)
    assert not User.objects.filter(pk__in=[u.pk for u in users]).exists()
