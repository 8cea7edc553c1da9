from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from diagnosis import access, services
from diagnosis.audit import audit_record
from diagnosis.forms import CaseForm, LabResultForm, QueueFilterForm, ReviewForm, UploadForm
from diagnosis.models import Analysis, AuditEntry, Case, LesionImage
from ml.imaging import ImageError

QUEUE_PAGE_SIZE = 25
REVEALED_SESSION_KEY = "revealed_images"
CASE_LIST_LENGTH = 100  # the most recent; older cases stay reachable by their links (search comes later)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return redirect("case-list")


@login_required
@require_GET
def case_list(request: HttpRequest) -> HttpResponse:
    return _case_list_page(request, CaseForm())


@login_required
@require_POST
def case_create(request: HttpRequest) -> HttpResponse:
    if not access.user_can_create_case(user=request.user):
        raise PermissionDenied
    form = CaseForm(request.POST)
    if form.is_valid():
        case = services.case_create(
            hospital_identifier=form.cleaned_data["hospital_identifier"],
            created_by=request.user,  # type: ignore[arg-type]
        )
        return redirect("case-detail", pk=case.pk)
    return _case_list_page(request, form, status=400)


def _case_list_page(request: HttpRequest, form: CaseForm, *, status: int = 200) -> HttpResponse:
    cases = access.case_list_for_user(user=request.user).select_related("created_by").annotate(photos=Count("images"))
    cases = cases[:CASE_LIST_LENGTH]
    audit_record(action=AuditEntry.Action.CASE_LIST_VIEW, user=request.user)
    context = {"cases": cases, "form": form, "can_create": access.user_can_create_case(user=request.user)}
    return render(request, "diagnosis/case_list.html", context, status=status)


@login_required
@require_GET
def case_detail(request: HttpRequest, pk: int) -> HttpResponse:
    case = access.case_get_for_user(user=request.user, pk=pk)
    if access.user_can_review(user=request.user) and case.status != Case.Status.CLOSED:
        # Opening a case to review it claims it, so that colleagues see who is on it.
        services.case_claim(case=case, user=request.user)  # type: ignore[arg-type]
    return _case_page(request, case, UploadForm())


@login_required
@require_POST
def image_upload(request: HttpRequest, pk: int) -> HttpResponse:
    case = access.case_get_for_user(user=request.user, pk=pk, action=AuditEntry.Action.UPLOAD)
    if not access.user_can_upload(user=request.user, case=case):
        raise PermissionDenied
    form = UploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            image = services.lesion_image_create(
                case=case,
                data=form.cleaned_data["photo"].read(),
                body_part=form.cleaned_data["body_part"],
                stage=form.cleaned_data["stage"],
                uploaded_by=request.user,  # type: ignore[arg-type]
            )
        except ImageError as exc:
            form.add_error("photo", str(exc))
        else:
            if request.htmx:  # type: ignore[attr-defined]
                # The page's upload script adds the new photo's card (which polls itself) where the page stands,
                # rather than reloading the whole case page and every photo on it after each upload.
                return _image_card(request, image, status=201)
            return redirect(reverse("case-detail", args=[case.pk]) + "#photos")
    return _case_page(request, case, form, status=400)


def _case_page(
    request: HttpRequest,
    case: Case,
    form: UploadForm,
    *,
    status: int = 200,
    review_form: ReviewForm | None = None,
    lab_form: LabResultForm | None = None,
    conflict: str = "",
) -> HttpResponse:
    # Every page that shows the case is a view of it, the re-shown forms of a refused action included.
    audit_record(action=AuditEntry.Action.CASE_VIEW, user=request.user, obj=case)
    images = case.images.select_related("uploaded_by").prefetch_related("analyses__model_version")
    latest = [(image, max(image.analyses.all(), key=lambda a: a.pk, default=None)) for image in images]
    can_review = access.user_can_review(user=request.user)
    reviews = list(case.reviews.select_related("reviewer", "image", "amends"))
    context = {
        "case": case,
        "form": form,
        "can_review": can_review,
        "claim_holder": case.claim_holder(now=timezone.now()),
        "reviews": reviews,
        "disagreement": services.case_disagreement(case=case),
        "lab_results": case.lab_results.select_related("recorded_by"),
        "ground_truth": services.case_ground_truth(case=case),
        "review_form": review_form or ReviewForm(initial={"version": case.version}),
        "lab_form": lab_form or LabResultForm(initial={"version": case.version}),
        "conflict": conflict,
        "revealed": set(request.session.get(REVEALED_SESSION_KEY, [])),
        # The same patient's other cases (those this user may see), newest first.
        "timeline": access.case_list_for_user(user=request.user)
        .filter(patient_id=case.patient_id)
        .exclude(pk=case.pk)
        .order_by("-created_at"),
        "items": [{"image": image, "analysis": analysis} for image, analysis in latest],
        "pending": any(analysis and not analysis.is_finished for _, analysis in latest),
        "can_upload": access.user_can_upload(user=request.user, case=case),
        "max_upload_mb": f"{settings.MPOX_MAX_UPLOAD_BYTES / (1024 * 1024):g}",
    }
    return render(request, "diagnosis/case_detail.html", context, status=status)


