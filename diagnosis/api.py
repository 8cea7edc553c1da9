"""REST API v1 for other hospital systems: one DRF view per operation, thin over the models and services.

Every call through ``ApiView`` is audited (``api_call``), failed authentication included, except repeated refusals:
past the per-address rate for calls without a valid token, past a client's own rate, and for a scope the client
lacks, only the first of each period is audited (``ApiView.audit_sparingly``). Errors are RFC 9457
``application/problem+json``. The schema (``/api/v1/schema``) and its documentation page serve no data and are
neither authenticated nor audited.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from datetime import date
from typing import Any, NoReturn

from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.http import FileResponse, HttpResponseBase
from django.urls import path, re_path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, serializers
from rest_framework import status as http
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import BaseParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from diagnosis import api_auth, services, stats, views
from diagnosis.audit import audit_record
from diagnosis.models import Analysis, ApiClient, ApiIdempotencyKey, AuditEntry, Case, LabResult, LesionImage, Review
from ml import imaging

logger = logging.getLogger(__name__)

PROBLEM = "application/problem+json"


# --- errors ---


class Problem(serializers.Serializer):
    """RFC 9457 problem details; field errors, when there are some, under ``errors``."""

    type = serializers.CharField(default="about:blank")
    title = serializers.CharField(help_text="A sentence a person can read")
    status = serializers.IntegerField()
    errors = serializers.DictField(  # type: ignore[assignment]  # a field, not Serializer.errors
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Messages per field (or per query parameter)",
    )


PROBLEM_MEANING = {
    400: "Malformed request or query parameter",
    401: "Missing, unknown or revoked token",
    403: "The client lacks the scope",
    404: "No such object",
    409: "Conflicts with what is stored",
    413: "The photo is too large",
    415: "Unsupported media type: not a supported image, or the wrong kind of request body",
    422: "Field errors",
    429: "Rate limit exceeded",
}


def problems(*codes: int) -> dict[Any, OpenApiResponse]:
    """Schema responses for these error codes (and for those every endpoint can answer), as problem+json."""
    return {
        (code, PROBLEM): OpenApiResponse(Problem, description=PROBLEM_MEANING[code])
        for code in sorted({401, 403, 429, *codes})
    }


class FieldErrors(exceptions.ValidationError):
    """Field errors in a request body that was parsed: 422 (a malformed request or query is 400)."""

    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY


class Conflict(exceptions.APIException):
    status_code = http.HTTP_409_CONFLICT


class ImageProblem(exceptions.APIException):
    def __init__(self, status_code: int, detail: str) -> None:
        self.status_code = status_code
        super().__init__(detail)


def django_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    return exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Every error as problem+json: DRF's own, and anything unexpected as a logged 500 that names no detail."""
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("API error in %s", type(context.get("view")).__name__, exc_info=exc)
        response = Response(status=http.HTTP_500_INTERNAL_SERVER_ERROR)
        response.data = {"detail": "Something went wrong on our side; it has been logged."}
    data = response.data
    body: dict[str, Any] = {"type": "about:blank", "status": response.status_code}
    if isinstance(data, dict) and set(data) <= {"detail"}:
        body["title"] = str(data.get("detail", ""))
    else:
        if isinstance(data, list):
            data = {"non_field_errors": data}
        body["title"] = f"Please correct: {', '.join(str(name) for name in data)}."
        body["errors"] = data
    response.data = body
    response.content_type = PROBLEM
    return response


# --- the base view: authentication, scopes, rate limit, errors and the audit trail ---


API_TOKEN_DESCRIPTION = (
    f"An API client's token (create_api_client) with its scopes, any of: {ApiClient.SCOPES_DESCRIBED}"
)


# How long the count of unaudited refusals waits for the next audited one to report it.
UNAUDITED_COUNT_KEPT_S = 24 * 3600


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "diagnosis.api_auth.BearerAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": API_TOKEN_DESCRIPTION}


