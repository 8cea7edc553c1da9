"""The per-user activity report."""

from __future__ import annotations

import pytest

from diagnosis.models import AuditEntry
from tests.conftest import client_for
from tests.diagnosis.audit_helpers import last_entry, listed_seqs, record
from tests.diagnosis.helpers import case_for, image_for

pytestmark = pytest.mark.django_db

Action = AuditEntry.Action


def test_it_counts_the_users_actions_and_the_patients_and_cases_they_touched(nurse, clinician, auditor) -> None:
    first, second = case_for(nurse, "MRN-1111"), case_for(nurse, "MRN-2222")
    mine = [
        record(Action.CASE_VIEW, user=clinician, obj=first),
        record(Action.CASE_VIEW, user=clinician, obj=second),
        record(Action.PHOTO_REVEAL, user=clinician, obj=image_for(second)),
        record(Action.CASE_VIEW, user=clinician, obj=first, outcome=AuditEntry.Outcome.DENIED),
    ]
    record(Action.CASE_VIEW, user=nurse, obj=first)
    response = client_for(auditor).get(f"/audit/users/{clinician.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    entries = AuditEntry.objects.filter(actor_user_id=clinician.pk)
    assert f"{entries.count()} entries about 2 patients and 2 cases" in body
    actions = body.split('id="user-actions"', 1)[1].split("</table>", 1)[0]
    assert "<tr><td>Viewed a case</td><td>success</td><td>2</td>" in actions
    assert "<tr><td>Viewed a case</td><td>denied</td><td>1</td>" in actions
    assert "<tr><td>Revealed a sensitive photo</td><td>success</td><td>1</td>" in actions
    assert listed_seqs(body) == list(entries.order_by("-seq").values_list("seq", flat=True))
    assert {entry.seq for entry in mine} <= set(listed_seqs(body))
    assert 'href="/audit/?user=clinician"' in body


def test_viewing_it_is_recorded_against_the_user(clinician, admin_user) -> None:
    client_for(admin_user).get(f"/audit/users/{clinician.pk}/")
    view = last_entry(Action.AUDIT_VIEW)
    assert (view.actor_user_id, view.object_type, view.object_id) == (admin_user.pk, "user", str(clinician.pk))


def test_a_user_who_did_nothing_has_an_empty_report(nurse, auditor) -> None:
    body = client_for(auditor).get(f"/audit/users/{nurse.pk}/").content.decode()
    assert "No activity recorded." in body


def test_an_unknown_user_is_404(auditor) -> None:
    assert client_for(auditor).get("/audit/users/987654/").status_code == 404


@pytest.mark.parametrize("role", ["nurse", "clinician"])
def test_other_roles_are_refused(role, request) -> None:
    user = request.getfixturevalue(role)
    assert client_for(user).get(f"/audit/users/{user.pk}/").status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client, nurse) -> None:
    assert client.get(f"/audit/users/{nurse.pk}/")["Location"].startswith("/accounts/login/")
