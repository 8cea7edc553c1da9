from __future__ import annotations

import csv
import io

import pytest

from diagnosis.models import AuditEntry
from tests.conftest import client_for
from tests.diagnosis.audit_helpers import last_entry, record
from tests.diagnosis.helpers import case_for, image_for

pytestmark = pytest.mark.django_db

Action = AuditEntry.Action


def read_csv(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_it_exports_the_filtered_entries_newest_first(nurse, clinician, auditor) -> None:
    case = case_for(nurse, "MRN-004821")
    image = image_for(case)
    first = record(Action.PHOTO_VIEW, user=clinician, obj=image, ip="10.1.2.3", detail={"size": "full"})
    second = record(Action.PHOTO_VIEW, user=clinician, obj=image)
    record(Action.CASE_VIEW, user=clinician, obj=case)
    response = client_for(auditor).get(f"/audit/export.csv?action=photo_view&patient={case.patient_id}")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = read_csv(response)
    assert [row["seq"] for row in rows] == [str(second.seq), str(first.seq)]
    row = rows[1]
    assert row["actor"] == "clinician"
    assert row["actor_user_id"] == str(clinician.pk)
    assert (row["action"], row["object_type"], row["object_id"]) == ("photo_view", "lesionimage", str(image.pk))
    assert (row["patient_id"], row["patient"], row["case_id"]) == (str(case.patient_id), "•••••4821", str(case.pk))
    assert (row["source_ip"], row["outcome"], row["detail"]) == ("10.1.2.3", "success", '{"size":"full"}')
    assert row["entry_hash"] == first.entry_hash
    assert row["time_utc"] == first.at.isoformat()


def test_the_export_is_recorded_before_a_single_row_is_sent(nurse, auditor) -> None:
    case = case_for(nurse)
    response = client_for(auditor).get(f"/audit/export.csv?case={case.pk}&date_from=2026-01-01")
    export = last_entry(Action.EXPORT)  # the body has not been read yet
    assert export.actor_user_id == auditor.pk
    assert export.source_ip == "127.0.0.1"
    assert export.detail == {"what": "audit_log", "case": str(case.pk), "date_from": "2026-01-01"}
    assert response.status_code == 200
    assert [row["seq"] for row in read_csv(response)] == [
        str(seq) for seq in AuditEntry.objects.filter(case_id=case.pk).values_list("seq", flat=True)
    ]


def test_cells_a_spreadsheet_would_run_as_formulas_are_defused(auditor) -> None:
    record(Action.LOGIN_FAILED, actor_label='=HYPERLINK("http://evil","x")', outcome=AuditEntry.Outcome.FAILED)
    rows = read_csv(client_for(auditor).get("/audit/export.csv?action=login_failed"))
    assert rows[0]["actor"] == '\'=HYPERLINK("http://evil","x")'


def test_bad_filters_answer_400_and_export_nothing(auditor) -> None:
    response = client_for(auditor).get("/audit/export.csv?date_from=2026-13-01")
    assert response.status_code == 400
    assert "Enter a valid date." in response.content.decode()
    assert not AuditEntry.objects.filter(action=Action.EXPORT).exists()


@pytest.mark.parametrize("role", ["nurse", "clinician"])
def test_other_roles_are_refused(role, request) -> None:
    assert client_for(request.getfixturevalue(role)).get("/audit/export.csv").status_code == 403
    assert not AuditEntry.objects.filter(action=Action.EXPORT).exists()


def test_anonymous_visitors_are_sent_to_log_in(client) -> None:
    assert client.get("/audit/export.csv")["Location"].startswith("/accounts/login/")