class ApiView(APIView):
    authentication_classes = (api_auth.BearerAuthentication,)
    permission_classes: tuple[type[BasePermission], ...] = (api_auth.HasScope,)
    throttle_classes = (api_auth.ApiClientRateThrottle,)
    renderer_classes = (JSONRenderer,)
    parser_classes: tuple[type[BaseParser], ...] = (JSONParser,)
    # One scope, or a tuple of scopes the client needs every one of (api_auth.HasScope).
    required_scope: str | tuple[str, ...] = "read"
    # The query parameters the view reads; any other is refused, so that a misspelt filter is not silently ignored.
    query_names: frozenset[str] = frozenset()
    # Set by a view to the object the call concerned, so that its audit entry names the case and patient.
    audit_object: Model | None = None
    # Facts added to the call's audit entry, and whether it has none (see ``check_unauthenticated_rate``).
    audit_extra: dict[str, Any] | None = None
    audit_skip = False

    def get_exception_handler(self) -> Any:
        return problem_exception_handler

    def perform_authentication(self, request: Request) -> None:
        """Authenticate; then hold calls without a valid token to the per-address rate (valid clients never are)."""
        try:
            super().perform_authentication(request)
        except exceptions.AuthenticationFailed:
            self.check_unauthenticated_rate(request)
            raise
        if not isinstance(request.auth, ApiClient):
            self.check_unauthenticated_rate(request)

    def check_unauthenticated_rate(self, request: Request) -> None:
        throttle = api_auth.UnauthenticatedRateThrottle()
        if throttle.allow_request(request, self):
            return
        # Calls below the rate are audited as any call is; past it, sparingly.
        assert throttle.key is not None  # a throttle without a key lets every call through
        self.audit_sparingly(throttle.key, throttle.duration)
        wait = max(1, math.ceil(throttle.wait() or throttle.duration))
        raise exceptions.Throttled(wait, detail="Too many calls without a valid token from this address.")

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> NoReturn:
        client = request.auth
        missing = api_auth.scopes_missing(client, self) if isinstance(client, ApiClient) else []
        if missing:
            # DRF checks the rate after the permissions: count the refused call against the client's rate here, so
            # that a client that keeps calling what it may not is held to MPOX_API_RATE (429 past it) like any other.
            self.check_throttles(request)
            # Below the rate it is refused alike on every call: audit the first refusal per client, missing scopes
            # and period of its rate, not each one.
            rate = api_auth.ApiClientRateThrottle()
            self.audit_sparingly(f"{rate.get_cache_key(request, self)}_lacks_{'_'.join(missing)}", rate.duration)
        super().permission_denied(request, message=message, code=code)

    def throttled(self, request: Request, wait: float) -> NoReturn:
        # Past its rate a client is refused alike until the period ends: audit its first 429 per period, not each.
        rate = api_auth.ApiClientRateThrottle()
        key = rate.get_cache_key(request, self)
        if key is not None:
            self.audit_sparingly(f"{key}_throttled", rate.duration)
        super().throttled(request, wait)

    def audit_sparingly(self, key: str, period: int) -> None:
        """Audit this refusal only if it is the first under ``key`` in ``period`` seconds, and count the others.

        A flood of refusals then adds one entry per key and period instead of one per call (each is a write under the
        chain's lock), and the log still shows when and from whom it came. The audited entry names the period
        (``unaudited_refusals_for_s``) and how many refusals went unaudited since the key's previous entry
        (``unaudited_refusals_before``, when there were some in the last day; concurrent workers may miss a few).
        """
        unaudited = f"{key}_unaudited"
        if cache.add(f"{key}_audited", True, timeout=period):  # the throttles' cache: CACHE_URL, shared by workers
            self.audit_extra = {**(self.audit_extra or {}), "unaudited_refusals_for_s": period}
            if count := cache.get(unaudited):
                cache.delete(unaudited)
                self.audit_extra["unaudited_refusals_before"] = count
        else:
            self.audit_skip = True
            cache.set(unaudited, cache.get(unaudited, 0) + 1, timeout=UNAUDITED_COUNT_KEPT_S)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if not hasattr(self, (request.method or "").lower()):
            return  # answered 405 next, whatever the parameters
        # PostgreSQL refuses NUL in text; refuse it here rather than fail in a filter.
        if any("\x00" in value for value in request.query_params.values()):
            raise exceptions.ParseError("Query parameters must not contain NUL characters.")
        unknown = sorted(set(request.query_params) - self.query_names)
        if unknown:
            takes = f"it takes {', '.join(sorted(self.query_names))}" if self.query_names else "it takes none"
            raise exceptions.ValidationError(
                {name: [f"Not a parameter of this endpoint ({takes})."] for name in unknown}
            )
        empty = sorted(name for name, value in request.query_params.items() if value == "")
        if empty:
            raise exceptions.ValidationError({name: ["Give a value or leave this parameter out."] for name in empty})

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if self.audit_skip:
            response._has_been_logged = True  # nor one django.request warning per refusal
        self.audit_call(request, response)
        return response

    def audit_call(self, request: Request, response: HttpResponseBase) -> None:
        """One ``api_call`` entry: who (never the token), which endpoint and object, and how it went."""
        if self.audit_skip:
            return
        try:
            client = request.auth
        except exceptions.APIException:  # authentication had not run yet, and fails now
            client = None
        code = response.status_code
        outcome = AuditEntry.Outcome.SUCCESS
        if code in (401, 403, 429):
            outcome = AuditEntry.Outcome.DENIED
        elif code >= 400:
            outcome = AuditEntry.Outcome.FAILED
        label = ""
        if not isinstance(client, ApiClient):
            client = None
            label = "unknown token" if request.META.get("HTTP_AUTHORIZATION") else "no token"
        match = request._request.resolver_match
        detail: dict[str, Any] = {"endpoint": match.url_name if match else "", "method": request.method, "status": code}
        object_id = self.kwargs.get("pk", self.kwargs.get("case_id"))
        if object_id is not None:
            detail["object_id"] = object_id
        detail.update(self.audit_extra or {})
        audit_record(
            action=AuditEntry.Action.API_CALL,
            api_client=client,
            request=request._request,
            obj=self.audit_object,
            outcome=outcome,
            detail=detail,
            actor_label=label,
        )