@login_required
@require_GET
def review_queue(request: HttpRequest) -> HttpResponse:
    """Cases awaiting review, riskiest first; htmx re-fetches the list fragment every few seconds."""
    if not access.user_sees_all_cases(user=request.user):
        audit_record(action=AuditEntry.Action.QUEUE_VIEW, user=request.user, outcome=AuditEntry.Outcome.DENIED)
        raise PermissionDenied
    filters = QueueFilterForm(request.GET)
    criteria = filters.cleaned_data if filters.is_valid() else {}
    if not request.htmx:  # type: ignore[attr-defined]  # the page's own refresh every 15 s would flood the log
        detail = {name: str(value) for name, value in criteria.items() if value}
        audit_record(action=AuditEntry.Action.QUEUE_VIEW, user=request.user, detail=detail)
    cases = services.case_queue_filter(cases=access.case_list_for_user(user=request.user), **criteria)
    now = timezone.now()
    cases = services.case_queue(cases=cases, now=now).select_related("claimed_by").prefetch_related("images")
    page = Paginator(cases, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    rows = [
        {
            "case": case,
            "waiting": services.waiting_display(since=case.created_at, now=now),
            "holder": case.claim_holder(now=now),
            "thumbnail": next(iter(case.images.all()), None),
        }
        for case in page
    ]
    context = {
        "page": page,
        "rows": rows,
        "filters": filters,
        "disagreements": services.case_disagreement_count(cases=access.case_list_for_user(user=request.user)),
        "query": query.urlencode(),
        "revealed": set(request.session.get(REVEALED_SESSION_KEY, [])),
    }
    template = "diagnosis/review_queue.html#queue-list" if request.htmx else "diagnosis/review_queue.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@login_required
@require_POST
def review_submit(request: HttpRequest, pk: int) -> HttpResponse:
    case = _case_for_reviewer(request, pk, AuditEntry.Action.REVIEW)
    form = ReviewForm(request.POST)
    if not form.is_valid():
        return _case_page(request, case, UploadForm(), status=400, review_form=form)
    data = form.cleaned_data
    decision = {name: data[name] for name in ("label", "confidence", "disposition", "note")}
    try:
        if data["amends"]:
            review = access.review_get_for_user(user=request.user, pk=data["amends"])
            if review.case_id != case.pk:
                raise Http404("No such review")
            services.review_amend(
                review=review,
                reviewer=request.user,  # type: ignore[arg-type]
                expected_version=data["version"],
                reason=data["amendment_reason"],
                **decision,
            )
        else:
            image = (
                access.image_get_for_user(user=request.user, pk=data["image"], action=AuditEntry.Action.REVIEW)
                if data["image"]
                else None
            )
            services.review_record(
                case=case,
                reviewer=request.user,  # type: ignore[arg-type]
                expected_version=data["version"],
                image=image,
                **decision,
            )
    except services.StaleCaseError as exc:
        case.refresh_from_db()
        form = ReviewForm(_at_current_version(request, case))
        return _case_page(request, case, UploadForm(), status=409, review_form=form, conflict=str(exc))
    except ValidationError as exc:
        _add_errors(form, exc)
        return _case_page(request, case, UploadForm(), status=400, review_form=form)
    return redirect(reverse("case-detail", args=[case.pk]) + "#reviews")


@login_required
@require_POST
def lab_result_submit(request: HttpRequest, pk: int) -> HttpResponse:
    case = _case_for_reviewer(request, pk, AuditEntry.Action.LAB_RESULT)
    form = LabResultForm(request.POST)
    if form.is_valid():
        try:
            services.lab_result_record(
                case=case,
                recorded_by=request.user,  # type: ignore[arg-type]
                expected_version=form.cleaned_data["version"],
                pcr=form.cleaned_data["pcr"],
                collected_on=form.cleaned_data["collected_on"],
                sample_reference=form.cleaned_data["sample_reference"],
            )
        except services.StaleCaseError as exc:
            case.refresh_from_db()
            form = LabResultForm(_at_current_version(request, case))
            return _case_page(request, case, UploadForm(), status=409, lab_form=form, conflict=str(exc))
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            return redirect(reverse("case-detail", args=[case.pk]) + "#lab")
    return _case_page(request, case, UploadForm(), status=400, lab_form=form)


def _case_for_reviewer(request: HttpRequest, pk: int, action: str) -> Case:
    """The case, for a clinician to act on: 404 if the user may not see it, 403 if they may see but not act."""
    case = access.case_get_for_user(user=request.user, pk=pk, action=action)
    if not access.user_can_review(user=request.user):
        audit_record(action=action, user=request.user, obj=case, outcome=AuditEntry.Outcome.DENIED)
        raise PermissionDenied
    return case


def _at_current_version(request: HttpRequest, case: Case) -> QueryDict:
    """The refused form's answers, kept, against the version now shown: saving again is a deliberate second step."""
    data = request.POST.copy()
    data["version"] = str(case.version)
    return data


def _add_errors(form: ReviewForm | LabResultForm, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
    else:
        form.add_error(None, exc)


@login_required
@require_POST
def case_release(request: HttpRequest, pk: int) -> HttpResponse:
    case = _case_for_reviewer(request, pk, AuditEntry.Action.CASE_RELEASE)
    services.case_release(case=case, user=request.user)  # type: ignore[arg-type]
    return redirect("review-queue")


@login_required
@require_POST
def image_reveal(request: HttpRequest, pk: int) -> HttpResponse:
    """Uncover a blurred photo for this session, deliberately, and record who did it."""
    image = access.image_get_for_user(user=request.user, pk=pk, action=AuditEntry.Action.PHOTO_REVEAL)
    services.image_reveal(image=image, user=request.user)  # type: ignore[arg-type]
    revealed = request.session.get(REVEALED_SESSION_KEY, [])
    if image.pk not in revealed:
        request.session[REVEALED_SESSION_KEY] = [*revealed, image.pk]
    return redirect(reverse("case-detail", args=[image.case_id]) + f"#image-{image.pk}")


@login_required
@require_GET
@never_cache
def image_status(request: HttpRequest, pk: int) -> HttpResponse:
    """One photo's card, polled by htmx while its analysis runs; 286 stops the polling once it is finished."""
    image = access.image_get_for_user(user=request.user, pk=pk)
    analysis = image.latest_analysis()
    html = _image_card_html(request, image, analysis)
    if analysis is None or analysis.is_finished:
        return HttpResponseStopPolling(html)
    return HttpResponse(html)


def _image_card_html(request: HttpRequest, image: LesionImage, analysis: Analysis | None) -> str:
    revealed = set(request.session.get(REVEALED_SESSION_KEY, []))
    context: dict[str, Any] = {"image": image, "analysis": analysis, "revealed": revealed}
    return render_to_string("diagnosis/case_detail.html#image-card", context, request=request)


def _image_card(request: HttpRequest, image: LesionImage, *, status: int) -> HttpResponse:
    """A new photo's card, and its choice for the review form's photo list, for the case page's upload script."""
    html = _image_card_html(request, image, image.latest_analysis())
    html += render_to_string("diagnosis/case_detail.html#review-image-option", {"image": image}, request=request)
    return HttpResponse(html, status=status)


@login_required
@require_GET
def image_photo(request: HttpRequest, pk: int) -> FileResponse:
    image = access.image_get_for_user(user=request.user, pk=pk)
    response = _private_file(image.file, image.content_type)
    audit_record(action=AuditEntry.Action.PHOTO_VIEW, user=request.user, obj=image)
    return response


@login_required
@require_GET
def analysis_overlay(request: HttpRequest, pk: int) -> FileResponse:
    analysis = access.analysis_get_for_user(user=request.user, pk=pk)
    response = _private_file(analysis.heatmap_overlay, "image/png")
    audit_record(action=AuditEntry.Action.HEATMAP_VIEW, user=request.user, obj=analysis, detail={"kind": "overlay"})
    return response


@login_required
@require_GET
def analysis_heatmap(request: HttpRequest, pk: int) -> FileResponse:
    analysis = access.analysis_get_for_user(user=request.user, pk=pk)
    response = _private_file(analysis.heatmap, "image/png")
    audit_record(action=AuditEntry.Action.HEATMAP_VIEW, user=request.user, obj=analysis, detail={"kind": "heatmap"})
    return response


def _private_file(field: FieldFile, content_type: str) -> FileResponse:
    if not field:
        raise Http404("No such file")
    try:
        handle = field.open("rb")
    except FileNotFoundError:
        raise Http404("No such file") from None
    response = FileResponse(handle, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    response["Content-Disposition"] = "inline"
    return response


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    healthy, report = services.health_check()
    return JsonResponse(report, status=200 if healthy else 503)
