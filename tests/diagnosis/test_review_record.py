from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from diagnosis import services
from diagnosis.models import Case, Review
from tests.conftest import client_for, make_user
from tests.diagnosis.helpers import case_awaiting_review, image_for

pytestmark = pytest.mark.django_db

DECISION: dict[str, Any] = {
    "label": "mpox",
    "confidence": "sure",
    "disposition": "isolate_and_test",
    "note": "Umbilicated papules.",
}


def post_review(user, case: Case, **fields: object):
    data = {**DECISION, "version": case.version, **fields}
    return client_for(user).post(f"/cases/{case.pk}/reviews", data)


def test_a_clinician_records_a_review_and_the_case_is_reviewed(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "R1", mpox=0.8)
    response = post_review(clinician, case)
    assert response.status_code == 302
    assert response["Location"] == f"/cases/{case.pk}/#reviews"
    review = Review.objects.get()
    assert (review.label, review.confidence, review.disposition) == ("mpox", "sure", "isolate_and_test")
    assert review.reviewer == clinician
    assert review.image is None
    assert not review.is_second_read
    case.refresh_from_db()
    assert case.status == Case.Status.REVIEWED
    assert case.version == 1
    body = client_for(clinician).get(f"/cases/{case.pk}/").content.decode()
    assert "Umbilicated papules." in body


def test_a_review_of_one_photo_leaves_the_case_awaiting_review(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "R2", mpox=0.8)
    image = case.images.get()
    assert post_review(clinician, case, image=image.pk).status_code == 302
    assert Review.objects.get().image == image
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW


def test_a_stale_version_is_refused_with_what_changed(nurse, clinician) -> None:
    colleague = make_user("clinician", "dr-two")
    case = case_awaiting_review(nurse, "R3", mpox=0.8)
    shown = case.version
    assert post_review(colleague, case, label="chickenpox").status_code == 302
    response = client_for(clinician).post(f"/cases/{case.pk}/reviews", {**DECISION, "version": shown})
    assert response.status_code == 409
    body = response.content.decode()
    assert "This case changed while you were looking at it" in body
    assert "dr-two recorded a review (Chickenpox, sure)" in body
    assert Review.objects.count() == 1
    # The answers are kept against the new version: saving again is a deliberate second click.
    assert 'name="version" value="1"' in body
    assert 'value="mpox" id="id_label_0" required checked' in body


def test_a_second_clinician_adds_a_second_read_and_the_disagreement_shows(nurse, clinician) -> None:
    colleague = make_user("clinician", "dr-two")
    case = case_awaiting_review(nurse, "R4", mpox=0.8)
    post_review(clinician, case)
    case.refresh_from_db()
    assert post_review(colleague, case, label="chickenpox").status_code == 302
    second = Review.objects.get(reviewer=colleague)
    assert second.is_second_read
    assert services.case_disagreement(case=case)
    assert services.case_disagreement_count(cases=Case.objects.all()) == 1
    assert "1 case</a> with clinicians who disagree." in client_for(clinician).get("/review/").content.decode()
    assert "The clinicians disagree on this case." in client_for(clinician).get(f"/cases/{case.pk}/").content.decode()


def test_the_same_clinician_must_amend_rather_than_review_again(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "R5", mpox=0.8)
    post_review(clinician, case)
    case.refresh_from_db()
    response = post_review(clinician, case)
    assert response.status_code == 400
    assert "amend your review instead" in response.content.decode()


def test_an_amendment_needs_a_reason_and_keeps_the_history(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "R6", mpox=0.8)
    post_review(clinician, case)
    first = Review.objects.get()
    case.refresh_from_db()
    response = post_review(clinician, case, amends=first.pk, label="chickenpox")
    assert response.status_code == 400
    assert "Say why the review is amended." in response.content.decode()
    assert Review.objects.count() == 1

    response = post_review(clinician, case, amends=first.pk, label="chickenpox", amendment_reason="Lesions crusted")
    assert response.status_code == 302
    amendment = Review.objects.get(amends=first)
    assert amendment.label == "chickenpox"
    assert amendment.amendment_reason == "Lesions crusted"
    first.refresh_from_db()
    assert first.label == "mpox"  # never edited
    case.refresh_from_db()
    assert case.amended
    body = client_for(clinician).get(f"/cases/{case.pk}/").content.decode()
    assert f"Amends review {first.pk}: Lesions crusted" in body
    assert 'class="superseded"' in body