def query(name: str, description: str = "", **schema: Any) -> OpenApiParameter:
    """A query parameter as the schema states it: a non-empty string (``initial`` refuses empty ones)."""
    return OpenApiParameter(name, {"type": "string", "minLength": 1, **schema}, description=description)


def service_user(client: ApiClient) -> User:
    """Cases and photos name a user; an API client acts as its own inactive user, who cannot log in."""
    user, created = User.objects.get_or_create(username=f"api-client-{client.pk}", defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def client_of(request: Request) -> ApiClient:
    client = request.auth
    assert isinstance(client, ApiClient)  # HasScope let the request in
    return client


def may_see_photos(request: Request) -> bool:
    """Whether the client may download photos and heatmap overlays (the `photos` scope): answers that would link to
    one give the link only then, so that a client is never sent a URL it would be refused."""
    return "photos" in client_of(request).scopes


# --- analyses ---


class ReviewOutput(serializers.Serializer):
    label = serializers.ChoiceField(choices=Review.Label.choices)  # type: ignore[assignment]
    confidence = serializers.ChoiceField(choices=Review.Confidence.choices)
    disposition = serializers.ChoiceField(choices=Review.Disposition.choices)


class AnalysisOutput(serializers.Serializer):
    id = serializers.IntegerField()
    case_id = serializers.IntegerField()
    encounter_id = serializers.CharField(allow_null=True, help_text="The visit number the submitting system sent")
    status = serializers.ChoiceField(choices=Analysis.Status.choices)
    probabilities = serializers.DictField(child=serializers.FloatField(), help_text="Per class, once done")
    label = serializers.CharField(allow_null=True, help_text="The most probable class, once done")  # type: ignore[assignment]
    inconclusive = serializers.BooleanField()
    model_version = serializers.CharField(allow_null=True)
    heatmap_url = serializers.URLField(
        allow_null=True,
        help_text="The heatmap over the photo (PNG) once done; always null for a client without the `photos` scope",
    )
    review = ReviewOutput(allow_null=True, help_text="The latest clinician's review of the case")
    timings = serializers.DictField(child=serializers.FloatField(), help_text="Milliseconds per step")
    error = serializers.CharField(allow_null=True, help_text="Why the analysis failed, for a person")


def analysis_json(analysis: Analysis, request: Request) -> dict[str, Any]:
    case = analysis.image.case
    review = case.reviews.order_by("-created_at", "-pk").first()
    heatmap_url = None
    if analysis.heatmap_overlay and may_see_photos(request):
        heatmap_url = request.build_absolute_uri(reverse("api-analysis-heatmap", args=[analysis.pk]))
    return AnalysisOutput(
        {
            "id": analysis.pk,
            "case_id": case.pk,
            "encounter_id": case.encounter_id or None,
            "status": analysis.status,
            "probabilities": analysis.probabilities,
            "label": analysis.label or None,
            "inconclusive": analysis.inconclusive,
            "model_version": analysis.model_version.version if analysis.model_version else None,
            "heatmap_url": heatmap_url,
            "review": review,
            "timings": analysis.timings,
            "error": analysis.error_message or None,
        }
    ).data


def analysis_get(pk: int) -> Analysis:
    analysis = Analysis.objects.select_related("image__case", "model_version").filter(pk=pk).first()
    if analysis is None:
        raise exceptions.NotFound("No analysis has this id.")
    return analysis


class AnalysisDetail(ApiView):
    @extend_schema(operation_id="analysis_get", responses={200: AnalysisOutput, **problems(404)})
    def get(self, request: Request, pk: int) -> Response:
        """One analysis: its status, and once done the probabilities, label, heatmap link (with the `photos` scope)
        and latest review."""
        self.audit_object = analysis = analysis_get(pk)
        return Response(analysis_json(analysis, request))


class AnalysisHeatmap(ApiView):
    required_scope = ("read", "photos")  # the overlay shows the photo

    @extend_schema(
        operation_id="analysis_heatmap",
        responses={
            (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="The heatmap over the photo"),
            **problems(404),
        },
    )
    def get(self, request: Request, pk: int) -> FileResponse:
        """The Grad-CAM heatmap over the photo, as PNG; 404 until the analysis is done.

        Needs the `read` and `photos` scopes: the overlay shows the photo. Without `photos`, 403.
        """
        self.audit_object = analysis = analysis_get(pk)
        return views._private_file(analysis.heatmap_overlay, "image/png")


IMAGE_STATUS = [
    (imaging.ImageTooLargeError, http.HTTP_413_REQUEST_ENTITY_TOO_LARGE),
    (imaging.UnsupportedFormatError, http.HTTP_415_UNSUPPORTED_MEDIA_TYPE),
    (imaging.NotAnImageError, http.HTTP_415_UNSUPPORTED_MEDIA_TYPE),
    (imaging.ImageError, http.HTTP_422_UNPROCESSABLE_ENTITY),
]


class AnalysisSubmitInput(serializers.Serializer):
    image = serializers.FileField(help_text="The photo: JPEG, PNG or WebP")
    body_part = serializers.ChoiceField(choices=LesionImage.BodyPart.choices)
    stage = serializers.ChoiceField(choices=LesionImage.Stage.choices)
    patient_id = serializers.CharField(max_length=64, help_text="The hospital's patient identifier")
    encounter_id = serializers.CharField(max_length=64, required=False, allow_blank=True)


class AnalysisAccepted(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Analysis.Status.choices)
    url = serializers.URLField(help_text="Poll this for the result")


class AnalysisPage(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = AnalysisOutput(many=True)


class AnalysisCursor(CursorPagination):
    ordering = "-pk"
    page_size = 50


class AnalysisSubmit(ApiView):
    required_scope = "submit"
    parser_classes = (MultiPartParser,)

    @extend_schema(
        operation_id="analysis_submit",
        request={"multipart/form-data": AnalysisSubmitInput},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", str, OpenApiParameter.HEADER, description="Retries answer the same analysis"
            )
        ],
        responses={202: AnalysisAccepted, **problems(400, 413, 415, 422)},
    )
    def post(self, request: Request) -> Response:
        """Send a photo for analysis: 202 with the analysis to poll. An `Idempotency-Key` makes a retry answer the
        same analysis."""
        client = client_of(request)
        key = request.headers.get("Idempotency-Key", "").strip()[:200]
        if key and (earlier := earlier_submission(client, key)):
            return self._accepted(earlier, request)
        form = AnalysisSubmitInput(data=request.data)
        if not form.is_valid():
            raise FieldErrors(form.errors)
        data = form.validated_data
        user = service_user(client)
        image: LesionImage | None = None
        try:
            with transaction.atomic():
                if key:
                    # A retry sent while the first attempt was still running: wait for it (the client's row lock;
                    # SQLite's IMMEDIATE transactions serialise anyway) and answer its analysis.
                    list(ApiClient.objects.select_for_update().filter(pk=client.pk).values_list("pk"))
                    if earlier := earlier_submission(client, key):
                        return self._accepted(earlier, request)
                case = services.case_create(
                    hospital_identifier=data["patient_id"], created_by=user, encounter_id=data.get("encounter_id", "")
                )
                image = services.lesion_image_create(
                    case=case,
                    data=data["image"].read(),
                    body_part=data["body_part"],
                    stage=data["stage"],
                    uploaded_by=user,
                )
                analysis = image.analyses.get()
                if key:
                    ApiIdempotencyKey.objects.create(client=client, key=key, analysis=analysis)
        except DjangoValidationError as exc:
            raise FieldErrors(django_errors(exc)) from exc
        except imaging.ImageError as exc:
            status_code = next(code for kind, code in IMAGE_STATUS if isinstance(exc, kind))
            raise ImageProblem(status_code, str(exc)) from exc
        except IntegrityError:  # a concurrent retry with the same key won after all
            if image is not None:  # its rows were rolled back; its files are not part of the transaction
                services.lesion_image_files_delete(image)
            winner = earlier_submission(client, key) if key else None
            if winner is None:
                raise
            return self._accepted(winner, request)
        return self._accepted(analysis, request)

    def _accepted(self, analysis: Analysis, request: Request) -> Response:
        self.audit_object = analysis
        url = request.build_absolute_uri(reverse("api-analysis", args=[analysis.pk]))
        body = AnalysisAccepted({"id": analysis.pk, "status": analysis.status, "url": url}).data
        return Response(body, status=http.HTTP_202_ACCEPTED)


