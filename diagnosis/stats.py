"""Graded statistics: how the model's answers compare with the ground truth, per photo.

Plain functions with no HTTP in them, so that the API (``GET /api/v1/stats``) and a staff statistics page share the
filters and the numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils.dateparse import parse_date

from diagnosis import services
from diagnosis.models import CLASS_LABELS, MPOX_CLASS, Analysis, Case, LesionImage, ModelVersion, Review

# The model class each ground-truth label stands for. The other labels say less: "other" (a skin condition the model
# has no class for) is a negative for every class; "not mpox" (a negative PCR with no other diagnosis) is a negative
# for mpox and unknown for the rest; "unusable" (the photo shows nothing) is no ground truth at all.
MODEL_CLASS_OF_LABEL: dict[str, str] = {
    Review.Label.MPOX: MPOX_CLASS,
    Review.Label.CHICKENPOX: "chickenpox",
    Review.Label.MEASLES: "measles",
    Review.Label.NORMAL: "normal",
}
NEGATIVE_FOR_ALL = frozenset({Review.Label.OTHER})
EXCLUDED = frozenset({Review.Label.UNUSABLE})
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class StatsFilters:
    """Which photos count: uploaded between the dates (inclusive, local time), analysed by that model version, with
    those tags. Empty values filter nothing."""

    date_from: date | None = None
    date_to: date | None = None
    model_version: str = ""
    body_part: str = ""
    stage: str = ""


@dataclass(frozen=True)
class ClassMetrics:
    """One-vs-rest metrics of one class; None where the denominator is empty."""

    precision: float | None
    recall: float | None
    specificity: float | None
    f1: float | None
    support: int


@dataclass(frozen=True)
class Recall:
    n: int
    recall: float | None
    ci95: tuple[float, float] | None


@dataclass(frozen=True)
class GradedStats:
    n: int
    per_class: dict[str, ClassMetrics] = field(default_factory=dict)
    mpox_recall_by_stage: dict[str, Recall] = field(default_factory=dict)
    mpox_recall_by_body_part: dict[str, Recall] = field(default_factory=dict)


def stats_filters_parse(params: Mapping[str, str]) -> StatsFilters:
    """Filters from query parameters (``date_from``, ``date_to`` as YYYY-MM-DD, ``model_version``, ``body_part``,
    ``stage``); raises ValidationError with a message per bad parameter."""
    errors: dict[str, str] = {}
    days: dict[str, date | None] = {}
    for name in ("date_from", "date_to"):
        value = params.get(name, "").strip()
        try:
            days[name] = parse_date(value) if value else None
        except ValueError:  # well formed but not a real day, e.g. 2026-02-30
            days[name] = None
        if value and days[name] is None:
            errors[name] = "A date as YYYY-MM-DD."
    date_from, date_to = days["date_from"], days["date_to"]
    if date_from and date_to and date_from > date_to:
        errors["date_to"] = "The end date is before the start date."
    body_part, stage = params.get("body_part", "").strip(), params.get("stage", "").strip()
    if body_part and body_part not in LesionImage.BodyPart.values:
        errors["body_part"] = f"One of {', '.join(LesionImage.BodyPart.values)}."
    if stage and stage not in LesionImage.Stage.values:
        errors["stage"] = f"One of {', '.join(LesionImage.Stage.values)}."
    model_version = params.get("model_version", "").strip()
    if model_version and not ModelVersion.objects.filter(version=model_version).exists():
        errors["model_version"] = "No analysis used a model with this version."
    if errors:
        raise ValidationError(errors)
    return StatsFilters(date_from, date_to, model_version, body_part, stage)


def graded_stats(*, filters: StatsFilters) -> GradedStats:
    """The model's per-class metrics and its mpox recall by stage and body part, over photos with a ground truth.

    Each photo counts once, with its latest finished analysis (of the chosen model version, if one is chosen). The
    photo's ground truth is its case's (``services.case_ground_truths``: a conclusive PCR beats the clinicians;
    positive means mpox, negative means "not mpox" unless the clinicians named another condition; an inconclusive PCR
    counts for nothing). Clinicians' labels map onto the model's classes by ``MODEL_CLASS_OF_LABEL``; the model's
    answer is its top class, whether or not it was flagged inconclusive. Three queries, whatever the number of cases.
    """
    analyses = _analyses(filters)
    truths = services.case_ground_truths(cases=Case.objects.filter(pk__in=analyses.values("image__case_id")))
    rows = analyses.order_by("image_id", "-pk").values_list(
        "image_id", "image__case_id", "image__body_part", "image__stage", "label"
    )
    # One pass over the photos fills a confusion table (ground-truth label x predicted class) and the mpox hits per
    # stage and body part; the metrics are read off those small tables.
    confusion: Counter[tuple[str, str]] = Counter()
    by_stage: dict[str, Counter[bool]] = {value: Counter() for value in LesionImage.Stage.values}
    by_part: dict[str, Counter[bool]] = {value: Counter() for value in LesionImage.BodyPart.values}
    seen: set[int] = set()
    for image_id, case_id, body_part, stage, predicted in rows:
        if image_id in seen:
            continue  # an older analysis of a photo already counted
        seen.add(image_id)
        truth = truths.get(case_id)
        if truth is None or truth.label in EXCLUDED:
            continue
        confusion[truth.label, predicted] += 1
        if truth.label == Review.Label.MPOX:
            by_stage.setdefault(stage, Counter())[predicted == MPOX_CLASS] += 1
            by_part.setdefault(body_part, Counter())[predicted == MPOX_CLASS] += 1
    classes = list(CLASS_LABELS) + sorted({p for _, p in confusion if p and p not in CLASS_LABELS})
    return GradedStats(
        n=confusion.total(),
        per_class={name: _class_metrics(name, confusion) for name in classes},
        mpox_recall_by_stage={stage: _recall(hits) for stage, hits in by_stage.items()},
        mpox_recall_by_body_part={part: _recall(hits) for part, hits in by_part.items()},
    )


def wilson_interval(successes: int, n: int, *, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (sound at 0 %, 100 % and small n, unlike p ± z·SE)."""
    if n == 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _analyses(filters: StatsFilters) -> QuerySet[Analysis]:
    analyses = Analysis.objects.filter(status=Analysis.Status.DONE)
    if filters.date_from:
        analyses = analyses.filter(image__uploaded_at__date__gte=filters.date_from)
    if filters.date_to:
        analyses = analyses.filter(image__uploaded_at__date__lte=filters.date_to)
    if filters.model_version:
        analyses = analyses.filter(model_version__version=filters.model_version)
    if filters.body_part:
        analyses = analyses.filter(image__body_part=filters.body_part)
    if filters.stage:
        analyses = analyses.filter(image__stage=filters.stage)
    return analyses


