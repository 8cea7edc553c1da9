from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from diagnosis.models import AuditEntry
from tests.conftest import client_for
from tests.diagnosis.audit_helpers import last_entry, listed_seqs, record
from tests.diagnosis.helpers import case_for, image_for

pytestmark = pytest.mark.django_db

Action = AuditEntry.Action


def test_anonymous_visitors_are_sent_to_log_in(client) -> None:
    response = client.get("/audit/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/audit/"


@pytest.mark.parametrize("role", ["nurse", "clinician"])
def test_other_roles_are_refused_and_the_refusal_is_recorded(role, request) -> None:
    user = request.getfixturevalue(role)
    response = client_for(user).get("/audit/")
    assert response.status_code == 403
    refusal = last_entry(Action.AUDIT_VIEW)
    assert (refusal.actor_user_id, refusal.outcome) == (user.pk, AuditEntry.Outcome.DENIED)


@pytest.mark.parametrize("role", ["auditor", "admin_user"])
def test_auditors_and_admins_see_every_entry_newest_first(role, request, nurse, clinician) -> None:
    case = case_for(nurse, "MRN-004821")
    image = image_for(case)
    viewed = record(Action.PHOTO_VIEW, user=clinician, obj=image, ip="10.1.2.3")
    failed = record(Action.LOGIN_FAILED, actor_label="mallory", outcome=AuditEntry.Outcome.FAILED, ip="10.9.9.9")
    response = client_for(request.getfixturevalue(role)).get("/audit/")
    assert response.status_code == 200
    body = response.content.decode()
    seqs = listed_seqs(body)
    assert seqs == sorted(seqs, reverse=True)
    assert seqs[0] == last_entry(Action.AUDIT_VIEW).seq  # this very view, recorded before the page was read
    assert seqs.index(failed.seq) < seqs.index(viewed.seq)
    row = body.split(f"<td>{viewed.seq}</td>", 1)[1].split("</tr>", 1)[0]
    for shown in ("clinician", "Viewed a photo", f"lesionimage {image.pk}", f"case {case.pk}", "•••••4821", "10.1.2.3"):
        assert shown in row
    assert "success" in row
    assert "mallory" in body
    assert "failed" in body
    assert "MRN-004821" not in body  # only the masked identifier, ever


def test_it_filters_by_user_case_action_and_patient(nurse, clinician, auditor) -> None:
    first, second = case_for(nurse, "MRN-1111"), case_for(nurse, "MRN-2222")
    by_nurse = record(Action.CASE_VIEW, user=nurse, obj=first)
    by_clinician = record(Action.CASE_VIEW, user=clinician, obj=first)
    other_case = record(Action.CASE_VIEW, user=clinician, obj=second)
    reveal = record(Action.PHOTO_REVEAL, user=clinician, obj=image_for(second))
    client = client_for(auditor)

    def shown(query: str) -> set[int]:
        response = client.get("/audit/?" + query)
        assert response.status_code == 200
        return set(listed_seqs(response.content.decode()))

    mine = {by_nurse.seq, by_clinician.seq, other_case.seq, reveal.seq}
    assert shown("user=CLINICIAN") & mine == {by_clinician.seq, other_case.seq, reveal.seq}
    assert shown(f"case={first.pk}") & mine == {by_nurse.seq, by_clinician.seq}
    assert shown("action=photo_reveal") == {reveal.seq}
    assert shown(f"patient={second.patient_id}") & mine == {other_case.seq, reveal.seq}
    assert shown(f"user=clinician&action=case_view&patient={first.patient_id}") == {by_clinician.seq}
    assert shown("user=nobody-at-all") == set()


def test_dates_are_whole_days_with_both_ends_included(nurse, auditor) -> None:
    entry = record(Action.LOGIN, user=nurse)
    today = timezone.localdate()
    client = client_for(auditor)

    def shown(query: str) -> bool:
        return entry.seq in listed_seqs(client.get("/audit/?" + query).content.decode())

    assert shown(f"date_from={today}&date_to={today}")
    assert not shown(f"date_to={today - timedelta(days=1)}")
    assert not shown(f"date_from={today + timedelta(days=1)}")


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("date_from=26-11-2026x", "Enter a valid date."),
        ("action=delete_everything", "Select a valid choice."),
        ("case=abc", "Enter a whole number."),
        ("date_from=2026-03-02&date_to=2026-03-01", "The end date is before the start date."),
        ("patient=987654", "That patient does not exist"),
        ("patient=abc", "Patient: Enter a whole number."),
        ("date_to=9999-12-31", "Enter a date between 1900 and 9998."),
        ("date_from=0001-01-01", "Enter a date between 1900 and 9998."),
    ],
)
def test_bad_filters_answer_400_with_the_error_on_the_page(auditor, query, error) -> None:
    response = client_for(auditor).get("/audit/?" + query)
    assert response.status_code == 400
    body = response.content.decode()
    assert error in body
    assert 'id="audit-entries"' not in body


def test_a_hospital_identifier_in_the_url_is_ignored(nurse, auditor) -> None:
    first, second = case_for(nurse, "MRN-1111"), case_for(nurse, "MRN-2222")
    entry = record(Action.CASE_VIEW, user=nurse, obj=first)
    other = record(Action.CASE_VIEW, user=nurse, obj=second)
    response = client_for(auditor).get("/audit/?hospital_identifier=MRN-2222")
    assert response.status_code == 200
    assert {entry.seq, other.seq} <= set(listed_seqs(response.content.decode()))


def test_the_log_comes_in_pages_of_fifty(nurse, auditor) -> None:
    written = [record(Action.LOGIN, user=nurse).seq for _ in range(60)]
    client = client_for(auditor)
    first = client.get("/audit/?user=nurse&action=login").content.decode()
    second = client.get("/audit/?user=nurse&action=login&page=2").content.decode()
    assert listed_seqs(first) == written[::-1][:50]
    assert listed_seqs(second) == written[::-1][50:]
    assert "Page 1 of 2 · 60 entries" in first
    assert "user=nurse&amp;action=login&amp;page=2" in first


def test_viewing_the_log_is_recorded_with_its_filters(nurse, auditor) -> None:
    case = case_for(nurse)
    client_for(auditor).get(f"/audit/?action=case_view&case={case.pk}&patient={case.patient_id}")
    view = last_entry(Action.AUDIT_VIEW)
    assert view.actor_user_id == auditor.pk
    assert view.outcome == AuditEntry.Outcome.SUCCESS
    assert view.detail == {
        "page": "list",
        "filters": {"action": "case_view", "case": str(case.pk), "patient": str(case.patient_id)},
    }
    assert view.source_ip == "127.0.0.1"


@pytest.mark.parametrize(
    ("role", "shown"), [("nurse", False), ("clinician", False), ("auditor", True), ("admin_user", True)]
)
def test_the_top_bar_links_to_the_audit_log_for_auditors_and_admins_only(role, shown, request) -> None:
    body = client_for(request.getfixturevalue(role)).get("/cases/").content.decode()
    assert ('<a class="nav" href="/audit/">Audit</a>' in body) is shown
