"""REST API v1 for other hospital systems: thin DRF views over the models and services."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.dateparse import parse_date
from rest_framework import status as http
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from diagnosis import api_auth, services, views
from diagnosis.models import Analysis, ApiClient, ApiIdempotencyKey
from ml import imaging


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF errors as RFC 9457 `application/problem+json`, with field errors under `errors`."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    body: dict[str, Any] = {"type": "about:blank", "status": response.status_code}
    if isinstance(data, dict) and set(data) <= {"detail"}:
        body["title"] = str(data.get("detail", ""))
    else:
        body["title"] = "Invalid request."
        body["errors"] = data
    response.data = body
    response.content_type = "application/problem+json"
    return response


class ApiView(APIView):
    authentication_classes = (api_auth.BearerAuthentication,)
    permission_classes = (api_auth.HasScope,)
    throttle_classes = (api_auth.ApiClientRateThrottle,)
    required_scope = "read"

    def get_exception_handler(self) -> Any:
        return problem_exception_handler


def analysis_json(analysis: Analysis, request: Request) -> dict[str, Any]:
    case = analysis.image.case
    review = case.reviews.order_by("-created_at", "-pk").first()
    heatmap_url = None
    if analysis.heatmap_overlay:
        heatmap_url = request.build_absolute_uri(reverse("api-analysis-heatmap", args=[analysis.pk]))
    return {
        "id": analysis.pk,
        "case_id": case.pk,
        "status": analysis.status,
        "probabilities": analysis.probabilities,
        "label": analysis.label or None,
        "inconclusive": analysis.inconclusive,
        "model_version": analysis.model_version.version if analysis.model_version else None,
        "heatmap_url": heatmap_url,
        "review": (
            {"label": review.label, "confidence": review.confidence, "disposition": review.disposition}
            if review
            else None
        ),
        "timings": analysis.timings,
        "error": analysis.error_message or None,
    }


class AnalysisDetail(ApiView):
    def get(self, request: Request, pk: int) -> Response:
        analysis = get_object_or_404(Analysis.objects.select_related("image__case", "model_version"), pk=pk)
        return Response(analysis_json(analysis, request))


class AnalysisHeatmap(ApiView):
    def get(self, request: Request, pk: int) -> FileResponse:
        analysis = get_object_or_404(Analysis, pk=pk)
        return views._private_file(analysis.heatmap_overlay, "image/png")


class ImageProblem(APIException):
    def __init__(self, status_code: int, detail: str) -> None:
        self.status_code = status_code
        super().__init__(detail)


IMAGE_STATUS = [
    (imaging.ImageTooLargeError, http.HTTP_413_REQUEST_ENTITY_TOO_LARGE),
    (imaging.UnsupportedFormatError, http.HTTP_415_UNSUPPORTED_MEDIA_TYPE),
    (imaging.NotAnImageError, http.HTTP_415_UNSUPPORTED_MEDIA_TYPE),
    (imaging.ImageError, http.HTTP_422_UNPROCESSABLE_ENTITY),
]


def service_user(client: ApiClient) -> User:
    """Cases and photos name a user; an API client acts as its own inactive user, who cannot log in."""
    user, created = User.objects.get_or_create(username=f"api-client-{client.pk}", defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


class AnalysisSubmit(ApiView):
    required_scope = "submit"

    def post(self, request: Request) -> Response:
        client = request.auth
        assert isinstance(client, ApiClient)
        key = request.headers.get("Idempotency-Key", "").strip()[:200]
        if key:
            earlier = ApiIdempotencyKey.objects.filter(client=client, key=key).first()
            if earlier:
                return self._accepted(earlier.analysis, request)
        upload = request.FILES.get("image")
        data: Any = request.data
        errors = {
            name: ["This field is required."]
            for name in ("body_part", "stage", "patient_id")
            if not str(data.get(name, "")).strip()
        }
        if upload is None:
            errors["image"] = ["Attach the photo as a multipart file."]
        if errors:
            raise ValidationError(errors)
        assert upload is not None
        user = service_user(client)
        try:
            with transaction.atomic():
                case = services.case_create(hospital_identifier=str(data["patient_id"]), created_by=user)
                image = services.lesion_image_create(
                    case=case,
                    data=upload.read(),
                    body_part=str(data["body_part"]),
                    stage=str(data["stage"]),
                    uploaded_by=user,
                )
                analysis = image.analyses.get()
                if key:
                    ApiIdempotencyKey.objects.create(client=client, key=key, analysis=analysis)
        except DjangoValidationError as exc:
            return self._problem_422(exc)
        except imaging.ImageError as exc:
            status_code = next(code for kind, code in IMAGE_STATUS if isinstance(exc, kind))
            raise ImageProblem(status_code, str(exc)) from exc
        except IntegrityError:  # a concurrent retry with the same key won
            return self._accepted(ApiIdempotencyKey.objects.get(client=client, key=key).analysis, request)
        return self._accepted(analysis, request)

    def _accepted(self, analysis: Analysis, request: Request) -> Response:
        url = request.build_absolute_uri(reverse("api-analysis", args=[analysis.pk]))
        return Response({"id": analysis.pk, "status": analysis.status, "url": url}, status=http.HTTP_202_ACCEPTED)

    def _problem_422(self, exc: DjangoValidationError) -> Response:
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(
            {"type": "about:blank", "status": 422, "title": "Invalid tags.", "errors": errors},
            status=http.HTTP_422_UNPROCESSABLE_ENTITY,
            content_type="application/problem+json",
        )


class AnalysisCursor(CursorPagination):
    ordering = "-pk"
    page_size = 50


class AnalysisList(ApiView):
    """All the hospital's analyses, newest first; filters: patient, status, label, date (YYYY-MM-DD, queued on)."""

    def get(self, request: Request) -> Response:
        analyses = Analysis.objects.select_related("image__case", "model_version")
        params = request.query_params
        if params.get("patient"):
            analyses = analyses.filter(image__case__patient__hospital_identifier=params["patient"])
        if params.get("status"):
            if params["status"] not in Analysis.Status.values:
                raise ValidationError({"status": [f"One of {', '.join(Analysis.Status.values)}."]})
            analyses = analyses.filter(status=params["status"])
        if params.get("label"):
            analyses = analyses.filter(label=params["label"])
        if params.get("date"):
            try:
                day = parse_date(params["date"]) if len(params["date"]) == 10 else None
            except ValueError:  # well formed but not a real day, e.g. 2026-02-30
                day = None
            if day is None:
                raise ValidationError({"date": ["A date as YYYY-MM-DD."]})
            analyses = analyses.filter(queued_at__date=day)
        paginator = AnalysisCursor()
        page = paginator.paginate_queryset(analyses, request, view=self) or []
        return paginator.get_paginated_response([analysis_json(analysis, request) for analysis in page])


class AnalysisCollection(AnalysisSubmit, AnalysisList):
    """`GET` lists (scope read), `POST` submits a photo (scope submit)."""

    def check_permissions(self, request: Request) -> None:
        self.required_scope = "submit" if request.method == "POST" else "read"
        super().check_permissions(request)


urlpatterns = [
    path("analyses", AnalysisCollection.as_view(), name="api-analyses"),
    path("analyses/<int:pk>", AnalysisDetail.as_view(), name="api-analysis"),
    path("analyses/<int:pk>/heatmap", AnalysisHeatmap.as_view(), name="api-analysis-heatmap"),
]
