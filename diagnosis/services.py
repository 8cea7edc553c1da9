"""Every write and every piece of orchestration in the clinical domain.

Keyword-only, typed, named ``<entity>_<action>``. Views and tasks call these; nothing else writes rows.
"""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kombu
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection, transaction
from django.db.models import Case as SqlCase
from django.db.models import (
    Count,
    Exists,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.http import HttpRequest
from django.utils import timezone
from PIL import Image

from diagnosis.access import ADMIN, ROLES, user_roles
from diagnosis.audit import audit_record
from diagnosis.models import (
    MPOX_CLASS,
    Analysis,
    AuditEntry,
    Case,
    LabResult,
    LesionImage,
    ModelVersion,
    Patient,
    RevealEvent,
    Review,
)
from diagnosis.webhooks import webhook_delivery_create
from ml.imaging import ImageError, ImageTooLargeError, decoded_size, open_image, strip_metadata_and_decode

if TYPE_CHECKING:
    from ml.inference import Predictor

logger = logging.getLogger(__name__)

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
# The upload's decode of a photo is left for the worker up to this size of raw pixels (a 12 MP JPEG's, at the
# model's scale: 0.5 MB; a 640 x 480 PNG's: 0.9 MB); beyond it the worker decodes the photo again.
DECODED_COPY_MAX_BYTES = 8 * 1024 * 1024

MSG_FILE_MISSING = "The stored photo could not be found. Please upload it again."
MSG_MODEL_UNAVAILABLE = (
    "The analysis server could not load the model. The photo is kept; please tell the administrator."
)
MSG_TECHNICAL = "The analysis failed because of a technical problem. The photo is kept; ask a clinician to review it."
MSG_TOO_SLOW = "The analysis took too long and was stopped. The photo is kept; ask a clinician to review it."
MSG_GAVE_UP = (
    "The analysis was interrupted several times and has been stopped. The photo is kept; ask a clinician to review it."
)


# --- patients and cases ---


def case_create(*, hospital_identifier: str, created_by: User, encounter_id: str = "") -> Case:
    """Open a case for the patient with this hospital identifier, registering the patient on first sight.

    ``encounter_id`` is the hospital's visit number when another system sends the case (the API).
    """
    identifier = hospital_identifier.strip()
    if not identifier:
        raise ValidationError({"hospital_identifier": "Enter the patient's hospital identifier."})
    encounter_id = encounter_id.strip()
    if len(encounter_id) > 64:  # Case.encounter_id's max_length
        raise ValidationError({"encounter_id": "The encounter id is too long (64 characters at most)."})
    with transaction.atomic():
        patient, new = Patient.objects.get_or_create(
            hospital_identifier=identifier, defaults={"created_by": created_by}
        )
        case = Case.objects.create(patient=patient, created_by=created_by, encounter_id=encounter_id)
        audit_record(action=AuditEntry.Action.CASE_CREATE, user=created_by, obj=case, detail={"new_patient": new})
    return case


# --- lesion images ---


def lesion_image_create(*, case: Case, data: bytes, body_part: str, stage: str, uploaded_by: User) -> LesionImage:
    """Validate, store and queue one photo for analysis.

    Everything is checked before anything is written: the tags, the size, and the content (the format is sniffed
    from the bytes, never taken from the file name). The stored copy has its metadata (GPS!) stripped; the sha256
    is of the original. The file and the rows appear together or not at all.

    Raises ``ml.imaging.ImageError`` (a sentence for the nurse) or ``ValidationError`` for bad tags.
    """
    if body_part not in LesionImage.BodyPart.values:
        raise ValidationError({"body_part": "Choose the body part the photo shows."})
    if stage not in LesionImage.Stage.values:
        raise ValidationError({"stage": "Choose the stage of the lesion."})
    if len(data) > settings.MPOX_MAX_UPLOAD_BYTES:
        raise ImageTooLargeError(
            f"The file is too large (the limit is {settings.MPOX_MAX_UPLOAD_BYTES / 1024 / 1024:.0f} MB). "
            "Please send a smaller photo."
        )
    # One full decode does all the checking: the format comes from the content (never from the file name), the
    # header's pixel count is checked before any pixel is decoded, and a truncated or corrupt file fails.
    stored, decoded = strip_metadata_and_decode(data)
    with Image.open(io.BytesIO(stored)) as header:
        fmt, (width, height) = str(header.format), header.size
    if width * height > settings.MPOX_MAX_PIXELS:
        raise ImageTooLargeError(
            f"The photo has too many pixels (the limit is {settings.MPOX_MAX_PIXELS / 1e6:g} megapixels). "
            "Please send a smaller photo."
        )

    name = default_storage.save(f"lesions/{uuid.uuid4().hex}.{EXTENSIONS[fmt]}", ContentFile(stored))
    written = [name]
    try:
        if decoded is not None and decoded.width * decoded.height * 3 <= DECODED_COPY_MAX_BYTES:
            # The check's decode, kept for the worker: reading raw pixels back costs a fraction of decoding the
            # photo again (0.3 against 3 ms for a 640 x 480 PNG, 0.5 against 28 ms for a 12 MP JPEG).
            out = io.BytesIO()
            decoded.save(out, format="PPM")
            written.append(default_storage.save(_decoded_copy_name(name), ContentFile(out.getvalue())))
        with transaction.atomic():
            image = LesionImage.objects.create(
                case=case,
                file=name,
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
                image_format=fmt,
                width=width,
                height=height,
                body_part=body_part,
                stage=stage,
                uploaded_by=uploaded_by,
            )
            analysis = analysis_create(image=image)
            audit_record(
                action=AuditEntry.Action.UPLOAD, user=uploaded_by, obj=image, detail={"analysis_id": analysis.pk}
            )
    except BaseException:
        for written_name in written:
            default_storage.delete(written_name)
        raise
    return image


def lesion_image_files_delete(image: LesionImage) -> None:
    """Delete a photo's stored files (the photo and the worker's decoded copy) when its rows were rolled back."""
    for name in (image.file.name, _decoded_copy_name(image.file.name)):
        if name:
            default_storage.delete(name)


def _decoded_copy_name(photo_name: str | None) -> str:
    """Where the upload leaves its photo decoded at reduced scale (raw RGB) for the worker, which deletes it."""
    return f"{photo_name}.decoded.ppm"


def _decoded_copy_open(photo_name: str | None, data: bytes, *, target_short_side: int) -> Image.Image | None:
    """The upload's decoded copy if it is ``open_image(data, target_short_side=...)`` (the same scale), else None."""
    try:
        with default_storage.open(_decoded_copy_name(photo_name), "rb") as handle:
            copy = Image.open(io.BytesIO(handle.read()))
            copy.load()
    except FileNotFoundError:
        return None
    except (OSError, SyntaxError, ValueError):
        logger.warning("the decoded copy of %s is unreadable; decoding the photo instead", photo_name)
        return None
    if (
        copy.format != "PPM"
        or copy.mode != "RGB"
        or copy.size != decoded_size(data, target_short_side=target_short_side)
    ):
        return None  # decoded at another scale than this model's (or not by the upload): decode again
    return copy


# --- analyses ---


def analysis_create(*, image: LesionImage) -> Analysis:
    """Queue an analysis of ``image``; the task is sent only once the surrounding transaction commits."""
    analysis = Analysis.objects.create(image=image)
    transaction.on_commit(partial(_analysis_enqueue, analysis.pk))
    return analysis


def _analysis_enqueue(analysis_id: int) -> None:
    from diagnosis import tasks

    try:
        tasks.analysis_run.delay(analysis_id)
    except Exception:
        # The row is committed and stays queued: the stale sweep sends it again once the broker is back.
        logger.exception("could not send analysis %s to the broker; the stale sweep will retry", analysis_id)


def analysis_run(*, analysis_id: int) -> Analysis | None:
    """Run the model on one queued analysis and store the result, or a message a nurse understands.

    Claims the row first (queued -> running), so a duplicate message does nothing. A bad image is a permanent
    failure; database errors propagate, for the task to retry.
    """
    # Imported here, not at the top: keeps torch out of the web processes.
    from diagnosis import inference
    from ml.inference import heatmap_png, overlay_png

    now = timezone.now()
    claimed = Analysis.objects.filter(pk=analysis_id, status=Analysis.Status.QUEUED).update(
        status=Analysis.Status.RUNNING, started_at=now, attempts=F("attempts") + 1
    )
    if not claimed:
        logger.info("analysis %s is not queued (already taken or gone); skipping", analysis_id)
        return None
    # The case and uploader too: the audit entry names the case, the webhook check looks at the uploader.
    analysis = Analysis.objects.select_related("image__case", "image__uploaded_by").get(pk=analysis_id)

    try:
        with analysis.image.file.open("rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        logger.error("analysis %s: stored photo %s is missing", analysis_id, analysis.image.file.name)
        return _analysis_fail(analysis, MSG_FILE_MISSING)
    try:
        predictor = inference.predictor_get()
    except Exception:
        logger.exception("analysis %s: the model could not be loaded", analysis_id)
        return _analysis_fail(analysis, MSG_MODEL_UNAVAILABLE)

    try:
        # One decode serves the model and the overlay: open_image at the model's resize target is exactly what
        # predict() does with bytes, so the input is the same; the overlay is drawn from it too.
        start = time.perf_counter()
        resize = predictor.checkpoint.preprocessing.resize
        photo = _decoded_copy_open(analysis.image.file.name, data, target_short_side=resize) or open_image(
            data, target_short_side=resize
        )
        decode_ms = (time.perf_counter() - start) * 1000
        prediction = predictor.predict(photo, heatmap=True)
        overlay = heatmap = b""
        if prediction.heatmap is not None:
            overlay = overlay_png(photo, prediction.heatmap, preprocessing=predictor.checkpoint.preprocessing)
            heatmap = heatmap_png(prediction.heatmap)
    except ImageError as exc:
        logger.warning("analysis %s: unusable image (%s)", analysis_id, type(exc).__name__)
        return _analysis_fail(analysis, str(exc))
    except SoftTimeLimitExceeded:
        logger.error("analysis %s hit the soft time limit", analysis_id)
        return _analysis_fail(analysis, MSG_TOO_SLOW)
    except Exception:
        # The traceback goes to the log; the row gets a sentence.
        logger.exception("analysis %s failed", analysis_id)
        return _analysis_fail(analysis, MSG_TECHNICAL)

    model_version = model_version_for_predictor(predictor=predictor)
    written: list[str] = []
    try:
        if overlay:
            stem = uuid.uuid4().hex
            written.append(default_storage.save(f"heatmaps/{stem}-overlay.png", ContentFile(overlay)))
            written.append(default_storage.save(f"heatmaps/{stem}.png", ContentFile(heatmap)))
            analysis.heatmap_overlay.name, analysis.heatmap.name = written
        analysis.status = Analysis.Status.DONE
        analysis.model_version = model_version
        analysis.probabilities = {name: float(p) for name, p in prediction.probabilities.items()}
        analysis.label = prediction.label
        analysis.inconclusive = prediction.inconclusive
        timings = prediction.timings
        analysis.timings = {
            "decode_ms": round(decode_ms + timings.decode_ms, 2),
            "model_ms": round(timings.model_ms, 2),
            "heatmap_ms": round(timings.heatmap_ms, 2),
            "total_ms": round(decode_ms + timings.total_ms, 2),
        }
        analysis.error_message = ""
        analysis.finished_at = timezone.now()
        _analysis_finish(analysis)
    except BaseException:
        for name in written:
            default_storage.delete(name)
        raise
    logger.info("analysis %s done in %.0f ms", analysis_id, analysis.timings.get("total_ms", 0.0))
    return analysis


def _analysis_fail(analysis: Analysis, message: str) -> Analysis:
    analysis.mark_failed(message)
    _analysis_finish(analysis, update_fields=["status", "error_message", "finished_at"])
    return analysis


def _analysis_finish(analysis: Analysis, *, update_fields: list[str] | None = None) -> None:
    """Store a finished (done or failed) analysis, move its case on and record it, all or nothing."""
    done = analysis.status == Analysis.Status.DONE
    detail: dict[str, Any] = {"label": analysis.label, "inconclusive": analysis.inconclusive} if done else {}
    if analysis.model_version is not None:
        detail["model_version"] = analysis.model_version.version
    with transaction.atomic():
        analysis.save(update_fields=update_fields)
        _case_analysed(case_id=analysis.image.case_id)
        webhook_delivery_create(analysis=analysis)  # the submitting API client's notification, sent after commit
        # Last, so that the chain's writer lock is held only for the end of the transaction.
        audit_record(
            action=AuditEntry.Action.ANALYSIS_DONE if done else AuditEntry.Action.ANALYSIS_FAILED,
            obj=analysis,
            outcome=AuditEntry.Outcome.SUCCESS if done else AuditEntry.Outcome.FAILED,
            detail=detail,
            actor_label="worker",
        )
    # The upload's decoded copy has served its purpose; an analysis sent again decodes the photo itself.
    default_storage.delete(_decoded_copy_name(analysis.image.file.name))


def _case_analysed(*, case_id: int) -> None:
    # A finished analysis, even a failed one, puts the case in front of a clinician; on a case already reviewed it
    # is a photo no clinician has seen, so the case goes back to the queue (a closed case stays closed).
    # Sending a reviewed case back raises its version, so a review form opened before the new photo is refused.
    # The case row is locked first: two photos of one case finishing at once are counted one after the other, the
    # second refresh seeing the first one's committed result.
    status = Case.objects.select_for_update().values_list("status", flat=True).get(pk=case_id)
    changes: dict[str, Any] = _case_risk(case_id=case_id)
    if status in (Case.Status.AWAITING_ANALYSIS, Case.Status.REVIEWED):
        changes.update(status=Case.Status.AWAITING_REVIEW, updated_at=timezone.now())
        if status == Case.Status.REVIEWED:
            changes["version"] = F("version") + 1
    Case.objects.filter(pk=case_id).update(**changes)


def analysis_requeue_stale(*, older_than: timedelta, max_attempts: int | None = None) -> int:
    """Send again the analyses left queued or running longer than ``older_than``; returns how many.

    The database row is the source of truth. A worker killed mid-task (power cut, OOM, hard time limit) leaves its
    row running and its message gone (the filesystem broker never redelivers; Redis only after its visibility
    timeout). A row that has been started ``max_attempts`` times fails with a message instead, so a photo that kills
    the worker cannot loop for ever.
    """
    if max_attempts is None:
        max_attempts = settings.MPOX_ANALYSIS_MAX_ATTEMPTS
    cutoff = timezone.now() - older_than
    stale = Q(status=Analysis.Status.QUEUED, queued_at__lt=cutoff) | Q(
        status=Analysis.Status.RUNNING, started_at__lt=cutoff
    )
    requeued = 0
    with transaction.atomic():
        for analysis in Analysis.objects.select_for_update().filter(stale).order_by("pk"):
            if analysis.status == Analysis.Status.RUNNING and analysis.attempts >= max_attempts:
                logger.warning("analysis %s gave up after %s attempts", analysis.pk, analysis.attempts)
                _analysis_fail(analysis, MSG_GAVE_UP)
                continue
            analysis.mark_requeued()
            analysis.save(update_fields=["status", "queued_at", "started_at"])
            transaction.on_commit(partial(_analysis_enqueue, analysis.pk))
            requeued += 1
    if requeued:
        logger.warning("requeued %s stale analyses", requeued)
    return requeued


# --- review queue, claims, reviews and lab results ---

# Priority of a case in the review queue (higher first). The model's mpox probability is the base (0 to 1); the
# bonuses lift the cases a clinician should see sooner; waiting time lifts a case per whole hour, up to a cap.
PRIORITY_EARLY_STAGE = 0.15
PRIORITY_SITE = 0.15  # face, hand, genital / perianal
PRIORITY_INCONCLUSIVE = 0.3
PRIORITY_PER_HOUR = 0.05
PRIORITY_MAX_HOURS = 12
PRIORITY_SITES = (LesionImage.BodyPart.FACE, LesionImage.BodyPart.HAND, LesionImage.BodyPart.GENITAL)


class StaleCaseError(Exception):
    """The case changed after the form was shown; the message says what changed."""


def case_risk_refresh(*, case_id: int) -> None:
    """Store the case's highest mpox probability and its risk (that plus the queue bonuses)."""
    Case.objects.filter(pk=case_id).update(**_case_risk(case_id=case_id))


def _case_risk(*, case_id: int) -> dict[str, float]:
    """``ai_mpox_max`` and ``risk`` from the case's photos and their analyses (one query, summed here: the same
    arithmetic in SQL costs more to build through the ORM than to run)."""
    rows = (
        LesionImage.objects.filter(case_id=case_id)
        .order_by()
        .values_list("stage", "body_part", "analyses__status", "analyses__probabilities", "analyses__inconclusive")
    )
    mpox, early, site, inconclusive = 0.0, False, False, False
    for stage, body_part, status, probabilities, unsure in rows:
        early = early or stage == LesionImage.Stage.EARLY
        site = site or body_part in PRIORITY_SITES
        if status == Analysis.Status.DONE:
            mpox = max(mpox, float(probabilities.get(MPOX_CLASS, 0.0)))
            inconclusive = inconclusive or bool(unsure)
    risk = mpox + PRIORITY_EARLY_STAGE * early + PRIORITY_SITE * site + PRIORITY_INCONCLUSIVE * inconclusive
    return {"ai_mpox_max": mpox, "risk": risk}


def case_queue(*, cases: QuerySet[Case], now: datetime) -> QuerySet[Case]:
    """``cases`` annotated with ``priority`` (the stored risk plus ageing, in SQL) and ordered riskiest first.

    Waiting time counts from the case's creation, by whole hours, so the ordering needs no date arithmetic in SQL.
    """
    ageing = SqlCase(
        *[
            When(created_at__lte=now - timedelta(hours=hours), then=Value(hours * PRIORITY_PER_HOUR))
            for hours in range(PRIORITY_MAX_HOURS, 0, -1)
        ],
        default=Value(0.0),
        output_field=FloatField(),
    )
    return cases.annotate(priority=F("risk") + ageing).order_by("-priority", "created_at", "pk")


def waiting_display(*, since: datetime, now: datetime) -> str:
    """ "2 h 10 min", "45 min": how long a case has waited, for the queue."""
    minutes = max(0, int((now - since).total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def case_queue_filter(
    *,
    cases: QuerySet[Case],
    status: str = "",
    body_part: str = "",
    stage: str = "",
    ai_label: str = "",
    since: date | None = None,
    reviewer: str = "",
    disagreement: bool = False,
) -> QuerySet[Case]:
    """The queue's filters; empty values filter nothing, except ``status``, which defaults to awaiting review.

    ``disagreement`` keeps the cases whose clinicians disagree; with it, an empty ``status`` means any status (such
    cases are usually reviewed already).
    """
    if disagreement:
        cases = cases.filter(pk__in=_case_ids_in_disagreement())
        status = status or "all"
    if status != "all":
        cases = cases.filter(status=status or Case.Status.AWAITING_REVIEW)
    images = LesionImage.objects.filter(case=OuterRef("pk"))
    if body_part:
        cases = cases.filter(Exists(images.filter(body_part=body_part)))
    if stage:
        cases = cases.filter(Exists(images.filter(stage=stage)))
    if ai_label:
        done = Analysis.objects.filter(image__case=OuterRef("pk"), status=Analysis.Status.DONE)
        match = Q(inconclusive=True) if ai_label == "inconclusive" else Q(label=ai_label)
        cases = cases.filter(Exists(done.filter(match)))
    if since:
        cases = cases.filter(created_at__date__gte=since)
    if reviewer:
        cases = cases.filter(Exists(Review.objects.filter(case=OuterRef("pk"), reviewer__username=reviewer)))
    return cases


def case_claim(*, case: Case, user: User, now: datetime | None = None) -> Case:
    """Claim ``case`` for ``user`` unless another clinician's claim is still running; returns the case as stored.

    Renewing one's own running claim is not worth an audit entry (every visit to the case renews it); taking a claim is.
    """
    now = now or timezone.now()
    expired = now - timedelta(minutes=settings.MPOX_CLAIM_MINUTES)
    with transaction.atomic():
        mine = Case.objects.filter(pk=case.pk, claimed_by=user, claimed_at__gt=expired)
        if not mine.update(claimed_at=now):
            free = Q(claimed_by__isnull=True) | Q(claimed_by=user) | Q(claimed_at__lte=expired)
            if Case.objects.filter(free, pk=case.pk).update(claimed_by=user, claimed_at=now):
                audit_record(action=AuditEntry.Action.CASE_CLAIM, user=user, obj=case)
    case.refresh_from_db(fields=["claimed_by", "claimed_at"])
    return case


def case_release(*, case: Case, user: User) -> None:
    """Give up ``user``'s claim on ``case`` (someone else's claim is left alone)."""
    with transaction.atomic():
        if Case.objects.filter(pk=case.pk, claimed_by=user).update(claimed_by=None, claimed_at=None):
            audit_record(action=AuditEntry.Action.CASE_RELEASE, user=user, obj=case)
    case.refresh_from_db(fields=["claimed_by", "claimed_at"])


def _case_lock(*, case: Case, expected_version: int) -> Case:
    """The case row locked for update, or StaleCaseError naming what was saved since ``expected_version``."""
    locked = Case.objects.select_for_update().get(pk=case.pk)
    if locked.version == expected_version:
        return locked
    changes = [
        f"{review.reviewer.get_username()} recorded a review ({review.get_label_display()}, "
        f"{review.get_confidence_display().lower()}) at {timezone.localtime(review.created_at):%H:%M}"
        for review in locked.reviews.filter(case_version__gt=expected_version).select_related("reviewer")
    ] + [
        f"{result.recorded_by.get_username()} recorded a lab result ({result.get_pcr_display()}) "
        f"at {timezone.localtime(result.created_at):%H:%M}"
        for result in locked.lab_results.filter(case_version__gt=expected_version).select_related("recorded_by")
    ]
    raise StaleCaseError(
        "This case changed while you were looking at it: "
        + "; ".join(changes or ["a new photo's result arrived"])
        + ". "
        "Check the history below and save again if your decision still stands."
    )


def review_record(
    *,
    case: Case,
    reviewer: User,
    expected_version: int,
    label: str,
    confidence: str,
    disposition: str,
    note: str = "",
    image: LesionImage | None = None,
) -> Review:
    """Record a clinician's decision on ``case`` (or on one of its photos). Immutable once saved.

    A reviewer who already decided on the same case or photo must amend that review instead; a different
    clinician's decision is a second read. Raises StaleCaseError if the case changed since ``expected_version``.
    """
    _review_check(label=label, confidence=confidence, disposition=disposition)
    if image is not None and image.case_id != case.pk:
        raise ValidationError({"image": "That photo belongs to another case."})
    with transaction.atomic():
        locked = _case_lock(case=case, expected_version=expected_version)
        current = _reviews_final(case=locked).filter(image=image)
        if current.filter(reviewer=reviewer).exists():
            raise ValidationError("You have already reviewed this; amend your review instead.")
        review = _review_save(
            case=locked,
            reviewer=reviewer,
            image=image,
            label=label,
            confidence=confidence,
            disposition=disposition,
            note=note,
            is_second_read=current.exists(),
        )
        audit_record(action=AuditEntry.Action.REVIEW, user=reviewer, obj=review, detail=_review_detail(review))
    return review


def review_amend(
    *,
    review: Review,
    reviewer: User,
    expected_version: int,
    reason: str,
    label: str,
    confidence: str,
    disposition: str,
    note: str = "",
) -> Review:
    """Replace ``review`` with a new one; the reason is mandatory and the old review stays in the history."""
    _review_check(label=label, confidence=confidence, disposition=disposition)
    if not reason.strip():
        raise ValidationError({"amendment_reason": "Say why the review is amended."})
    with transaction.atomic():
        locked = _case_lock(case=review.case, expected_version=expected_version)
        if Review.objects.filter(amends=review).exists():
            raise ValidationError("That review has already been amended; amend the latest one.")
        amendment = _review_save(
            case=locked,
            reviewer=reviewer,
            image=review.image,
            label=label,
            confidence=confidence,
            disposition=disposition,
            note=note,
            is_second_read=review.is_second_read,
            amends=review,
            amendment_reason=reason.strip(),
        )
        Case.objects.filter(pk=locked.pk).update(amended=True)
        detail = {**_review_detail(amendment), "amends": review.pk}
        audit_record(action=AuditEntry.Action.AMENDMENT, user=reviewer, obj=amendment, detail=detail)
    return amendment


def _review_detail(review: Review) -> dict[str, Any]:
    # The decision, not the free-text note (it may name the patient).
    return {
        "label": review.label,
        "confidence": review.confidence,
        "disposition": review.disposition,
        "image_id": review.image_id,
        "second_read": review.is_second_read,
    }


def _review_check(*, label: str, confidence: str, disposition: str) -> None:
    if label not in Review.Label.values:
        raise ValidationError({"label": "Choose the confirmed label."})
    if confidence not in Review.Confidence.values:
        raise ValidationError({"confidence": "Choose how sure you are."})
    if disposition not in Review.Disposition.values:
        raise ValidationError({"disposition": "Choose what happens to the patient."})


def _review_save(*, case: Case, image: LesionImage | None, **fields: object) -> Review:
    case.version += 1
    if image is None and case.status in (Case.Status.AWAITING_ANALYSIS, Case.Status.AWAITING_REVIEW):
        case.status = Case.Status.REVIEWED
    # The decision is saved: the claim has done its job.
    case.claimed_by, case.claimed_at = None, None
    case.save(update_fields=["version", "status", "claimed_by", "claimed_at", "updated_at"])
    return Review.objects.create(case=case, image=image, case_version=case.version, **fields)


def _reviews_final(*, case: Case) -> QuerySet[Review]:
    """The reviews of ``case`` that no amendment replaced."""
    return case.reviews.filter(amended_by__isnull=True)


def case_disagreement(*, case: Case) -> bool:
    """Whether the clinicians' current case-level decisions name different labels."""
    return _reviews_final(case=case).filter(image=None).values("label").distinct().count() > 1


def case_disagreement_count(*, cases: QuerySet[Case]) -> int:
    """How many of ``cases`` have clinicians' current case-level decisions that name different labels."""
    return _case_ids_in_disagreement().filter(case__in=cases).count()


def _case_ids_in_disagreement() -> QuerySet[Review, Any]:
    """The ids (as ``case``) of the cases whose current case-level decisions name different labels."""
    final = Review.objects.filter(image=None, amended_by__isnull=True)
    return final.values("case").annotate(labels=Count("label", distinct=True)).filter(labels__gt=1).values("case")


def lab_result_record(
    *, case: Case, recorded_by: User, expected_version: int, pcr: str, collected_on: date, sample_reference: str
) -> LabResult:
    """Record a PCR result; the case is closed (the laboratory has spoken)."""
    if pcr not in LabResult.Pcr.values:
        raise ValidationError({"pcr": "Choose the PCR result."})
    if not sample_reference.strip():
        raise ValidationError({"sample_reference": "Enter the sample reference."})
    with transaction.atomic():
        locked = _case_lock(case=case, expected_version=expected_version)
        locked.version += 1
        locked.status = Case.Status.CLOSED
        locked.claimed_by, locked.claimed_at = None, None
        locked.save(update_fields=["version", "status", "claimed_by", "claimed_at", "updated_at"])
        result = LabResult.objects.create(
            case=locked,
            recorded_by=recorded_by,
            pcr=pcr,
            collected_on=collected_on,
            sample_reference=sample_reference.strip(),
            case_version=locked.version,
        )
        # The sample reference stays out: it identifies the patient's sample.
        audit_record(action=AuditEntry.Action.LAB_RESULT, user=recorded_by, obj=result, detail={"pcr": pcr})
    return result


class LabResultConflictError(Exception):
    """The laboratory sent a sample again with a different result or date; a person must decide which stands."""


def lab_result_receive(
    *, case: Case, recorded_by: User, pcr: str, collected_on: date, sample_reference: str
) -> tuple[LabResult, bool]:
    """Record a result the laboratory system sent, which cannot know the case's version; returns it and whether new.

    The case's current version is taken under the case's lock. A resend of the same sample with the same result
    returns the stored row (no duplicate); the same sample with a different result or date raises
    LabResultConflictError rather than silently replacing the ground truth.
    """
    with transaction.atomic():
        locked = Case.objects.select_for_update().get(pk=case.pk)
        earlier = locked.lab_results.filter(sample_reference=sample_reference.strip()).order_by("pk").first()
        if earlier is not None:
            if earlier.pcr == pcr and earlier.collected_on == collected_on:
                return earlier, False
            raise LabResultConflictError(
                f"This sample was already reported for this case as {earlier.get_pcr_display()} (collected "
                f"{earlier.collected_on:%Y-%m-%d}). A correction must be entered by a clinician on the case page."
            )
        result = lab_result_record(
            case=locked,
            recorded_by=recorded_by,
            expected_version=locked.version,
            pcr=pcr,
            collected_on=collected_on,
            sample_reference=sample_reference,
        )
    return result, True


NOT_MPOX = "not_mpox"


@dataclass(frozen=True)
class GroundTruth:
    label: str  # a Review.Label value, or NOT_MPOX
    source: str  # "pcr" or "clinician"


def case_ground_truth(*, case: Case) -> GroundTruth | None:
    """The label statistics should use for ``case``, or None while nothing is known.

    The latest conclusive PCR wins: positive is mpox; negative is the clinicians' latest label unless that was mpox
    (then simply "not mpox"). Without a conclusive PCR, the latest case-level clinician label that was not amended.
    """
    return case_ground_truths(cases=Case.objects.filter(pk=case.pk)).get(case.pk)


def case_ground_truths(*, cases: QuerySet[Case]) -> dict[int, GroundTruth]:
    """``case_ground_truth`` for many cases in two queries: {case id: ground truth}, cases without one left out."""
    reviews = _latest_review_labels(cases=cases)
    pcrs = (
        LabResult.objects.filter(case__in=cases)
        .exclude(pcr=LabResult.Pcr.INCONCLUSIVE)
        .order_by("case_id", "-collected_on", "-pk")
        .values_list("case_id", "pcr")
    )
    latest_pcr: dict[int, str] = {}
    for case_id, pcr in pcrs:
        latest_pcr.setdefault(case_id, pcr)
    truths = {}
    for case_id in reviews.keys() | latest_pcr.keys():
        truth = _ground_truth(review_label=reviews.get(case_id), pcr=latest_pcr.get(case_id))
        if truth is not None:
            truths[case_id] = truth
    return truths


def _latest_review_labels(*, cases: QuerySet[Case]) -> dict[int, str]:
    """{case id: the latest case-level clinician label that was not amended}."""
    final = Review.objects.filter(case__in=cases, image=None, amended_by__isnull=True)
    latest: dict[int, str] = {}
    for case_id, label in final.order_by("case_id", "-created_at", "-pk").values_list("case_id", "label"):
        latest.setdefault(case_id, label)
    return latest


def _ground_truth(*, review_label: str | None, pcr: str | None) -> GroundTruth | None:
    if pcr == LabResult.Pcr.POSITIVE:
        return GroundTruth(label=Review.Label.MPOX, source="pcr")
    if pcr is not None:
        label = review_label if review_label is not None and review_label != Review.Label.MPOX else NOT_MPOX
        return GroundTruth(label=label, source="pcr")
    if review_label is not None:
        return GroundTruth(label=review_label, source="clinician")
    return None


def image_reveal(*, image: LesionImage, user: User) -> RevealEvent:
    """Record that ``user`` deliberately uncovered a blurred photo."""
    with transaction.atomic():
        event = RevealEvent.objects.create(image=image, user=user)
        audit_record(action=AuditEntry.Action.PHOTO_REVEAL, user=user, obj=image)
    return event


# --- model versions ---


def model_version_for_predictor(*, predictor: Predictor) -> ModelVersion:
    """The row for the weights ``predictor`` runs, created on first sight (not made active)."""
    model_version, _ = ModelVersion.objects.get_or_create(
        weights_sha256=predictor.weights_sha256,
        defaults={
            "name": predictor.checkpoint.arch,
            "version": predictor.version,
            "class_names": list(predictor.class_names),
            "metrics": predictor.checkpoint.metrics,
        },
    )
    return model_version


def model_version_ensure_active(*, predictor: Predictor | None = None, actor_label: str = "worker") -> ModelVersion:
    """Make the weights the workers load (``MPOX_MODEL_WEIGHTS``) the active model version.

    A change is audited under ``actor_label`` (who made it: a worker starting, a management command); confirming
    the version already active records nothing, as every worker process does it at start.
    """
    if predictor is None:
        from diagnosis import inference

        predictor = inference.predictor_get()
    with transaction.atomic():
        model_version = model_version_for_predictor(predictor=predictor)
        others = ModelVersion.objects.filter(active=True).exclude(pk=model_version.pk)
        retired = list(others.values_list("pk", "version"))
        if not retired and model_version.active:
            return model_version
        ModelVersion.objects.filter(pk__in=[pk for pk, _ in retired]).update(active=False)
        model_version.active = True
        model_version.save(update_fields=["active"])
        audit_record(
            action=AuditEntry.Action.MODEL_VERSION_CHANGE,
            obj=model_version,
            actor_label=actor_label,
            detail={
                "version": model_version.version,
                "weights_sha256": model_version.weights_sha256,
                "replaced": [version for _, version in retired],
            },
        )
    return model_version


# --- users and roles ---


def role_groups_ensure() -> list[Group]:
    return [Group.objects.get_or_create(name=role)[0] for role in ROLES]


def user_create_with_role(
    *, username: str, role: str, password: str | None = None, created_by: User | None = None
) -> tuple[User, str]:
    """A user in the ``role`` group; returns it with its password (a random one unless given)."""
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}")
    password = password or secrets.token_urlsafe(12)
    with transaction.atomic():
        user = get_user_model().objects.create_user(username=username, password=password)
        if role == ADMIN:
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        user.groups.add(Group.objects.get_or_create(name=role)[0])
        audit_record(
            action=AuditEntry.Action.USER_CHANGE, user=created_by, obj=user, detail={"change": "created", "role": role}
        )
    return user, password


def user_roles_set(
    *, user: User, roles: Iterable[str], changed_by: User | None, request: HttpRequest | None = None
) -> bool:
    """Give ``user`` exactly ``roles``; if that changes them, log the user out everywhere and record it.

    The admin role is also Django's staff and superuser flags (the admin site is the admins' alone). Groups that
    are not roles are left alone. Returns whether anything changed.
    """
    wanted = set(roles)
    if wanted - set(ROLES):
        raise ValidationError(f"unknown role(s): {', '.join(sorted(wanted - set(ROLES)))}")
    with transaction.atomic():
        user.__dict__.pop("_mpox_roles", None)  # access.user_roles caches them on the object
        before = set(user_roles(user=user))
        if before == wanted:
            return False
        user.groups.remove(*Group.objects.filter(name__in=set(ROLES) - wanted))
        user.groups.add(*(Group.objects.get_or_create(name=role)[0] for role in sorted(wanted)))
        user.is_staff = user.is_superuser = ADMIN in wanted
        user.save(update_fields=["is_staff", "is_superuser"])
        user.__dict__.pop("_mpox_roles", None)
        ended = user_sessions_end(user=user)
        audit_record(
            action=AuditEntry.Action.ROLE_CHANGE,
            user=changed_by,
            request=request,
            obj=user,
            detail={"before": sorted(before), "after": sorted(wanted), "sessions_ended": ended},
        )
    return True


def user_sessions_end(*, user: User) -> int:
    """Delete every session of ``user`` (all their browsers are logged out); returns how many there were.

    Sessions live in the database (Django's default engine) and name their user only inside the signed data, so
    each live session is decoded; a clinic has a few hundred at most.
    """
    mine = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if session.get_decoded().get(SESSION_KEY) == str(user.pk)
    ]
    Session.objects.filter(pk__in=mine).delete()
    return len(mine)


# --- health ---


def health_check() -> tuple[bool, dict[str, str]]:
    """The state of the database, the broker and the model, for /healthz."""
    report: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        report["database"] = "ok"
    except DatabaseError as exc:
        report["database"] = f"error: {type(exc).__name__}"

    try:
        with kombu.Connection(
            settings.CELERY_BROKER_URL,
            transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            connect_timeout=2,
        ) as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        report["broker"] = "ok"
    except Exception as exc:  # kombu raises transport-specific types
        report["broker"] = f"error: {type(exc).__name__}"

    if report["database"] != "ok":
        report["model"] = "unknown"
    else:
        model_version = ModelVersion.objects.filter(active=True).first()
        if model_version is None:
            report["model"] = "error: no active model version"
        elif not Path(settings.MPOX_MODEL_WEIGHTS).is_file():
            report["model"] = "error: weights file missing"
        else:
            report["model"] = model_version.version
    healthy = report["database"] == "ok" and report["broker"] == "ok" and not report["model"].startswith("error")
    return healthy, report
