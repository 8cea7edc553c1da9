"""FHIR R4 views of the results: plain functions that build resources (as dicts) from the rows.

One DiagnosticReport per analysis. It contains its parts, so a report read on its own is complete: one Observation
per class probability (body site in SNOMED CT, the lesion stage as a component), Media for the photo and the
heatmap (links, never inline content), a Device for the model (name, version, weights SHA-256) and Provenance for
the model and for each clinician's review. Its status follows the clinicians: ``preliminary`` while only the model
has spoken, ``final`` once a clinician reviewed the case (or this photo) after the result came, ``amended`` once
such a review was amended; ``registered`` while the model is still working and ``cancelled`` if the analysis
failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Case, Exists, OuterRef, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.urls import reverse

from diagnosis.models import Analysis, LesionImage, Review, class_label

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
MEDIA_TYPE = "http://terminology.hl7.org/CodeSystem/media-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ISSUE_TYPE_BY_STATUS = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 429: "throttled"}

# The photo's body-site tag in SNOMED CT (body structure concepts). "Genital / perianal" spans the genitals and the
# skin around the anus: the perineal structure holds both, where a genital code would claim more than the nurse
# recorded. A close-range photo has no known site, so it carries text only.
BODY_SITES: dict[str, tuple[str, str] | None] = {
    LesionImage.BodyPart.FACE: ("89545001", "Face structure"),
    LesionImage.BodyPart.HAND: ("85562004", "Hand structure"),
    LesionImage.BodyPart.ARM: ("53120007", "Upper limb structure"),
    LesionImage.BodyPart.LEG: ("61685007", "Lower limb structure"),
    LesionImage.BodyPart.TRUNK: ("22943007", "Trunk structure"),
    LesionImage.BodyPart.FOOT: ("56459004", "Foot structure"),
    LesionImage.BodyPart.GENITAL: ("38864007", "Perineal structure"),
    LesionImage.BodyPart.CLOSE_RANGE: None,
}

# A clinician's confirmed label as a SNOMED CT disorder, for the report's conclusionCode; the other labels (normal
# skin, another skin condition, an unusable photo) are carried as text only.
REVIEW_DISORDERS: dict[str, tuple[str, str]] = {
    Review.Label.MPOX: ("359814004", "Mpox (disorder)"),
    Review.Label.CHICKENPOX: ("38907003", "Varicella (disorder)"),
    Review.Label.MEASLES: ("14189004", "Measles (disorder)"),
}

# The report statuses, in the order a search may ask for them.
REPORT_STATUSES = ("registered", "preliminary", "final", "amended", "cancelled")


def _system(name: str) -> str:
    """A code system of this deployment's own (the model's classes, the lesion stages)."""
    return f"{settings.MPOX_PUBLIC_URL}/fhir/CodeSystem/{name}"


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


# --- which reports: the status is computed in the database, so that a search can filter on it ---


def report_queryset() -> QuerySet[Analysis]:
    """Analyses with their report status as ``fhir_status`` and their case's reviews prefetched."""
    relevant = Review.objects.filter(case=OuterRef("image__case"), created_at__gte=OuterRef("reported_at")).filter(
        Q(image__isnull=True) | Q(image=OuterRef("image"))
    )
    unfinished = [Analysis.Status.QUEUED, Analysis.Status.RUNNING]
    return (
        Analysis.objects.select_related("image__case__patient", "model_version")
        .prefetch_related("image__case__reviews__reviewer")
        .annotate(reported_at=Coalesce("finished_at", "queued_at"))
        .annotate(
            reviewed=Exists(relevant.filter(amended_by__isnull=True)),
            amendment=Exists(relevant.filter(amends__isnull=False)),
        )
        .annotate(
            fhir_status=Case(
                When(status__in=unfinished, then=Value("registered")),
                When(status=Analysis.Status.FAILED, then=Value("cancelled")),
                When(amendment=True, then=Value("amended")),
                When(reviewed=True, then=Value("final")),
                default=Value("preliminary"),
            )
        )
    )