def earlier_submission(client: ApiClient, key: str) -> Analysis | None:
    """The analysis an earlier submission with this `Idempotency-Key` created, if any."""
    earlier = ApiIdempotencyKey.objects.filter(client=client, key=key).select_related("analysis").first()
    return earlier.analysis if earlier else None


class AnalysisList(ApiView):
    query_names = frozenset({"patient", "status", "label", "date", "cursor"})

    @extend_schema(
        operation_id="analysis_list",
        parameters=[
            query("patient", "The hospital's patient identifier"),
            query("status", enum=Analysis.Status.values),
            query("label", "The model's most probable class"),
            query("date", "Queued on this day", format="date"),
            query("cursor", "From the previous page's next or previous link"),
        ],
        responses={200: AnalysisPage, **problems(400, 404)},
    )
    def get(self, request: Request) -> Response:
        """All the hospital's analyses, newest first; an unknown cursor is 404."""
        analyses = Analysis.objects.select_related("image__case", "model_version")
        params = request.query_params
        if params.get("patient"):
            analyses = analyses.filter(image__case__patient__hospital_identifier=params["patient"])
        if params.get("status"):
            if params["status"] not in Analysis.Status.values:
                raise exceptions.ValidationError({"status": [f"One of {', '.join(Analysis.Status.values)}."]})
            analyses = analyses.filter(status=params["status"])
        if params.get("label"):
            analyses = analyses.filter(label=params["label"])
        if params.get("date"):
            day = _day(params["date"])
            if day is None:
                raise exceptions.ValidationError({"date": ["A date as YYYY-MM-DD."]})
            analyses = analyses.filter(queued_at__date=day)
        paginator = AnalysisCursor()
        page = paginator.paginate_queryset(analyses, request, view=self) or []
        return paginator.get_paginated_response([analysis_json(analysis, request) for analysis in page])


