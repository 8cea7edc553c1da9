"""Reads are audited: the case list and page, the review queue, photos and heatmaps; refused reads are recorded too."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from diagnosis import services
from diagnosis.models import Analysis, AuditEntry
from tests.conftest import client_for
from tests.diagnosis.helpers import case_awaiting_review, case_for, image_for

pytestmark = pytest.mark.django_db

IP = "10.20.30.40"


def only_entry(action: str) -> AuditEntry:
    return AuditEntry.objects.get(action=action)


def assert_entry(entry: AuditEntry, user: User, *, object_type: str = "", object_id: object = "", **fields: object):
    assert (entry.actor_user_id, entry.actor_label) == (user.pk, user.username)
    assert (entry.object_type, entry.object_id) == (object_type, str(object_id))
    assert entry.source_ip == IP
    for name, value in fields.items():
        assert getattr(entry, name) == value, name


def test_opening_a_case_records_who_viewed_it_and_from_where(nurse) -> None:
    case = case_for(nurse)
    assert client_for(nurse).get(f"/cases/{case.pk}/", REMOTE_ADDR=IP).status_code == 200
    assert_entry(
        only_entry("case_view"),
        nurse,
        object_type="case",
        object_id=case.pk,
        patient_id=case.patient_id,
        case_id=case.pk,
        outcome="success",
    )


def test_the_case_list_records_a_view_without_an_object(nurse) -> None:
    case_for(nurse)
    assert client_for(nurse).get("/cases/", REMOTE_ADDR=IP).status_code == 200
    assert_entry(only_entry("case_list_view"), nurse, patient_id=None, case_id=None, outcome="success")


def test_the_review_queue_records_the_page_and_its_filters_but_not_its_refreshes(nurse, clinician) -> None:
    case_awaiting_review(nurse, "Q1", mpox=0.7, body_part="genital")
    client = client_for(clinician)
    assert client.get("/review/?body_part=genital", REMOTE_ADDR=IP).status_code == 200
    assert_entry(only_entry("queue_view"), clinician, outcome="success", detail={"body_part": "genital"})
    # The page re-fetches its list every 15 s through htmx: those refreshes are not new views.
    assert client.get("/review/?body_part=genital", HTTP_HX_REQUEST="true").status_code == 200
    assert AuditEntry.objects.filter(action="queue_view").count() == 1


def test_a_nurse_refused_the_queue_is_recorded_as_denied(nurse) -> None:
    assert client_for(nurse).get("/review/", REMOTE_ADDR=IP).status_code == 403
    assert_entry(only_entry("queue_view"), nurse, outcome="denied")


def test_fetching_a_photo_records_a_photo_view(nurse) -> None:
    image = image_for(case_for(nurse))
    response = client_for(nurse).get(f"/images/{image.pk}/photo", REMOTE_ADDR=IP)
    assert response.status_code == 200
    assert_entry(
        only_entry("photo_view"),
        nurse,
        object_type="lesionimage",
        object_id=image.pk,
        patient_id=image.case.patient_id,
        case_id=image.case_id,
        outcome="success",
    )


@pytest.mark.parametrize("kind", ["overlay", "heatmap"])
def test_fetching_a_heatmap_records_a_heatmap_view(nurse, predictor, kind: str) -> None:
    image = image_for(case_for(nurse))
    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)
    assert analysis is not None
    assert analysis.status == Analysis.Status.DONE
    response = client_for(nurse).get(f"/analyses/{analysis.pk}/{kind}.png", REMOTE_ADDR=IP)
    assert response.status_code == 200
    assert_entry(
        only_entry("heatmap_view"),
        nurse,
        object_type="analysis",
        object_id=analysis.pk,
        patient_id=image.case.patient_id,
        case_id=image.case_id,
        outcome="success",
        detail={"kind": kind},
    )


def test_the_status_polling_fragment_is_not_recorded(nurse) -> None:
    image = image_for(case_for(nurse))
    client = client_for(nurse)
    before = AuditEntry.objects.count()
    assert client.get(f"/images/{image.pk}/status").status_code == 200
    assert AuditEntry.objects.count() == before


def test_a_missing_photo_file_answers_404_and_records_no_view(nurse, private_storage) -> None:
    image = image_for(case_for(nurse))
    (private_storage / image.file.name).unlink()
    assert client_for(nurse).get(f"/images/{image.pk}/photo").status_code == 404
    assert not AuditEntry.objects.filter(action="photo_view").exists()


# Transactional: the entry must be committed although the view answers 404, not rolled back with it.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "action", "object_type"),
    [
        ("/cases/{case}/", "case_view", "case"),
        ("/images/{image}/photo", "photo_view", "lesionimage"),
        ("/images/{image}/reveal", "photo_reveal", "lesionimage"),
        ("/cases/{case}/images", "upload", "case"),
    ],
)
def test_another_nurses_record_answers_404_and_the_attempt_is_recorded(
    nurse, other_nurse, path: str, action: str, object_type: str
) -> None:
    case = case_for(other_nurse, "MRN-SECRET-77")
    image = image_for(case)
    url = path.format(case=case.pk, image=image.pk)
    client = client_for(nurse)
    response = (
        client.post(url, REMOTE_ADDR=IP) if action in ("photo_reveal", "upload") else client.get(url, REMOTE_ADDR=IP)
    )
    assert response.status_code == 404
    entry = AuditEntry.objects.get(outcome="denied")
    object_id = case.pk if object_type == "case" else image.pk
    assert_entry(entry, nurse, object_type=object_type, object_id=object_id, action=action, case_id=case.pk, detail={})
    assert entry.patient_id == case.patient_id
    assert "MRN-SECRET-77" not in str(entry.detail) + entry.actor_label + entry.object_id


def test_a_probe_for_a_case_that_does_not_exist_is_recorded_by_its_id(nurse) -> None:
    assert client_for(nurse).get("/cases/999999/", REMOTE_ADDR=IP).status_code == 404
    assert_entry(
        only_entry("case_view"), nurse, object_type="case", object_id=999999, outcome="denied", patient_id=None
    )