def _cell(actual: bool, predicted: bool) -> str:
    return ("tp" if predicted else "fn") if actual else ("fp" if predicted else "tn")


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _class_metrics(name: str, confusion: Counter[tuple[str, str]]) -> ClassMetrics:
    """One-vs-rest counts of class ``name`` from the confusion table, leaving out the photos whose membership of the
    class is unknown (a "not mpox" ground truth, for every class but mpox)."""
    cells: Counter[str] = Counter()
    for (label, predicted), count in confusion.items():
        actual = MODEL_CLASS_OF_LABEL.get(label)
        if actual is None and label not in NEGATIVE_FOR_ALL and name != MPOX_CLASS:
            continue
        cells[_cell(actual == name, predicted == name)] += count
    tp, fp, fn, tn = cells["tp"], cells["fp"], cells["fn"], cells["tn"]
    return ClassMetrics(
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        specificity=_ratio(tn, tn + fp),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),  # the harmonic mean of precision and recall, defined more often
        support=tp + fn,
    )


def _recall(hits: Counter[bool]) -> Recall:
    n = hits[True] + hits[False]
    interval = wilson_interval(hits[True], n)
    return Recall(
        n=n,
        recall=_ratio(hits[True], n),
        ci95=(round(interval[0], 4), round(interval[1], 4)) if interval else None,
    )