def _day(value: str) -> date | None:
    try:
        return parse_date(value) if len(value) == 10 else None
    except ValueError:  # well formed but not a real day, e.g. 2026-02-30
        return None


class AnalysisCollection(AnalysisSubmit, AnalysisList):
    """One URL, two operations: `GET` lists (scope read), `POST` submits a photo (scope submit)."""

    def check_permissions(self, request: Request) -> None:
        self.required_scope = "submit" if request.method == "POST" else "read"
        super().check_permissions(request)

    @property
    def query_names(self) -> frozenset[str]:  # type: ignore[override]
        return AnalysisList.query_names if self.request.method == "GET" else frozenset()


# --- lab results ---


@extend_schema_field(
    {
        "oneOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}],
        "description": "When the sample was taken: a date, or a date and time (the local day is kept)",
    }
)
class CollectedField(serializers.Field):
    default_error_messages = {  # noqa: RUF012 (DRF's convention)
        "invalid": "A date (YYYY-MM-DD) or a date and time (ISO 8601).",
        "future": "The sample cannot have been taken in the future.",
    }

    def to_internal_value(self, data: Any) -> date:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            moment = parse_datetime(data) if "T" in data or " " in data.strip() else None
            day = timezone.localtime(moment).date() if moment and timezone.is_aware(moment) else None
            day = day or (moment.date() if moment else parse_date(data))
        except (ValueError, OverflowError):
            day = None
        if day is None:
            self.fail("invalid")
        assert day is not None
        if day > timezone.localdate():
            self.fail("future")
        return day

    def to_representation(self, value: date) -> str:
        return value.isoformat()


