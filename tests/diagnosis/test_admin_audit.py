"""The audit trail in the Django admin: admins read it; nobody, superusers included, adds, edits or deletes."""

from __future__ import annotations

import pytest

from diagnosis.audit import audit_record
from diagnosis.models import AuditEntry
from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def entry() -> AuditEntry:
    return audit_record(action=AuditEntry.Action.LOGIN_FAILED, actor_label="ghost", outcome=AuditEntry.Outcome.FAILED)


def test_an_admin_lists_filters_and_searches_the_audit_trail(entry: AuditEntry) -> None:
    client = client_for(make_user("admin"))
    page = client.get("/admin/diagnosis/auditentry/").content.decode()
    assert "ghost" in page
    assert 'href="?action=lockout"' in page  # every action is offered, by name
    assert "Failed login" in page
    assert "ghost" not in client.get("/admin/diagnosis/auditentry/?action=login").content.decode()
    assert "ghost" in client.get("/admin/diagnosis/auditentry/?action=login_failed").content.decode()
    searched = client.get("/admin/diagnosis/auditentry/?q=ghost").content.decode()
    assert "ghost" in searched
    assert "ghost" not in client.get("/admin/diagnosis/auditentry/?q=nobody-of-that-name").content.decode()


def test_an_entry_opens_read_only(entry: AuditEntry) -> None:
    client = client_for(make_user("admin"))
    page = client.get(f"/admin/diagnosis/auditentry/{entry.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert "Delete" not in page.content.decode()


def test_nobody_adds_edits_or_deletes_an_entry(entry: AuditEntry) -> None:
    client = client_for(make_user("admin"))
    assert client.get("/admin/diagnosis/auditentry/add/").status_code == 403
    response = client.post(
        f"/admin/diagnosis/auditentry/{entry.pk}/change/", {"actor_label": "someone-else", "action": "login"}
    )
    assert response.status_code == 403
    assert client.post(f"/admin/diagnosis/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    response = client.post(
        "/admin/diagnosis/auditentry/", {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"}
    )
    assert response.status_code == 200  # Django answers an unknown action by showing the list again
    entry.refresh_from_db()
    assert (entry.actor_label, entry.action) == ("ghost", AuditEntry.Action.LOGIN_FAILED)
    assert AuditEntry.objects.filter(pk=entry.pk).exists()
    changelist = client.get("/admin/diagnosis/auditentry/").content.decode()
    assert "delete_selected" not in changelist


@pytest.mark.parametrize("role", ["nurse", "clinician", "auditor"])
def test_only_admins_see_it_in_the_admin(role: str, entry: AuditEntry) -> None:
    response = client_for(make_user(role)).get("/admin/diagnosis/auditentry/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
