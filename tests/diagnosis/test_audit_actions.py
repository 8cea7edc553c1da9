"""Every domain action leaves one audit entry, written in the action's own transaction (issue 5, "What is recorded")."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from diagnosis import api_auth, services, tasks
from diagnosis.audit import audit_chain_verify
from diagnosis.models import Analysis, AuditEntry, Case, LabResult, LesionImage, ModelVersion, RevealEvent, Review
from tests.conftest import make_user
from tests.diagnosis.helpers import case_awaiting_review, case_for, image_for
from tests.model_weights import build_random_checkpoint
from tests.photos import jpeg_bytes

pytestmark = pytest.mark.django_db

IP = "192.0.2.17"
DECISION: dict[str, Any] = {
    "label": "mpox",
    "confidence": "sure",
    "disposition": "isolate_and_test",
    "note": "Patient John Doe, umbilicated papules.",
}


def browser(user: User) -> Client:
    client = Client(REMOTE_ADDR=IP)
    client.force_login(user)
    return client


def only_entry(action: str) -> AuditEntry:
    return AuditEntry.objects.get(action=action)


def assert_entry(entry: AuditEntry, user: User | None, obj: Any, case: Case, **fields: object) -> None:
    """Actor, object, patient and case references, source IP and outcome of ``entry``."""
    assert entry.actor_user_id == (user.pk if user else None)
    assert entry.object_type == obj._meta.model_name
    assert entry.object_id == str(obj.pk)
    assert (entry.patient_id, entry.case_id) == (case.patient_id, case.pk)
    expected = {"source_ip": IP, "outcome": "success", **fields}
    for name, value in expected.items():
        assert getattr(entry, name) == value, name


def upload(client: Client, case: Case, data: bytes, **tags: str):
    fields = {"body_part": "arm", "stage": "early", **tags}
    return client.post(f"/cases/{case.pk}/images", {"photo": SimpleUploadedFile("p.jpg", data), **fields})


def post_review(client: Client, case: Case, **fields: object):
    case.refresh_from_db()
    return client.post(f"/cases/{case.pk}/reviews", {**DECISION, "version": case.version, **fields})


def test_opening_a_case_is_recorded_with_the_patient_reference_not_the_identifier(nurse) -> None:
    response = browser(nurse).post("/cases/new", {"hospital_identifier": "MRN-4711"})
    assert response.status_code == 302
    case = Case.objects.get()
    entry = only_entry("case_create")
    assert_entry(entry, nurse, case, case, actor_label="nurse", detail={"new_patient": True})
    assert "MRN-4711" not in str(entry.detail)

    # The same patient's second case: the patient is not new.
    browser(nurse).post("/cases/new", {"hospital_identifier": "MRN-4711"})
    second = AuditEntry.objects.filter(action="case_create").order_by("seq").last()
    assert second is not None
    assert second.detail == {"new_patient": False}


def test_an_upload_is_recorded_with_its_analysis(nurse) -> None:
    case = case_for(nurse)
    assert upload(browser(nurse), case, jpeg_bytes()).status_code == 302
    image = LesionImage.objects.get()
    assert_entry(only_entry("upload"), nurse, image, case, detail={"analysis_id": image.analyses.get().pk})


def test_an_upload_refused_by_validation_leaves_no_upload_entry(nurse) -> None:
    case = case_for(nurse)
    assert upload(browser(nurse), case, b"not a photo at all").status_code == 400
    assert not LesionImage.objects.exists()
    assert not AuditEntry.objects.filter(action="upload").exists()


def test_the_worker_records_a_completed_analysis_without_a_user(nurse, predictor) -> None:
    image = image_for(case_for(nurse))
    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)
    assert analysis is not None
    assert analysis.status == Analysis.Status.DONE
    assert analysis.model_version is not None
    entry = only_entry("analysis_done")
    assert_entry(
        entry,
        None,
        analysis,
        image.case,
        actor_label="worker",
        source_ip=None,
        detail={
            "label": analysis.label,
            "inconclusive": analysis.inconclusive,
            "model_version": analysis.model_version.version,
        },
    )
    assert "probabilities" not in entry.detail


def test_the_worker_records_a_failed_analysis(nurse, predictor) -> None:
    image = image_for(case_for(nurse))
    with image.file.open("wb") as handle:
        handle.write(b"not a photo any more")
    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)
    assert analysis is not None
    assert analysis.status == Analysis.Status.FAILED
    entry = only_entry("analysis_failed")
    assert_entry(entry, None, analysis, image.case, actor_label="worker", source_ip=None, outcome="failed")
    assert not AuditEntry.objects.filter(action="analysis_done").exists()


def test_the_stale_sweep_records_the_analysis_it_gives_up_on(nurse, settings) -> None:
    settings.MPOX_ANALYSIS_STALE_SECONDS = 120
    settings.MPOX_ANALYSIS_MAX_ATTEMPTS = 3
    image = image_for(case_for(nurse))
    analysis = image.analyses.get()
    long_ago = analysis.queued_at - timedelta(seconds=121)
    Analysis.objects.filter(pk=analysis.pk).update(status=Analysis.Status.RUNNING, started_at=long_ago, attempts=3)
    tasks.analysis_requeue_stale.apply(throw=True)
    analysis.refresh_from_db()
    assert analysis.status == Analysis.Status.FAILED
    entry = only_entry("analysis_failed")
    assert_entry(entry, None, analysis, image.case, actor_label="worker", source_ip=None, outcome="failed")


def test_taking_a_claim_is_recorded_once_and_releasing_it_too(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "C1", mpox=0.5)
    client = browser(clinician)
    client.get(f"/cases/{case.pk}/")
    client.get(f"/cases/{case.pk}/")  # renewing one's own claim is not a new claim
    assert_entry(only_entry("case_claim"), clinician, case, case)
    assert client.post(f"/cases/{case.pk}/release").status_code == 302
    assert_entry(only_entry("case_release"), clinician, case, case)
    # Releasing what one does not hold changes nothing and records nothing.
    client.post(f"/cases/{case.pk}/release")
    assert AuditEntry.objects.filter(action="case_release").count() == 1


def test_a_review_and_its_amendment_are_recorded_without_the_note(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "C2", mpox=0.8)
    client = browser(clinician)
    assert post_review(client, case).status_code == 302
    review = Review.objects.get()
    decision = {"label": "mpox", "confidence": "sure", "disposition": "isolate_and_test", "image_id": None}
    assert_entry(only_entry("review"), clinician, review, case, detail={**decision, "second_read": False})

    response = post_review(client, case, amends=review.pk, label="chickenpox", amendment_reason="Crusted")
    assert response.status_code == 302
    amendment = Review.objects.get(amends=review)
    assert_entry(
        only_entry("amendment"),
        clinician,
        amendment,
        case,
        detail={**decision, "label": "chickenpox", "second_read": False, "amends": review.pk},
    )
    details = str(list(AuditEntry.objects.values_list("detail", flat=True)))
    assert "John Doe" not in details
    assert "Crusted" not in details


def test_a_review_refused_for_a_stale_version_leaves_no_review_entry(nurse, clinician) -> None:
    colleague = make_user("clinician", "dr-two")
    case = case_awaiting_review(nurse, "C3", mpox=0.8)
    shown = case.version
    assert post_review(browser(colleague), case, label="chickenpox").status_code == 302
    response = browser(clinician).post(f"/cases/{case.pk}/reviews", {**DECISION, "version": shown})
    assert response.status_code == 409
    assert list(AuditEntry.objects.filter(action="review").values_list("actor_label", flat=True)) == ["dr-two"]


def test_a_lab_result_is_recorded_without_the_sample_reference(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "C4", mpox=0.8)
    data = {"pcr": "negative", "collected_on": "2026-03-01", "sample_reference": "LAB-2026-0042", "version": 0}
    assert browser(clinician).post(f"/cases/{case.pk}/lab-results", data).status_code == 302
    result = LabResult.objects.get()
    entry = only_entry("lab_result")
    assert_entry(entry, clinician, result, case, detail={"pcr": "negative"})
    assert "LAB-2026-0042" not in str(entry.detail)


def test_revealing_a_sensitive_photo_is_recorded_in_both_places(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "C5", mpox=0.5, body_part="genital")
    image = case.images.get()
    assert browser(clinician).post(f"/images/{image.pk}/reveal").status_code == 302
    assert RevealEvent.objects.get().user == clinician
    assert_entry(only_entry("photo_reveal"), clinician, image, case)


def test_activating_other_weights_is_a_recorded_model_version_change(db, predictor, settings, tmp_path) -> None:
    call_command("activate_model", stdout=io.StringIO())
    first = ModelVersion.objects.get(active=True)
    entry = only_entry("model_version_change")
    assert (entry.actor_user_id, entry.actor_label, entry.source_ip) == (None, "manage.py activate_model", None)
    assert (entry.object_type, entry.object_id) == ("modelversion", str(first.pk))
    assert entry.detail == {"version": first.version, "weights_sha256": first.weights_sha256, "replaced": []}

    # Confirming the active version (every worker does it as it starts) is not a change.
    call_command("activate_model", stdout=io.StringIO())
    assert AuditEntry.objects.filter(action="model_version_change").count() == 1

    from diagnosis import inference

    settings.MPOX_MODEL_WEIGHTS = build_random_checkpoint(tmp_path / "other.pt", seed=1)
    inference.predictor_reset()
    call_command("activate_model", stdout=io.StringIO())
    second = ModelVersion.objects.get(active=True)
    latest = AuditEntry.objects.filter(action="model_version_change").order_by("seq").last()
    assert latest is not None
    assert latest.object_id == str(second.pk)
    assert latest.detail["replaced"] == [first.version]


def test_an_action_whose_audit_entry_cannot_be_written_does_not_happen(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "C6", mpox=0.8)
    client = browser(clinician)
    client.get(f"/cases/{case.pk}/")
    client.raise_request_exception = False
    # The audit table refuses new rows from here on (a real database failure, not a stand-in).
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'audit store unavailable'; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER audit_refuse BEFORE INSERT ON diagnosis_auditentry "
                "FOR EACH ROW EXECUTE FUNCTION audit_refuse()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER audit_refuse BEFORE INSERT ON diagnosis_auditentry "
                "BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END"
            )
    assert post_review(client, case).status_code == 500
    assert not Review.objects.exists()
    case.refresh_from_db()
    assert (case.status, case.version) == (Case.Status.AWAITING_REVIEW, 0)


def test_a_case_opened_by_an_api_submission_that_then_fails_leaves_no_entry() -> None:
    # The API opens the case and stores the photo in one transaction: a corrupt photo rolls the case back, and its
    # case_create entry with it.
    _, token = api_auth.api_client_create("ehr-audit", ["submit"])
    client = APIClient(REMOTE_ADDR=IP)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    form = {"body_part": "arm", "stage": "early", "patient_id": "MRN-9", "image": io.BytesIO(b"\xff\xd8 truncated")}
    response = client.post("/api/v1/analyses", form, format="multipart")
    assert 400 <= response.status_code < 500
    assert not Case.objects.exists()
    assert not AuditEntry.objects.filter(action__in=["case_create", "upload"]).exists()


def test_the_chain_verifies_after_a_busy_session(nurse, clinician, auditor, predictor) -> None:
    nurse_client, clinician_client, auditor_client = browser(nurse), browser(clinician), browser(auditor)
    nurse_client.post("/cases/new", {"hospital_identifier": "MRN-1"})
    case = Case.objects.get()
    upload(nurse_client, case, jpeg_bytes(seed=1), body_part="genital")
    upload(nurse_client, case, jpeg_bytes(seed=2))
    for analysis in Analysis.objects.order_by("pk"):
        services.analysis_run(analysis_id=analysis.pk)
    images = list(case.images.order_by("pk"))
    clinician_client.get("/review/")
    clinician_client.get(f"/cases/{case.pk}/")
    clinician_client.post(f"/images/{images[0].pk}/reveal")
    clinician_client.get(f"/images/{images[0].pk}/photo")
    clinician_client.get(f"/analyses/{images[0].analyses.get().pk}/overlay.png")
    post_review(clinician_client, case)
    post_review(clinician_client, case, amends=Review.objects.get().pk, label="measles", amendment_reason="Rash")
    case.refresh_from_db()
    clinician_client.post(
        f"/cases/{case.pk}/lab-results",
        {"pcr": "positive", "collected_on": "2026-03-01", "sample_reference": "S-1", "version": case.version},
    )
    auditor_client.get("/cases/")
    auditor_client.get(f"/cases/{case.pk}/")

    recorded = set(AuditEntry.objects.values_list("action", flat=True))
    assert {
        "case_create",
        "upload",
        "analysis_done",
        "queue_view",
        "case_claim",
        "case_view",
        "photo_reveal",
        "photo_view",
        "heatmap_view",
        "review",
        "amendment",
        "lab_result",
        "case_list_view",
    } <= recorded
    report = audit_chain_verify()
    assert report.intact
    assert report.checked == AuditEntry.objects.count()
