from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from diagnosis import access, services
from diagnosis.forms import CaseForm, UploadForm
from diagnosis.models import Case
from ml.imaging import ImageError

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
    context = {"cases": cases, "form": form, "can_create": access.user_can_create_case(user=request.user)}
    return render(request, "diagnosis/case_list.html", context, status=status)


@login_required
@require_GET
def case_detail(request: HttpRequest, pk: int) -> HttpResponse:
    case = access.case_get_for_user(user=request.user, pk=pk)
    return _case_page(request, case, UploadForm())


@login_required
@require_POST
def image_upload(request: HttpRequest, pk: int) -> HttpResponse:
    case = access.case_get_for_user(user=request.user, pk=pk)
    if not access.user_can_upload(user=request.user, case=case):
        raise PermissionDenied
    form = UploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            services.lesion_image_create(
                case=case,
                data=form.cleaned_data["photo"].read(),
                body_part=form.cleaned_data["body_part"],
                stage=form.cleaned_data["stage"],
                uploaded_by=request.user,  # type: ignore[arg-type]
            )
        except ImageError as exc:
            form.add_error("photo", str(exc))
        else:
            return redirect(reverse("case-detail", args=[case.pk]) + "#photos")
    return _case_page(request, case, form, status=400)


def _case_page(request: HttpRequest, case: Case, form: UploadForm, *, status: int = 200) -> HttpResponse:
    images = case.images.select_related("uploaded_by").prefetch_related("analyses__model_version")
    latest = [(image, max(image.analyses.all(), key=lambda a: a.pk, default=None)) for image in images]
    context = {
        "case": case,
        "form": form,
        "items": [{"image": image, "analysis": analysis} for image, analysis in latest],
        "pending": any(analysis and not analysis.is_finished for _, analysis in latest),
        "can_upload": access.user_can_upload(user=request.user, case=case),
        "max_upload_mb": f"{settings.MPOX_MAX_UPLOAD_BYTES / (1024 * 1024):g}",
    }
    return render(request, "diagnosis/case_detail.html", context, status=status)


@login_required
@require_GET
@never_cache
def image_status(request: HttpRequest, pk: int) -> HttpResponse:
    """One photo's card, polled by htmx while its analysis runs; 286 stops the polling once it is finished."""
    image = access.image_get_for_user(user=request.user, pk=pk)
    analysis = image.latest_analysis()
    context: dict[str, Any] = {"image": image, "analysis": analysis}
    html = render_to_string("diagnosis/case_detail.html#image-card", context, request=request)
    if analysis is None or analysis.is_finished:
        return HttpResponseStopPolling(html)
    return HttpResponse(html)


@login_required
@require_GET
def image_photo(request: HttpRequest, pk: int) -> FileResponse:
    image = access.image_get_for_user(user=request.user, pk=pk)
    return _private_file(image.file, image.content_type)


@login_required
@require_GET
def analysis_overlay(request: HttpRequest, pk: int) -> FileResponse:
    analysis = access.analysis_get_for_user(user=request.user, pk=pk)
    return _private_file(analysis.heatmap_overlay, "image/png")


@login_required
@require_GET
def analysis_heatmap(request: HttpRequest, pk: int) -> FileResponse:
    analysis = access.analysis_get_for_user(user=request.user, pk=pk)
    return _private_file(analysis.heatmap, "image/png")


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
