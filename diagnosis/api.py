"""REST API v1 for other hospital systems: thin DRF views over the models and services."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
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


urlpatterns = [
    path("analyses/<int:pk>", AnalysisDetail.as_view(), name="api-analysis"),
    path("analyses/<int:pk>/heatmap", AnalysisHeatmap.as_view(), name="api-analysis-heatmap"),
]
