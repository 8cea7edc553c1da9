from __future__ import annotations

from datetime import date

import pytest
from django.core.exceptions import ValidationError

from diagnosis import services, stats
from diagnosis.models import Case
from tests.diagnosis.helpers import case_awaiting_review
from tests.diagnosis.test_case_ground_truth import lab, review


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [(8, 10, 0.4902, 0.9433), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (1, 1, 0.2065, 1.0)],
)
def test_the_wilson_interval_matches_published_values(successes, n, low, high) -> None:
    interval = stats.wilson_interval(successes, n)
    assert interval is not None
    assert interval == pytest.approx((low, high), abs=1e-4)


def test_no_observations_have_no_interval() -> None:
    assert stats.wilson_interval(0, 0) is None


@pytest.mark.django_db
def test_filters_are_parsed_and_empty_ones_filter_nothing() -> None:
    assert stats.stats_filters_parse({}) == stats.StatsFilters()
    parsed = stats.stats_filters_parse({"date_from": "2026-03-01", "date_to": "2026-03-31", "stage": "early"})
    assert parsed == stats.StatsFilters(date_from=date(2026, 3, 1), date_to=date(2026, 3, 31), stage="early")


@pytest.mark.django_db
def test_every_bad_filter_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        stats.stats_filters_parse({"date_from": "x", "body_part": "elbow", "stage": "y", "model_version": "0"})
    assert set(caught.value.message_dict) == {"date_from", "body_part", "stage", "model_version"}


@pytest.mark.django_db
def test_the_bulk_ground_truth_agrees_with_the_single_case_rule(nurse, clinician) -> None:
    cases = [case_awaiting_review(nurse, f"G{index}", mpox=0.5) for index in range(7)]
    review(cases[0], clinician, "chickenpox")
    review(cases[1], clinician, "mpox")
    lab(cases[1], clinician, "negative")
    review(cases[2], clinician, "measles")
    lab(cases[2], clinician, "negative")
    lab(cases[3], clinician, "positive", day=1)
    lab(cases[3], clinician, "inconclusive", day=2)
    lab(cases[4], clinician, "inconclusive")
    review(cases[5], clinician, "other")
    lab(cases[5], clinician, "positive", day=1)
    lab(cases[5], clinician, "negative", day=3)
    bulk = services.case_ground_truths(cases=Case.objects.all())
    single = {case.pk: services.case_ground_truth(case=case) for case in Case.objects.all()}
    assert bulk == {pk: truth for pk, truth in single.items() if truth is not None}
    assert len(bulk) == 5