def report_search(*, patient: str | None, statuses: Iterable[str], before: int | None) -> QuerySet[Analysis]:
    """Reports newest first; ``before`` is the paging cursor (an analysis id)."""
    reports = report_queryset()
    if patient is not None:
        reports = reports.filter(image__case__patient__hospital_identifier=patient)
    statuses = list(statuses)
    if statuses:
        reports = reports.filter(Q(fhir_status__in=statuses))  # an annotation, which the type checker cannot see
    if before is not None:
        reports = reports.filter(pk__lt=before)
    return reports.order_by("-pk")


@dataclass(frozen=True)
class Reviews:
    """The reviews that speak for one analysis: made after its result came, on its case or on its photo."""

    all: list[Review]  # oldest first, amended ones included
    current: list[Review]  # those no amendment replaced


def _reviews(analysis: Analysis) -> Reviews:
    since = analysis.finished_at or analysis.queued_at
    case_reviews = list(analysis.image.case.reviews.all())
    replaced = {review.amends_id for review in case_reviews if review.amends_id}
    relevant = [
        review for review in case_reviews if review.created_at >= since and review.image_id in (None, analysis.image_id)
    ]
    relevant.sort(key=lambda review: (review.created_at, review.pk))
    return Reviews(all=relevant, current=[review for review in relevant if review.pk not in replaced])


# --- the resources ---


def body_site(image: LesionImage) -> dict[str, Any]:
    coding = BODY_SITES.get(image.body_part)
    text = image.get_body_part_display()
    if coding is None:
        return {"text": f"{text} photo (body site not recorded)"}
    code, display = coding
    return {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": text}


def _subject(analysis: Analysis) -> dict[str, Any]:
    identifier = {"value": analysis.image.case.patient.hospital_identifier}
    if settings.MPOX_FHIR_PATIENT_SYSTEM:
        identifier = {"system": settings.MPOX_FHIR_PATIENT_SYSTEM, **identifier}
    return {"type": "Patient", "identifier": identifier}


def _person(user: Any) -> str:
    return user.get_full_name() or user.get_username()


def _observations(analysis: Analysis, *, status: str) -> list[dict[str, Any]]:
    image = analysis.image
    order = analysis.model_version.class_names if analysis.model_version else list(analysis.probabilities)
    stage = {
        "code": {"text": "Lesion stage"},
        "valueCodeableConcept": {
            "coding": [{"system": _system("lesion-stage"), "code": image.stage, "display": image.get_stage_display()}],
            "text": image.get_stage_display(),
        },
    }
    observations = []
    for name in order:
        probability = float(analysis.probabilities.get(name, 0.0))
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"probability-{name}",
            "status": status,
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]}],
            "code": {
                "coding": [{"system": _system("model-class"), "code": name, "display": class_label(name)}],
                "text": f"Model probability: {class_label(name)}",
            },
            "subject": _subject(analysis),
            "effectiveDateTime": _instant(image.uploaded_at),
            "valueQuantity": {"value": round(100 * probability, 2), "unit": "%", "system": UCUM, "code": "%"},
            "bodySite": body_site(image),
            "method": {"text": "Image classification model (decision support, not a diagnosis)"},
            "derivedFrom": [{"reference": "#photo"}],
            "component": [stage],
        }
        if analysis.finished_at:
            observation["issued"] = _instant(analysis.finished_at)
        if analysis.model_version:
            observation["device"] = {"reference": "#model"}
        observations.append(observation)
    return observations


def _media(analysis: Analysis, *, site: str, photos: bool) -> list[dict[str, Any]]:
    """The photo and the heatmap; their content links to the images only for a client that may download them."""
    image = analysis.image
    image_type = {"coding": [{"system": MEDIA_TYPE, "code": "image", "display": "Image"}]}
    photo = {
        "resourceType": "Media",
        "id": "photo",
        "status": "completed",
        "type": image_type,
        "subject": _subject(analysis),
        "createdDateTime": _instant(image.uploaded_at),
        "bodySite": body_site(image),
        "width": image.width,
        "height": image.height,
        "content": _content(
            image.content_type, site + reverse("fhir-binary", args=[f"photo-{image.pk}"]), "Lesion photo", photos
        ),
    }
    media = [photo]
    if analysis.heatmap_overlay:
        heatmap: dict[str, Any] = {
            "resourceType": "Media",
            "id": "heatmap",
            "status": "completed",
            "type": image_type,
            "subject": _subject(analysis),
            "bodySite": body_site(image),
            "content": _content(
                "image/png",
                site + reverse("api-analysis-heatmap", args=[analysis.pk]),
                "Heatmap over the photo: where the model looked",
                photos,
            ),
        }
        if analysis.finished_at:
            heatmap["createdDateTime"] = _instant(analysis.finished_at)
        if analysis.model_version:
            heatmap["device"] = {"reference": "#model"}
        media.append(heatmap)
    return media