def test_an_amended_review_cannot_be_amended_again(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "R7", mpox=0.8)
    first = services.review_record(case=case, reviewer=clinician, expected_version=0, **DECISION)
    services.review_amend(review=first, reviewer=clinician, expected_version=1, reason="typo", **DECISION)
    with pytest.raises(ValidationError):
        services.review_amend(review=first, reviewer=clinician, expected_version=2, reason="again", **DECISION)


def test_a_review_needs_every_choice(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "R8", mpox=0.8)
    response = client_for(clinician).post(f"/cases/{case.pk}/reviews", {"version": case.version})
    assert response.status_code == 400
    assert "Choose the confirmed label." in response.content.decode()
    assert not Review.objects.exists()


@pytest.mark.parametrize("role", ["nurse", "auditor", "admin"])
def test_only_clinicians_review(nurse, role) -> None:
    case = case_awaiting_review(nurse, "R9", mpox=0.8)
    user = nurse if role == "nurse" else make_user(role)
    assert post_review(user, case).status_code == 403
    assert not Review.objects.exists()


def test_another_nurses_case_is_not_found(nurse, other_nurse) -> None:
    case = case_awaiting_review(other_nurse, "R10", mpox=0.8)
    assert post_review(nurse, case).status_code == 404


def test_nurses_and_auditors_see_the_review_but_no_form(nurse, auditor, clinician) -> None:
    case = case_awaiting_review(nurse, "R11", mpox=0.8)
    post_review(clinician, case)
    for user in (nurse, auditor):
        body = client_for(user).get(f"/cases/{case.pk}/").content.decode()
        assert "Umbilicated papules." in body
        assert 'id="review-form"' not in body
        assert "Reviewed" in body


def test_a_photo_added_after_the_review_sends_the_case_back_to_the_queue(nurse, clinician, predictor) -> None:
    case = case_awaiting_review(nurse, "R12", mpox=0.8)
    post_review(clinician, case)
    case.refresh_from_db()
    assert case.status == Case.Status.REVIEWED
    image = image_for(case, nurse)
    case.refresh_from_db()
    assert case.status == Case.Status.REVIEWED  # nothing new to see until the analysis is done
    services.analysis_run(analysis_id=image.analyses.get().pk)
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW
    assert f"/cases/{case.pk}/" in client_for(clinician).get("/review/").content.decode()

    # The clinician looks at the new photo and amends their decision: the case is reviewed again.
    response = post_review(clinician, case, amends=Review.objects.get().pk, amendment_reason="New photo seen")
    assert response.status_code == 302
    case.refresh_from_db()
    assert case.status == Case.Status.REVIEWED


def test_a_photo_added_to_a_closed_case_leaves_it_closed(nurse, clinician, predictor) -> None:
    case = case_awaiting_review(nurse, "R13", mpox=0.8)
    Case.objects.filter(pk=case.pk).update(status=Case.Status.CLOSED)
    image = image_for(case, nurse)
    services.analysis_run(analysis_id=image.analyses.get().pk)
    case.refresh_from_db()
    assert case.status == Case.Status.CLOSED


def test_a_review_form_opened_before_a_new_photo_was_analysed_is_refused(nurse, clinician, predictor) -> None:
    case = case_awaiting_review(nurse, "R9", mpox=0.8)
    assert post_review(clinician, case).status_code == 302
    case.refresh_from_db()
    shown = case.version
    services.analysis_run(analysis_id=image_for(case).analyses.get().pk)
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW
    assert case.version == shown + 1
    response = client_for(clinician).post(f"/cases/{case.pk}/reviews", {**DECISION, "version": shown})
    assert response.status_code == 409
    assert "a new photo&#x27;s result arrived" in response.content.decode()
    assert Review.objects.count() == 1
