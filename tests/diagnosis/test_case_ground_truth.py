from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from diagnosis import services
from diagnosis.services import GroundTruth
from tests.diagnosis.helpers import case_awaiting_review, review_for

pytestmark = pytest.mark.django_db

DECISION: dict[str, Any] = {"confidence": "sure", "disposition": "test_only"}


def review(case, clinician, label: str):
    return review_for(case, clinician, label=label, **DECISION)


def lab(case, clinician, pcr: str, day: int = 1):
    case.refresh_from_db()
    return services.lab_result_record(
        case=case,
        recorded_by=clinician,
        expected_version=case.version,
        pcr=pcr,
        collected_on=date(2026, 3, day),
        sample_reference=f"S{day}",
    )


def test_nothing_is_known_before_a_review(nurse) -> None:
    assert services.case_ground_truth(case=case_awaiting_review(nurse, "T1", mpox=0.5)) is None


def test_the_clinician_label_counts_without_pcr(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "T2", mpox=0.5)
    review(case, clinician, "chickenpox")
    assert services.case_ground_truth(case=case) == GroundTruth("chickenpox", "clinician")


def test_the_latest_amendment_is_the_clinician_label(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "T3", mpox=0.5)
    first = review(case, clinician, "chickenpox")
    case.refresh_from_db()
    services.review_amend(
        review=first,
        reviewer=clinician,
        expected_version=case.version,
        reason="second look",
        label="measles",
        **DECISION,
    )
    assert services.case_ground_truth(case=case) == GroundTruth("measles", "clinician")


def test_a_positive_pcr_overrides_the_clinician(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "T4", mpox=0.5)
    review(case, clinician, "chickenpox")
    lab(case, clinician, "positive")
    assert services.case_ground_truth(case=case) == GroundTruth("mpox", "pcr")


def test_a_negative_pcr_keeps_a_non_mpox_label_and_overrules_mpox(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "T5", mpox=0.5)
    review(case, clinician, "chickenpox")
    lab(case, clinician, "negative")
    assert services.case_ground_truth(case=case) == GroundTruth("chickenpox", "pcr")
    other = case_awaiting_review(nurse, "T6", mpox=0.5)
    review(other, clinician, "mpox")
    lab(other, clinician, "negative")
    assert services.case_ground_truth(case=other) == GroundTruth(services.NOT_MPOX, "pcr")


def test_an_inconclusive_pcr_leaves_the_clinician_label(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "T7", mpox=0.5)
    review(case, clinician, "measles")
    lab(case, clinician, "inconclusive")
    assert services.case_ground_truth(case=case) == GroundTruth("measles", "clinician")
