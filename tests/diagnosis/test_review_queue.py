from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from diagnosis import services
from diagnosis.access import case_list_for_user
from diagnosis.models import Case, Review
from tests.conftest import client_for, make_user
from tests.diagnosis.helpers import case_awaiting_review, case_for, hours_before

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def queue_order(clinician, now: datetime = NOW) -> list[int]:
    cases = services.case_queue_filter(cases=case_list_for_user(user=clinician))
    return [case.pk for case in services.case_queue(cases=cases, now=now)]


def test_the_highest_mpox_probability_comes_first(nurse, clinician) -> None:
    low = case_awaiting_review(nurse, "A1", mpox=0.2, opened=NOW)
    high = case_awaiting_review(nurse, "A2", mpox=0.9, opened=NOW)
    middle = case_awaiting_review(nurse, "A3", mpox=0.5, opened=NOW)
    assert queue_order(clinician) == [high.pk, middle.pk, low.pk]


def test_early_stage_sensitive_sites_and_inconclusive_results_rank_higher(nurse, clinician) -> None:
    plain = case_awaiting_review(nurse, "B1", mpox=0.6, opened=NOW)
    early_face = case_awaiting_review(nurse, "B2", mpox=0.4, body_part="face", stage="early", opened=NOW)
    inconclusive = case_awaiting_review(nurse, "B3", mpox=0.35, inconclusive=True, opened=NOW)
    # 0.4 + 0.15 + 0.15 = 0.7 and 0.35 + 0.3 = 0.65 both beat 0.6.
    assert queue_order(clinician) == [early_face.pk, inconclusive.pk, plain.pk]


def test_waiting_time_ages_a_case_upward_by_whole_hours_up_to_a_cap(nurse, clinician) -> None:
    fresh = case_awaiting_review(nurse, "C1", mpox=0.45, opened=NOW)
    waited = case_awaiting_review(nurse, "C2", mpox=0.3, opened=hours_before(NOW, 4.5))  # 0.3 + 4 * 0.05
    assert queue_order(clinician) == [waited.pk, fresh.pk]
    # Four hours earlier it had waited half an hour and ranked below the riskier case.
    assert queue_order(clinician, hours_before(NOW, 4)) == [fresh.pk, waited.pk]
    # The cap: a day and a week of waiting weigh the same.
    day = case_awaiting_review(nurse, "C3", mpox=0.1, opened=hours_before(NOW, 24))
    week = case_awaiting_review(nurse, "C4", mpox=0.1, opened=hours_before(NOW, 24 * 7))
    queue = services.case_queue(cases=Case.objects.all(), now=NOW)
    scores = {case.pk: case.priority for case in queue}  # type: ignore[attr-defined]  # annotated in SQL
    assert scores[day.pk] == pytest.approx(scores[week.pk]) == pytest.approx(0.1 + services.PRIORITY_MAX_HOURS * 0.05)


def test_the_page_shows_waiting_time_and_the_claim_holder(nurse, clinician) -> None:
    colleague = make_user("clinician", "dr-two")
    case = case_awaiting_review(nurse, "D1", mpox=0.7, opened=hours_before(datetime.now(UTC), 2 + 10 / 60 + 0.001))
    services.case_claim(case=case, user=colleague)
    body = client_for(clinician).get("/review/").content.decode()
    assert f"/cases/{case.pk}/" in body
    assert "waiting 2 h 10 min" in body
    assert "held by dr-two" in body
    assert "•••••D1" in body
    assert 'hx-trigger="every 15s"' in body


def test_reviewed_and_unanalysed_cases_are_not_in_the_default_queue(nurse, clinician) -> None:
    waiting = case_awaiting_review(nurse, "E1", mpox=0.5)
    unanalysed = case_for(nurse, "E2")
    body = client_for(clinician).get("/review/").content.decode()
    assert f"/cases/{waiting.pk}/" in body
    assert f"/cases/{unanalysed.pk}/" not in body
    every = client_for(clinician).get("/review/?status=all").content.decode()
    assert f"/cases/{unanalysed.pk}/" in every


def test_filters_by_body_part_stage_and_ai_label(nurse, clinician) -> None:
    face = case_awaiting_review(nurse, "F1", mpox=0.9, body_part="face", stage="early")
    arm = case_awaiting_review(nurse, "F2", mpox=0.1, body_part="arm", stage="later")
    client = client_for(clinician)
    body = client.get("/review/?body_part=face").content.decode()
    assert f"/cases/{face.pk}/" in body
    assert f"/cases/{arm.pk}/" not in body
    body = client.get("/review/?stage=later").content.decode()
    assert f"/cases/{arm.pk}/" in body
    assert f"/cases/{face.pk}/" not in body
    body = client.get("/review/?ai_label=chickenpox").content.decode()
    assert f"/cases/{arm.pk}/" in body
    assert f"/cases/{face.pk}/" not in body


