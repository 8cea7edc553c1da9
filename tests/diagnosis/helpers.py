"""Small builders for rows the view tests start from; they go through the same services as the site."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User

from diagnosis import services
from diagnosis.models import Analysis, Case, LesionImage, Review
from tests.photos import jpeg_bytes


def case_for(user: User, identifier: str = "MRN-004821") -> Case:
    return services.case_create(hospital_identifier=identifier, created_by=user)


def image_for(
    case: Case,
    user: User | None = None,
    *,
    data: bytes | None = None,
    body_part: str = "arm",
    stage: str = "early",
) -> LesionImage:
    return services.lesion_image_create(
        case=case,
        data=data or jpeg_bytes(),
        body_part=body_part,
        stage=stage,
        uploaded_by=user or case.created_by,
    )


def finished_analysis(image: LesionImage, **fields: object) -> Analysis:
    """Mark an image's analysis done as a worker would, with made-up numbers (views only read the row)."""
    analysis = image.analyses.get()
    values: dict[str, object] = {
        "status": Analysis.Status.DONE,
        "probabilities": {"chickenpox": 0.1, "measles": 0.05, "monkeypox": 0.8, "normal": 0.05},
        "label": "monkeypox",
        "inconclusive": False,
    }
    values.update(fields)
    for name, value in values.items():
        setattr(analysis, name, value)
    analysis.save()
    return analysis


def review_for(case: Case, clinician: User, **fields: Any) -> Review:
    """A clinician's review of the case at its current version (by default: mpox, sure, isolate and test)."""
    case.refresh_from_db()
    decision: dict[str, Any] = {"label": "mpox", "confidence": "sure", "disposition": "isolate_and_test"}
    decision.update(fields)
    return services.review_record(case=case, reviewer=clinician, expected_version=case.version, **decision)


def case_awaiting_review(
    user: User,
    identifier: str,
    *,
    mpox: float,
    body_part: str = "arm",
    stage: str = "later",
    inconclusive: bool = False,
    opened: datetime | None = None,
) -> Case:
    """A case with one analysed photo, waiting for a clinician since ``opened``."""
    case = case_for(user, identifier)
    rest = (1 - mpox) / 3
    finished_analysis(
        image_for(case, body_part=body_part, stage=stage),
        probabilities={"chickenpox": rest, "measles": rest, "monkeypox": mpox, "normal": rest},
        label="monkeypox" if mpox >= rest else "chickenpox",
        inconclusive=inconclusive,
    )
    fields: dict[str, object] = {"status": Case.Status.AWAITING_REVIEW}
    if opened is not None:
        fields["created_at"] = opened
    Case.objects.filter(pk=case.pk).update(**fields)
    services.case_risk_refresh(case_id=case.pk)
    case.refresh_from_db()
    return case


def hours_before(now: datetime, hours: float) -> datetime:
    return now - timedelta(hours=hours)
