"""The auditors' pages: the audit log with filters and CSV export, who opened a patient's records, what a user did.

Auditors and admins only; anyone else signed in gets 403 (recorded), anyone signed out the login page. Every page
records its own viewing ("audit_view"), the export records "export" before the first row goes out. A patient is
looked up by hospital identifier only from a posted form; URLs carry the patient's row id.
"""

from __future__ import annotations

import csv
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from diagnosis import access
from diagnosis.audit import audit_record
from diagnosis.audit_reports import (
    AuditFilterForm,
    PatientFindForm,
    audit_csv_rows,
    audit_entries_filter,
    audit_patient_access,
    audit_user_activity,
    audit_users_summary,
    patient_masks,
)
from diagnosis.models import AuditEntry, Patient

AUDIT_PAGE_SIZE = 50
RECENT_ENTRIES = 50
AUDIT_VIEW = AuditEntry.Action.AUDIT_VIEW


def _require_auditor(request: HttpRequest, page: str) -> None:
    if not access.user_can_audit(user=request.user):
        audit_record(
            action=AUDIT_VIEW,
            user=request.user,
            request=request,
            outcome=AuditEntry.Outcome.DENIED,
            detail={"page": page},
        )
        raise PermissionDenied


def _filters_from_url(request: HttpRequest) -> AuditFilterForm:
    data = request.GET.copy()
    data.pop("hospital_identifier", None)  # identifiers come only from the posted form
    return AuditFilterForm(data)


@login_required
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    _require_auditor(request, "list")
    form = _filters_from_url(request)
    return _list_page(request, form, status=200 if form.is_valid() else 400)


@login_required
@require_POST
def audit_filter(request: HttpRequest) -> HttpResponse:
    """The filter form: turns a hospital identifier into the patient's row id and shows the list for it."""
    _require_auditor(request, "list")
    form = AuditFilterForm(request.POST)
    if not form.is_valid():
        return _list_page(request, form, status=400)
    return redirect(reverse("audit-list") + "?" + urlencode(form.query()))


def _list_page(request: HttpRequest, form: AuditFilterForm, *, status: int) -> HttpResponse:
    valid = status == 200
    query = form.query() if valid else {}
    audit_record(action=AUDIT_VIEW, user=request.user, request=request, detail={"page": "list", "filters": query})
    context: dict[str, Any] = {"form": form, "query": urlencode(query), "page": None, "rows": []}
    if valid:
        entries = audit_entries_filter(**form.cleaned_data)
        page = Paginator(entries, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
        patient = form.cleaned_data.get("patient")
        context.update(
            page=page,
            rows=_rows(page.object_list),
            patient=patient,
            without_patient=urlencode({name: value for name, value in query.items() if name != "patient"}),
        )
    return render(request, "diagnosis/audit/list.html", context, status=status)


def _rows(entries: Any) -> list[dict[str, Any]]:
    entries = list(entries)
    masks = patient_masks(entry.patient_id for entry in entries)
    return [{"entry": entry, "patient": masks.get(entry.patient_id, "")} for entry in entries]


class _Echo:
    """csv.writer's file: hands each written line straight back, for streaming."""

    def write(self, value: str) -> str:
        return value


@login_required
@require_GET
def audit_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    _require_auditor(request, "export")
    form = _filters_from_url(request)
    if not form.is_valid():
        return _list_page(request, form, status=400)
    entries = audit_entries_filter(**form.cleaned_data)
    audit_record(
        action=AuditEntry.Action.EXPORT,
        user=request.user,
        request=request,
        detail={"what": "audit_log", **form.query()},
    )
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in audit_csv_rows(entries=entries)), content_type="text/csv; charset=utf-8"
    )
    filename = f"audit-{timezone.localdate().isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
@require_GET
def audit_patient_find(request: HttpRequest) -> HttpResponse:
    _require_auditor(request, "patient_find")
    audit_record(action=AUDIT_VIEW, user=request.user, request=request, detail={"page": "patient_find"})
    return render(request, "diagnosis/audit/patient.html", {"form": PatientFindForm()})


@login_required
@require_POST
def audit_patient_find_submit(request: HttpRequest) -> HttpResponse:
    _require_auditor(request, "patient_find")
    form = PatientFindForm(request.POST)
    if not form.is_valid():
        audit_record(action=AUDIT_VIEW, user=request.user, request=request, detail={"page": "patient_find"})
        return render(request, "diagnosis/audit/patient.html", {"form": form}, status=400)
    return redirect("audit-patient", pk=form.cleaned_data["patient"].pk)


@login_required
@require_GET
def audit_patient(request: HttpRequest, pk: int) -> HttpResponse:
    """Everyone who opened this patient's cases, photos or heatmaps."""
    _require_auditor(request, "patient_access")
    patient = get_object_or_404(Patient, pk=pk)
    audit_record(action=AUDIT_VIEW, user=request.user, request=request, obj=patient, detail={"page": "patient_access"})
    context = {
        "form": PatientFindForm(),
        "patient": patient,
        "access_rows": audit_patient_access(patient=patient),
        "cases": patient.cases.order_by("-created_at"),
        "list_query": urlencode({"patient": patient.pk}),
    }
    return render(request, "diagnosis/audit/patient.html", context)


@login_required
@require_GET
def audit_users(request: HttpRequest) -> HttpResponse:
    _require_auditor(request, "users")
    audit_record(action=AUDIT_VIEW, user=request.user, request=request, detail={"page": "users"})
    return render(request, "diagnosis/audit/users.html", {"users": audit_users_summary()})


@login_required
@require_GET
def audit_user(request: HttpRequest, pk: int) -> HttpResponse:
    """What one user did: counts per action, how many patients and cases, the latest entries."""
    _require_auditor(request, "user_activity")
    subject = get_object_or_404(get_user_model(), pk=pk)
    audit_record(action=AUDIT_VIEW, user=request.user, request=request, obj=subject, detail={"page": "user_activity"})
    recent = AuditEntry.objects.filter(actor_user_id=subject.pk).order_by("-seq")[:RECENT_ENTRIES]
    context = {
        "activity": audit_user_activity(user=subject),
        "rows": _rows(recent),
        "list_query": urlencode({"user": subject.get_username()}),
    }
    return render(request, "diagnosis/audit/user.html", context)