def test_the_htmx_refresh_gets_only_the_list(nurse, clinician) -> None:
    case_awaiting_review(nurse, "G1", mpox=0.5)
    response = client_for(clinician).get("/review/", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="queue-list"' in body
    assert "<html" not in body


def test_the_queue_is_paginated(nurse, clinician, monkeypatch) -> None:
    monkeypatch.setattr("diagnosis.views.QUEUE_PAGE_SIZE", 2)
    for n in range(3):
        case_awaiting_review(nurse, f"H{n}", mpox=0.5)
    client = client_for(clinician)
    assert "Page 1 of 2" in client.get("/review/").content.decode()
    assert "Page 2 of 2" in client.get("/review/?page=2").content.decode()


def test_the_queue_page_runs_a_fixed_number_of_queries(nurse, clinician, django_assert_max_num_queries) -> None:
    for n in range(12):
        case_awaiting_review(nurse, f"Q{n}", mpox=n / 12, body_part="genital" if n % 2 else "arm")
    client = client_for(clinician)
    # session, user, roles, count, page of cases, their images, the badge; the audit entry's four (savepoint, chain
    # head, insert, release), plus the chain's advisory lock on PostgreSQL; the session's activity stamp (savepoint,
    # update, release).
    with django_assert_max_num_queries(15 + (connection.vendor == "postgresql")):
        response = client.get("/review/")
    assert response.content.decode().count('class="queue-row"') == 12


def test_sensitive_thumbnails_are_blurred(nurse, clinician) -> None:
    case_awaiting_review(nurse, "S1", mpox=0.5, body_part="genital")
    body = client_for(clinician).get("/review/").content.decode()
    assert 'class="thumb blurred"' in body


def test_the_nav_badge_counts_cases_awaiting_review_for_clinicians(nurse, clinician) -> None:
    case_awaiting_review(nurse, "N1", mpox=0.5)
    case_awaiting_review(nurse, "N2", mpox=0.5)
    body = client_for(clinician).get("/cases/").content.decode()
    assert 'aria-label="2 awaiting review"' in body
    assert "queue-badge" not in client_for(nurse).get("/cases/").content.decode()


def test_a_nurse_may_not_open_the_queue(nurse) -> None:
    assert client_for(nurse).get("/review/").status_code == 403


def test_an_auditor_may_read_the_queue(auditor) -> None:
    assert client_for(auditor).get("/review/").status_code == 200


def test_anonymous_visitors_are_sent_to_log_in() -> None:
    response = Client().get("/review/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_the_disagreement_link_filters_the_cases_whose_clinicians_disagree(nurse, clinician) -> None:
    colleague = make_user("clinician", "dr-two")
    decision: dict[str, Any] = {"confidence": "sure", "disposition": "test_only"}

    def reviewed(identifier: str, first: str, second: str) -> tuple[Case, Review]:
        case = case_awaiting_review(nurse, identifier, mpox=0.5)
        review = services.review_record(case=case, reviewer=clinician, expected_version=0, label=first, **decision)
        services.review_record(case=case, reviewer=colleague, expected_version=1, label=second, **decision)
        return case, review

    disagree, _ = reviewed("G1", "mpox", "chickenpox")
    agree, _ = reviewed("G2", "mpox", "mpox")
    settled, mine = reviewed("G3", "mpox", "measles")
    services.review_amend(
        review=mine, reviewer=clinician, expected_version=2, reason="Koplik spots", label="measles", **decision
    )
    waiting = case_awaiting_review(nurse, "G4", mpox=0.9)
    client = client_for(clinician)

    page = client.get("/review/").content.decode()
    assert '<a href="?disagreement=1">1 case</a> with clinicians who disagree.' in page
    body = client.get("/review/?disagreement=1").content.decode()
    assert f"/cases/{disagree.pk}/" in body
    for other in (agree, settled, waiting):
        assert f"/cases/{other.pk}/" not in body
    # The filter combines with the others: no case awaiting review has a disagreement.
    body = client.get("/review/?disagreement=1&status=awaiting_review").content.decode()
    assert f"/cases/{disagree.pk}/" not in body
    assert 'name="disagreement"' in body
