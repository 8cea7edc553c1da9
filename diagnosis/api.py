"""REST API v1 for other hospital systems: thin DRF views over the models and services."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.dateparse import parse_date
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from diagnosis import api_auth, views
from diagnosis.models import Analysis


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


urlpatterns = [
    path("analyses", AnalysisList.as_view(), name="api-analyses"),
    path("analyses/<int:pk>", AnalysisDetail.as_view(), name="api-analysis"),
    path("analyses/<int:pk>/heatmap", AnalysisHeatmap.as_view(), name="api-analysis-heatmap"),
]