def _content(content_type: str, url: str, title: str, linked: bool) -> dict[str, str]:
    """A Media's Attachment: a link to the image, never inline data; no link for a client that may not follow it."""
    content = {"contentType": content_type, "title": title}
    if linked:
        content["url"] = url
    return content


def _device(analysis: Analysis) -> dict[str, Any]:
    model = analysis.model_version
    assert model is not None
    return {
        "resourceType": "Device",
        "id": "model",
        "status": "active" if model.active else "inactive",
        "deviceName": [{"name": model.name, "type": "model-name"}],
        "type": {"text": "Image classification model (software; decision support)"},
        "version": [
            {"type": {"text": "model version"}, "value": model.version},
            {"type": {"text": "weights SHA-256"}, "value": model.weights_sha256},
        ],
    }


def _provenances(analysis: Analysis, reviews: Reviews) -> list[dict[str, Any]]:
    provenances = []
    if analysis.model_version and analysis.finished_at:
        provenances.append(
            {
                "resourceType": "Provenance",
                "id": "by-model",
                "target": [{"reference": "#"}],
                "recorded": _instant(analysis.finished_at),
                "activity": {"coding": [{"system": DATA_OPERATION, "code": "CREATE", "display": "create"}]},
                "agent": [
                    {
                        "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author", "display": "Author"}]},
                        "who": {"reference": "#model", "display": str(analysis.model_version)},
                    }
                ],
            }
        )
    for review in reviews.all:
        activity: dict[str, Any] = {"text": "Clinician's review"}
        if review.amends_id:
            activity = {
                "coding": [{"system": DATA_OPERATION, "code": "UPDATE", "display": "revise"}],
                "text": "Clinician's amended review",
            }
        provenances.append(
            {
                "resourceType": "Provenance",
                "id": f"review-{review.pk}",
                "target": [{"reference": "#"}],
                "recorded": _instant(review.created_at),
                "activity": activity,
                "agent": [
                    {
                        "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "verifier", "display": "Verifier"}]},
                        "who": {"display": _person(review.reviewer)},
                    }
                ],
            }
        )
    return provenances


def _review_code(review: Review) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": review.get_label_display()}
    if review.label in REVIEW_DISORDERS:
        code, display = REVIEW_DISORDERS[review.label]
        concept["coding"] = [{"system": SNOMED, "code": code, "display": display}]
    return concept


def conclusion(analysis: Analysis, reviews: Reviews) -> str:
    """The report's sentence: decision-support wording for the model, the clinicians' word once they gave it."""
    if analysis.status in (Analysis.Status.QUEUED, Analysis.Status.RUNNING):
        return "The photo is being analysed; no result yet."
    if analysis.status == Analysis.Status.FAILED:
        return f"The photo could not be analysed: {analysis.error_message}"
    top = round(100 * float(analysis.probabilities.get(analysis.label, 0.0)))
    if analysis.inconclusive:
        model = (
            f"Decision support, not a diagnosis: the model's result is inconclusive (most like "
            f"{class_label(analysis.label)}, {top}%); a clinician must decide."
        )
    else:
        model = (
            f"Decision support, not a diagnosis: the photo looks most like {class_label(analysis.label)} to the "
            f"model ({top}%)."
        )
    if not reviews.current:
        return model + " Not yet reviewed by a clinician."
    decisions = [
        f"{review.get_label_display()} ({review.get_confidence_display().lower()}); next step: "
        f"{review.get_disposition_display().lower()}" + (" (amended)" if review.amends_id else "")
        for review in reviews.current
    ]
    return model + " Clinician's review: " + "; ".join(decisions) + "."


