"""FHIR R4 read API under /fhir/: thin DRF views over diagnosis.fhir's builders; errors as OperationOutcome.

Authentication, scopes, rate limit and the audit trail are the REST API's (``api.ApiView``); the scope is ``read``,
and a photo (Binary) needs ``photos`` too. A report for a client without ``photos`` keeps its Media, without URLs.
Search parameters are never logged: the audit entry names the endpoint, not the query.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.http import FileResponse, Http404
from django.urls import path, re_path, reverse
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from diagnosis import api, fhir, views
from diagnosis.models import LesionImage

logger = logging.getLogger(__name__)

# When this CapabilityStatement was last changed (its required `date`).
CAPABILITY_DATE = datetime(2026, 11, 26, tzinfo=UTC)
SEARCH_PARAMETERS = frozenset({"patient", "status", "_count", "_cursor", "_format"})
DEFAULT_COUNT, MAX_COUNT = 50, 200
WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


class FhirJsonRenderer(JSONRenderer):
    media_type = fhir.FHIR_JSON
    format = "fhir"


class AlwaysFhirJson(DefaultContentNegotiation):
    """FHIR JSON whatever the Accept header says (`application/json`, `*/*`, a browser's list)."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class SearchParameterError(exceptions.APIException):
    status_code = 400

    def __init__(self, issues: list[tuple[str, str]]) -> None:
        self.issues = issues
        super().__init__("; ".join(text for text, _ in issues))


def fhir_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Every error as an OperationOutcome with the right status; anything unexpected is logged and answered 500."""
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("FHIR error in %s", type(context.get("view")).__name__, exc_info=exc)
        response = Response(status=500)
        issues = [("Something went wrong on our side; it has been logged.", "exception")]
    elif isinstance(exc, SearchParameterError):
        issues = exc.issues
    elif isinstance(exc, exceptions.ValidationError) and isinstance(response.data, dict):
        issues = [(f"{name}: {' '.join(map(str, messages))}", "invalid") for name, messages in response.data.items()]
    elif isinstance(exc, exceptions.MethodNotAllowed | exceptions.UnsupportedMediaType):
        issues = [(str(getattr(exc, "detail", exc)), "not-supported")]
    else:
        issues = [(_text(response.data), "")]
    response.data = fhir.operation_outcome(status=response.status_code, issues=issues)
    return response


def _text(data: Any) -> str:
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])
    if isinstance(data, list):
        return " ".join(map(str, data))
    return str(data)


class FhirBase(APIView):
    content_negotiation_class = AlwaysFhirJson
    schema = None  # FHIR has its own description (/fhir/metadata); the OpenAPI schema is the REST API's

    def get_exception_handler(self) -> Any:
        return fhir_exception_handler


class FhirView(FhirBase, api.ApiView):
    """Bearer token with the read scope, rate-limited and audited like the REST API."""

    renderer_classes = (FhirJsonRenderer,)
    parser_classes = (FormParser,)
    required_scope: str | tuple[str, ...] = "read"
    query_names = frozenset({"_format"})  # FHIR's own; the base view refuses parameters a view does not take


def _site(request: Request) -> str:
    return request.build_absolute_uri("/").rstrip("/")


class Metadata(FhirBase):
    """The CapabilityStatement; public, as FHIR servers' are, and not audited (it holds no data)."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    renderer_classes = (FhirJsonRenderer,)

    def get(self, request: Request) -> Response:
        return Response(fhir.capability_statement(site=_site(request), published=CAPABILITY_DATE))


class DiagnosticReportRead(FhirView):
    def get(self, request: Request, pk: str) -> Response:
        number = _whole_number(pk)
        if number is None:
            raise Http404("No DiagnosticReport with that id.")
        analysis = fhir.report_queryset().filter(pk=number).first()
        if analysis is None:
            raise Http404("No DiagnosticReport with that id.")
        self.audit_object = analysis
        return Response(fhir.diagnostic_report(analysis, site=_site(request), photos=api.may_see_photos(request)))


class _Search(FhirView):
    query_names = SEARCH_PARAMETERS

    def search(self, request: Request, params: dict[str, list[str]]) -> Response:
        unknown = sorted(set(params) - SEARCH_PARAMETERS)
        issues = [(f"{name}: not a search parameter of this server.", "invalid") for name in unknown]
        # A form body is not checked by the base view as the query is; PostgreSQL refuses NUL in text.
        if any("\x00" in value for values in params.values() for value in values):
            issues.append(("Search parameters must not contain NUL characters.", "invalid"))
        patient = _one(params, "patient", issues)
        if patient is not None and not patient.strip():
            issues.append(("patient: give the patient's hospital identifier.", "invalid"))
        statuses = [value.strip() for text in params.get("status", []) for value in text.split(",")]
        bad = [value for value in statuses if value not in fhir.REPORT_STATUSES]
        if bad:
            issues.append((f"status: one or more of {', '.join(fhir.REPORT_STATUSES)}.", "invalid"))
        count = _number(_one(params, "_count", issues), "_count", DEFAULT_COUNT, issues)
        cursor = _number(_one(params, "_cursor", issues), "_cursor", 0, issues)
        if issues:
            raise SearchParameterError(issues)
        count = min(count, MAX_COUNT)
        reports = fhir.report_search(patient=patient, statuses=statuses, before=cursor or None)
        total = fhir.report_search(patient=patient, statuses=statuses, before=None).count()
        page = list(reports[: count + 1])
        site, photos = _site(request), api.may_see_photos(request)
        links = self.links(request, params, more=page[count - 1].pk if len(page) > count else None)
        return Response(
            fhir.searchset(
                [fhir.diagnostic_report(analysis, site=site, photos=photos) for analysis in page[:count]],
                site=site,
                total=total,
                links=links,
            )
        )

    def links(self, request: Request, params: dict[str, list[str]], *, more: int | None) -> dict[str, str]:
        """The request's own URL as `self`, and `next` when there are more; a GET's parameters are in its URL."""
        links = {"self": request.build_absolute_uri()}
        if more is not None:
            query = request.query_params.copy()
            query.setlist("_cursor", [str(more)])
            links["next"] = request.build_absolute_uri(reverse("fhir-diagnostic-reports") + "?" + query.urlencode())
        return links


class DiagnosticReportSearch(_Search):
    """`GET DiagnosticReport?patient=&status=`; POST to `DiagnosticReport/_search` keeps the patient out of URLs."""

    def get(self, request: Request) -> Response:
        return self.search(request, dict(request.query_params.lists()))


class DiagnosticReportSearchPost(_Search):
    """`POST DiagnosticReport/_search` with the parameters as a form body (FHIR's way to search without a URL)."""

    def post(self, request: Request) -> Response:
        params = dict(request.query_params.lists())
        body: Any = request.data
        for name in body:
            values = body.getlist(name) if hasattr(body, "getlist") else [str(body[name])]
            params.setdefault(name, []).extend(values)
        return self.search(request, params)

    def links(self, request: Request, params: dict[str, list[str]], *, more: int | None) -> dict[str, str]:
        # A link is a URL: one carrying the patient identifier would put it back into logs. Without the patient,
        # the parameters are safe to link; with it, the client pages by posting _cursor (`next` says the value).
        if "patient" not in params:
            return super().links(request, params, more=more)
        links = {"self": request.build_absolute_uri(reverse("fhir-diagnostic-reports-search"))}
        if more is not None:
            links["next"] = links["self"] + f"?_cursor={more}"
        return links


def _one(params: dict[str, list[str]], name: str, issues: list[tuple[str, str]]) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        issues.append((f"{name}: give it once.", "invalid"))
    return values[0]


def _number(text: str | None, name: str, default: int, issues: list[tuple[str, str]]) -> int:
    if text is None:
        return default
    number = _whole_number(text)
    if number is None or number < 1:
        issues.append((f"{name}: a whole number of at least 1.", "invalid"))
        return default
    return number


def _whole_number(text: str) -> int | None:
    """ASCII digits that fit a database id (str.isdigit would take "²", and a huge number overflows SQLite)."""
    return int(text) if WHOLE_NUMBER.fullmatch(text) else None


class BinaryRead(FhirView):
    """The photo a report's Media links to, as the image itself (`photo-<id>`); needs `photos` besides `read`."""

    required_scope = ("read", "photos")

    def get(self, request: Request, pk: str) -> FileResponse:
        kind, _, digits = pk.partition("-")
        number = _whole_number(digits)
        if kind != "photo" or number is None:
            raise Http404("No Binary with that id.")
        image = LesionImage.objects.filter(pk=number).select_related("case").first()
        if image is None:
            raise Http404("No Binary with that id.")
        self.audit_object = image
        return views._private_file(image.file, image.content_type)


class NotRouted(FhirView):
    """Anything else under /fhir/: 404 OperationOutcome (after authentication, like every data endpoint)."""

    http_method_names: list[str] = []  # noqa: RUF012 (Django's View attribute)

    def http_method_not_allowed(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        raise exceptions.NotFound("This server serves DiagnosticReport and Binary only; see /fhir/metadata.")


urlpatterns = [
    path("metadata", Metadata.as_view(), name="fhir-metadata"),
    path("DiagnosticReport", DiagnosticReportSearch.as_view(), name="fhir-diagnostic-reports"),
    path("DiagnosticReport/_search", DiagnosticReportSearchPost.as_view(), name="fhir-diagnostic-reports-search"),
    path("DiagnosticReport/<str:pk>", DiagnosticReportRead.as_view(), name="fhir-diagnostic-report"),
    path("Binary/<str:pk>", BinaryRead.as_view(), name="fhir-binary"),
    re_path(r"^.*$", NotRouted.as_view(), name="fhir-not-found"),
]