class LabResultInput(serializers.Serializer):
    result = serializers.ChoiceField(choices=LabResult.Pcr.choices)
    sample_id = serializers.CharField(max_length=64, help_text="The laboratory's sample reference")
    collected_at = CollectedField()


class GroundTruthOutput(serializers.Serializer):
    label = serializers.CharField(help_text="A review label, or not_mpox")  # type: ignore[assignment]
    source = serializers.ChoiceField(choices=["pcr", "clinician"])  # type: ignore[assignment]


class LabResultOutput(serializers.Serializer):
    id = serializers.IntegerField()
    case_id = serializers.IntegerField()
    encounter_id = serializers.CharField(allow_null=True)
    result = serializers.ChoiceField(choices=LabResult.Pcr.choices)
    sample_id = serializers.CharField()
    collected_on = serializers.DateField()
    recorded_at = serializers.DateTimeField()
    case_version = serializers.IntegerField()
    ground_truth = GroundTruthOutput(allow_null=True, help_text="What the statistics now use for this case")


class LabResultCreate(ApiView):
    required_scope = "lab"

    @extend_schema(
        operation_id="lab_result_create",
        request=LabResultInput,
        responses={
            201: OpenApiResponse(LabResultOutput, description="Recorded"),
            200: OpenApiResponse(LabResultOutput, description="This sample was already recorded with this result"),
            **problems(400, 404, 409, 415, 422),
        },
    )
    def post(self, request: Request, case_id: int) -> Response:
        """A PCR result from the laboratory; it becomes the case's ground truth (an inconclusive one does not)."""
        case = Case.objects.filter(pk=case_id).first()
        if case is None:
            raise exceptions.NotFound("No case has this id.")
        self.audit_object = case
        form = LabResultInput(data=request.data)
        if not form.is_valid():
            raise FieldErrors(form.errors)
        try:
            result, created = services.lab_result_receive(
                case=case,
                recorded_by=service_user(client_of(request)),
                pcr=form.validated_data["result"],
                collected_on=form.validated_data["collected_at"],
                sample_reference=form.validated_data["sample_id"],
            )
        except services.LabResultConflictError as exc:
            raise Conflict(str(exc)) from exc
        except DjangoValidationError as exc:
            raise FieldErrors(django_errors(exc)) from exc
        self.audit_object = result
        truth = services.case_ground_truth(case=result.case)
        body = LabResultOutput(
            {
                "id": result.pk,
                "case_id": result.case_id,
                "encounter_id": result.case.encounter_id or None,
                "result": result.pcr,
                "sample_id": result.sample_reference,
                "collected_on": result.collected_on,
                "recorded_at": result.created_at,
                "case_version": result.case_version,
                "ground_truth": asdict(truth) if truth else None,
            }
        ).data
        return Response(body, status=http.HTTP_201_CREATED if created else http.HTTP_200_OK)


