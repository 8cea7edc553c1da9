from __future__ import annotations

import pytest

from diagnosis.models import AuditEntry
from tests.conftest import client_for
from tests.diagnosis.audit_helpers import last_entry, record

pytestmark = pytest.mark.django_db


def test_it_lists_every_user_with_roles_and_activity_most_recent_first(nurse, clinician, auditor) -> None:
    for _ in range(3):
        record(AuditEntry.Action.LOGIN, user=clinician)
    response = client_for(auditor).get("/audit/users/")
    assert response.status_code == 200
    body = response.content.decode()
    table = body.split('id="audit-users"', 1)[1]
    # The auditor acted last (this very page), then the clinician; the nurse never did anything.
    order = [table.index(f'href="/audit/users/{user.pk}/"') for user in (auditor, clinician, nurse)]
    assert order == sorted(order)
    clinician_row = table.split(f'href="/audit/users/{clinician.pk}/"', 1)[1].split("</tr>", 1)[0]
    assert "<td>clinician</td>" in clinician_row
    clinician_entries = AuditEntry.objects.filter(actor_user_id=clinician.pk).count()
    assert f"<td>{clinician_entries}</td>" in clinician_row
    assert last_entry(AuditEntry.Action.AUDIT_VIEW).detail == {"page": "users"}


@pytest.mark.parametrize("role", ["nurse", "clinician"])
def test_other_roles_are_refused(role, request) -> None:
    assert client_for(request.getfixturevalue(role)).get("/audit/users/").status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client) -> None:
    assert client.get("/audit/users/")["Location"] == "/accounts/login/?next=/audit/users/"