def diagnostic_report(analysis: Analysis, *, site: str, photos: bool) -> dict[str, Any]:
    """The report for one analysis from ``report_queryset()``; ``site`` is this server's origin for links.

    ``photos``: whether the client may download photos (its ``photos`` scope); without it, Media carry no URL.
    """
    status: str = getattr(analysis, "fhir_status", "")
    assert status in REPORT_STATUSES, "use report_queryset()"
    reviews = _reviews(analysis)
    case = analysis.image.case
    moments = [analysis.finished_at or analysis.queued_at] + [review.created_at for review in reviews.all]
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": str(analysis.pk),
        "meta": {"lastUpdated": _instant(max(moments))},
        "identifier": [{"system": f"{settings.MPOX_PUBLIC_URL}/fhir/sid/analysis", "value": str(analysis.pk)}],
        "status": status,
        "code": {
            "coding": [{"system": _system("report"), "code": "lesion-photo-triage", "display": "Lesion photo triage"}],
            "text": "Skin lesion photo triage (decision support)",
        },
        "subject": _subject(analysis),
        "effectiveDateTime": _instant(analysis.image.uploaded_at),
        "conclusion": conclusion(analysis, reviews),
    }
    if case.encounter_id:
        report["encounter"] = {"type": "Encounter", "identifier": {"value": case.encounter_id}}
    if analysis.finished_at:
        report["issued"] = _instant(analysis.finished_at)
    interpreters = {_person(review.reviewer) for review in reviews.current}
    if interpreters:
        report["resultsInterpreter"] = [{"display": name} for name in sorted(interpreters)]
        report["conclusionCode"] = [_review_code(review) for review in reviews.current]
    contained: list[dict[str, Any]] = []
    if analysis.status == Analysis.Status.DONE:
        observations = _observations(analysis, status=status)
        contained += observations
        report["result"] = [{"reference": f"#{observation['id']}"} for observation in observations]
    media = _media(analysis, site=site, photos=photos)
    contained += media
    report["media"] = [{"comment": item["content"]["title"], "link": {"reference": f"#{item['id']}"}} for item in media]
    if analysis.model_version:
        contained.append(_device(analysis))
    contained += _provenances(analysis, reviews)
    report["contained"] = contained
    return report


def searchset(reports: list[dict[str, Any]], *, site: str, total: int, links: dict[str, str]) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{"relation": relation, "url": url} for relation, url in links.items()],
    }
    if reports:  # FHIR JSON has no empty arrays
        bundle["entry"] = [
            {
                "fullUrl": site + reverse("fhir-diagnostic-report", args=[report["id"]]),
                "resource": report,
                "search": {"mode": "match"},
            }
            for report in reports
        ]
    return bundle


def operation_outcome(*, status: int, issues: list[tuple[str, str]]) -> dict[str, Any]:
    """An OperationOutcome for an error answer: (diagnostics, issue code) pairs; the code defaults by status."""
    default = ISSUE_TYPE_BY_STATUS.get(status, "processing")
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": code or default, "diagnostics": diagnostics} for diagnostics, code in issues
        ],
    }


def capability_statement(*, site: str, published: datetime) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _instant(published),
        "publisher": "Mpox Triage",
        "kind": "instance",
        "software": {"name": "Mpox Triage"},
        "implementation": {
            "description": "Mpox Triage: skin lesion photo triage results (read-only)",
            "url": site + reverse("fhir-metadata").removesuffix("/metadata"),
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "description": (
                        "Authorization: Bearer <token> of an API client with the read scope "
                        "(python manage.py create_api_client NAME --scope read)."
                    ),
                },
                "resource": [
                    {
                        "type": "DiagnosticReport",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {
                                "name": "patient",
                                "type": "reference",
                                "documentation": (
                                    "The patient's hospital identifier (the patient_id sent with the photo). "
                                    "Prefer POST DiagnosticReport/_search, which keeps it out of URLs and logs."
                                ),
                            },
                            {
                                "name": "status",
                                "type": "token",
                                "documentation": "Any of " + ", ".join(REPORT_STATUSES) + " (comma-separated).",
                            },
                            {"name": "_count", "type": "number", "documentation": "Page size, 1 to 200 (50)."},
                        ],
                    },
                    {
                        "type": "Binary",
                        "interaction": [{"code": "read"}],
                        "documentation": (
                            "The photos the reports' Media link to (the raw image, not a resource); "
                            "needs the photos scope."
                        ),
                    },
                ],
            }
        ],
    }