# --- statistics ---


class ClassMetricsOutput(serializers.Serializer):
    precision = serializers.FloatField(allow_null=True)
    recall = serializers.FloatField(allow_null=True)
    specificity = serializers.FloatField(allow_null=True)
    f1 = serializers.FloatField(allow_null=True)
    support = serializers.IntegerField(help_text="Photos of this class")


class RecallOutput(serializers.Serializer):
    n = serializers.IntegerField(help_text="Photos of mpox")
    recall = serializers.FloatField(allow_null=True)
    ci95 = serializers.ListField(
        child=serializers.FloatField(), min_length=2, max_length=2, allow_null=True, help_text="Wilson 95 % interval"
    )


class StatsOutput(serializers.Serializer):
    n = serializers.IntegerField(help_text="Photos with a ground truth")
    per_class = serializers.DictField(child=ClassMetricsOutput())
    mpox_recall_by_stage = serializers.DictField(child=RecallOutput())
    mpox_recall_by_body_part = serializers.DictField(child=RecallOutput())


class Stats(ApiView):
    required_scope = "stats"
    query_names = frozenset({"date_from", "date_to", "model_version", "body_part", "stage"})

    @extend_schema(
        operation_id="stats_get",
        parameters=[
            query("date_from", "Photos uploaded on or after this day", format="date"),
            query("date_to", "Photos uploaded on or before this day", format="date"),
            query("model_version", "A model version the analyses used"),
            query("body_part", enum=LesionImage.BodyPart.values),
            query("stage", enum=LesionImage.Stage.values),
        ],
        responses={200: StatsOutput, **problems(400)},
    )
    def get(self, request: Request) -> Response:
        """The model's graded statistics, per photo, against each case's ground truth (a conclusive PCR, else the
        clinicians' latest review); photos without one are left out (see ``diagnosis.stats.graded_stats``)."""
        try:
            filters = stats.stats_filters_parse(request.query_params)
        except DjangoValidationError as exc:
            raise exceptions.ValidationError(django_errors(exc)) from exc
        return Response(StatsOutput(asdict(stats.graded_stats(filters=filters))).data)


# --- everything else under /api/v1/ ---


class NotRouted(ApiView):
    """Any other path under /api/v1/, whatever the method: 404 as problem+json (a bad token is still 401)."""

    permission_classes = ()
    http_method_names: list[str] = []  # noqa: RUF012 (Django's View attribute)
    schema = None

    def http_method_not_allowed(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        raise exceptions.NotFound("There is no such API endpoint; see /api/v1/docs.")


class Schema(SpectacularAPIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)


class Docs(SpectacularSwaggerView):
    authentication_classes = ()
    permission_classes = (AllowAny,)


urlpatterns = [
    path("analyses", AnalysisCollection.as_view(), name="api-analyses"),
    path("analyses/<int:pk>", AnalysisDetail.as_view(), name="api-analysis"),
    path("analyses/<int:pk>/heatmap", AnalysisHeatmap.as_view(), name="api-analysis-heatmap"),
    path("cases/<int:case_id>/lab-results", LabResultCreate.as_view(), name="api-lab-results"),
    path("stats", Stats.as_view(), name="api-stats"),
    path("schema", Schema.as_view(), name="api-schema"),
    path("docs", Docs.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^[\s\S]*$", NotRouted.as_view(), name="api-not-found"),  # newlines too, unlike "."
]
