"""The per-patient access report: everyone who opened the patient's cases, photos or heatmaps, or revealed a photo."""

from __future__ import annotations

import re

import pytest

from diagnosis.models import AuditEntry
from tests.conftest import client_for, make_user
from tests.diagnosis.audit_helpers import last_entry, record
from tests.diagnosis.helpers import case_for, finished_analysis, image_for

pytestmark = pytest.mark.django_db

Action = AuditEntry.Action


def report_rows(body: str) -> dict[str, list[str]]:
    """Who → [case views, photo views, heatmap views, reveals, refused, first, last]."""
    table = body.split('id="patient-access"', 1)[1].split("</table>", 1)[0]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1], flags=re.S):
        cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row, flags=re.S)]
        rows[cells[0]] = cells[1:]
    return rows


def test_it_counts_each_persons_views_with_first_and_last_time(nurse, clinician, auditor) -> None:
    case = case_for(nurse, "MRN-004821")
    image = image_for(case)
    analysis = finished_analysis(image)
    colleague = make_user("clinician", "dr-two")
    first = record(Action.CASE_VIEW, user=clinician, obj=case)
    record(Action.PHOTO_VIEW, user=clinician, obj=image)
    record(Action.PHOTO_VIEW, user=clinician, obj=image)
    record(Action.HEATMAP_VIEW, user=clinician, obj=analysis)
    last = record(Action.PHOTO_REVEAL, user=clinician, obj=image)
    record(Action.PHOTO_VIEW, user=colleague, obj=image, outcome=AuditEntry.Outcome.DENIED)
    record(Action.REVIEW, user=colleague, obj=case)  # not an opening of the records
    record(Action.PHOTO_VIEW, user=colleague, obj=image_for(case_for(nurse, "MRN-999999")))  # another patient

    response = client_for(auditor).get(f"/audit/patients/{case.patient_id}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Patient •••••4821" in body
    assert "MRN-004821" not in body
    rows = report_rows(body)
    assert rows["clinician"] == [
        "1",
        "2",
        "1",
        "1",
        "0",
        first.at.strftime("%Y-%m-%d %H:%M:%S"),
        last.at.strftime("%Y-%m-%d %H:%M:%S"),
    ]
    assert rows["dr-two"][:5] == ["0", "0", "0", "0", "1"]
    assert "nurse" not in rows
    assert f'href="/audit/?patient={case.patient_id}"' in body


def test_viewing_the_report_is_recorded_against_the_patient(nurse, auditor) -> None:
    case = case_for(nurse)
    client_for(auditor).get(f"/audit/patients/{case.patient_id}/")
    view = last_entry(Action.AUDIT_VIEW)
    assert (view.actor_user_id, view.patient_id, view.object_type) == (auditor.pk, case.patient_id, "patient")
    assert view.detail == {"page": "patient_access"}


def test_a_patient_nobody_opened_says_so(nurse, admin_user) -> None:
    case = case_for(nurse)
    body = client_for(admin_user).get(f"/audit/patients/{case.patient_id}/").content.decode()
    assert "Nobody has opened this patient's records." in body


def test_an_unknown_patient_is_404(auditor) -> None:
    assert client_for(auditor).get("/audit/patients/987654/").status_code == 404


@pytest.mark.parametrize("role", ["nurse", "clinician"])
def test_other_roles_are_refused(role, request, nurse) -> None:
    case = case_for(nurse)
    assert client_for(request.getfixturevalue(role)).get(f"/audit/patients/{case.patient_id}/").status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client, nurse) -> None:
    case = case_for(nurse)
    assert client.get(f"/audit/patients/{case.patient_id}/")["Location"].startswith("/accounts/login/")
