"""What the auditors' pages read from the audit trail: the filter form, the filtered entries, the CSV export, the
per-patient access report and the per-user activity report. Everything here only reads; the pages record their
own viewing through ``diagnosis.audit.audit_record``.

Patients are chosen by hospital identifier in a posted form and referred to by their row id from then on, so an
identifier never appears in a URL or in an audit entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from diagnosis.models import AuditEntry, Patient

# The entries that show a person opened a patient's record or photos.
PATIENT_ACCESS_ACTIONS = (
    AuditEntry.Action.CASE_VIEW,
    AuditEntry.Action.PHOTO_VIEW,
    AuditEntry.Action.HEATMAP_VIEW,
    AuditEntry.Action.PHOTO_REVEAL,
)
# Dates a filter may name: wide enough for any log, narrow enough that a day's bounds are valid times in any zone.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)
CSV_HEADER = (
    "seq",
    "time_utc",
    "actor",
    "actor_user_id",
    "api_client_id",
    "action",
    "object_type",
    "object_id",
    "patient_id",
    "patient",
    "case_id",
    "source_ip",
    "outcome",
    "detail",
    "entry_hash",
)


class AuditFilterForm(forms.Form):
    """The list's filters. Read from the query string (where ``hospital_identifier`` is never accepted) and from the
    posted form, which turns an identifier into the patient's row id."""

    user = forms.CharField(required=False, max_length=150, label="User or API client")
    hospital_identifier = forms.CharField(
        required=False,
        max_length=64,
        label="Patient's hospital identifier",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    patient = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    case = forms.IntegerField(required=False, min_value=1, label="Case number")
    action = forms.ChoiceField(required=False, choices=[("", "Any action"), *AuditEntry.Action.choices])
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        identifier = (data.get("hospital_identifier") or "").strip()
        if identifier:
            data["patient"] = _patient_by_identifier(self, identifier)
        elif data.get("patient"):
            data["patient"] = Patient.objects.filter(pk=data["patient"]).first()
            if data["patient"] is None:
                self.add_error(None, "That patient does not exist; clear the patient filter.")
        start, end = data.get("date_from"), data.get("date_to")
        for name, day in (("date_from", start), ("date_to", end)):
            if day and not FIRST_DAY <= day <= LAST_DAY:
                self.add_error(name, f"Enter a date between {FIRST_DAY.year} and {LAST_DAY.year}.")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def query(self) -> dict[str, str]:
        """The valid filters as query-string values: ids and dates, never an identifier."""
        data = self.cleaned_data
        values = {
            "user": data.get("user") or "",
            "patient": str(data["patient"].pk) if data.get("patient") else "",
            "case": str(data["case"]) if data.get("case") else "",
            "action": data.get("action") or "",
            "date_from": data["date_from"].isoformat() if data.get("date_from") else "",
            "date_to": data["date_to"].isoformat() if data.get("date_to") else "",
        }
        return {name: value for name, value in values.items() if value}


class PatientFindForm(forms.Form):
    hospital_identifier = forms.CharField(
        max_length=64,
        label="Patient's hospital identifier",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        error_messages={"required": "Enter the patient's hospital identifier."},
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        identifier = (data.get("hospital_identifier") or "").strip()
        if identifier:
            data["patient"] = _patient_by_identifier(self, identifier)
        return data


def _patient_by_identifier(form: forms.Form, identifier: str) -> Patient | None:
    patient = Patient.objects.filter(hospital_identifier=identifier).first()
    if patient is None:
        form.add_error("hospital_identifier", "No patient has this hospital identifier.")
    return patient


def audit_entries_filter(
    *,
    user: str = "",
    patient: Patient | None = None,
    case: int | None = None,
    action: str = "",
    date_from: date | None = None,
    date_to: date | None = None,
    **unused: Any,
) -> QuerySet[AuditEntry]:
    """Entries newest first. ``user`` is a user name or API client name, as it was at the time or as it is now;
    dates are whole days in the site's time zone, both ends included."""
    entries = AuditEntry.objects.order_by("-seq")
    if user:
        current = get_user_model().objects.filter(username__iexact=user).values_list("pk", flat=True)
        entries = entries.filter(Q(actor_label__iexact=user) | Q(actor_user_id__in=list(current)))
    if patient is not None:
        entries = entries.filter(patient_id=patient.pk)
    if case:
        entries = entries.filter(case_id=case)
    if action:
        entries = entries.filter(action=action)
    if date_from:
        entries = entries.filter(at__gte=_day_start(date_from))
    if date_to:
        entries = entries.filter(at__lt=_day_start(date_to + timedelta(days=1)))
    return entries


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def patient_masks(patient_ids: Iterable[int | None]) -> dict[int, str]:
    """Masked identifiers (last four characters) of the given patient rows."""
    wanted = {pk for pk in patient_ids if pk is not None}
    patients = Patient.objects.filter(pk__in=wanted).only("hospital_identifier")
    return {patient.pk: patient.masked_identifier for patient in patients}


def audit_csv_rows(*, entries: QuerySet[AuditEntry], chunk_size: int = 2_000) -> Iterator[list[str]]:
    """The header, then one row per entry; read and written chunk by chunk so a long export streams."""
    yield list(CSV_HEADER)
    rows = entries.iterator(chunk_size=chunk_size)
    while chunk := list(islice(rows, chunk_size)):
        masks = patient_masks(entry.patient_id for entry in chunk)
        for entry in chunk:
            yield [
                str(entry.seq),
                entry.at.astimezone(UTC).isoformat(),
                _csv_safe(entry.actor_label),
                _text(entry.actor_user_id),
                _text(entry.api_client_id),
                entry.action,
                entry.object_type,
                _csv_safe(entry.object_id),
                _text(entry.patient_id),
                masks.get(entry.patient_id, "") if entry.patient_id else "",
                _text(entry.case_id),
                _text(entry.source_ip),
                entry.outcome,
                _csv_safe(_json(entry.detail)),
                entry.entry_hash,
            ]


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":")) if value else ""


def _csv_safe(value: str) -> str:
    """A cell a spreadsheet will not run as a formula (a failed login's user name is whatever was typed)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@dataclass
class AccessRow:
    """One person's (or API client's) opening of a patient's records."""

    actor_label: str
    actor_user_id: int | None
    api_client_id: int | None
    counts: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    first: datetime | None = None
    last: datetime | None = None


def audit_patient_access(*, patient: Patient) -> list[AccessRow]:
    """Everyone who opened this patient's cases, photos or heatmaps, or revealed a photo: counts per action, first and
    last time, and refused attempts; the most recent first."""
    groups = (
        AuditEntry.objects.filter(patient_id=patient.pk, action__in=PATIENT_ACCESS_ACTIONS)
        .values("actor_user_id", "api_client_id", "actor_label", "action", "outcome")
        .annotate(n=Count("pk"), first=Min("at"), last=Max("at"))
        .order_by()
    )
    rows: dict[tuple[Any, ...], AccessRow] = {}
    for group in groups:
        key = (group["actor_user_id"], group["api_client_id"], group["actor_label"])
        row = rows.setdefault(key, AccessRow(group["actor_label"], group["actor_user_id"], group["api_client_id"]))
        if group["outcome"] != AuditEntry.Outcome.SUCCESS:
            row.refused += group["n"]
            continue
        row.counts[group["action"]] = row.counts.get(group["action"], 0) + group["n"]
        row.first = min(row.first, group["first"]) if row.first else group["first"]
        row.last = max(row.last, group["last"]) if row.last else group["last"]
    return sorted(rows.values(), key=lambda row: row.last or datetime.min.replace(tzinfo=UTC), reverse=True)


@dataclass(frozen=True)
class UserActivity:
    user: User
    entries: int
    patients: int
    cases: int
    first: datetime | None
    last: datetime | None
    per_action: list[dict[str, Any]]


def audit_user_activity(*, user: User) -> UserActivity:
    entries = AuditEntry.objects.filter(actor_user_id=user.pk)
    totals = entries.aggregate(
        n=Count("pk"),
        patients=Count("patient_id", distinct=True),
        cases=Count("case_id", distinct=True),
        first=Min("at"),
        last=Max("at"),
    )
    per_action: list[dict[str, Any]] = [
        {**row, "action_display": AuditEntry(action=row["action"]).action_display}
        for row in entries.values("action", "outcome")
        .annotate(n=Count("pk"), first=Min("at"), last=Max("at"))
        .order_by("-n")
    ]
    return UserActivity(
        user=user,
        entries=totals["n"],
        patients=totals["patients"],
        cases=totals["cases"],
        first=totals["first"],
        last=totals["last"],
        per_action=per_action,
    )


def audit_users_summary() -> list[dict[str, Any]]:
    """Every user account with how many entries name it and when it last acted, most recently active first."""
    activity: dict[int | None, dict[str, Any]] = {
        row["actor_user_id"]: dict(row)
        for row in AuditEntry.objects.filter(actor_user_id__isnull=False)
        .values("actor_user_id")
        .annotate(n=Count("pk"), last=Max("at"))
        .order_by()
    }
    users = get_user_model().objects.prefetch_related("groups").order_by("username")
    summary = [
        {
            "user": user,
            "roles": sorted(group.name for group in user.groups.all()),
            "entries": activity.get(user.pk, {}).get("n", 0),
            "last": activity.get(user.pk, {}).get("last"),
        }
        for user in users
    ]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(summary, key=lambda row: row["last"] or epoch, reverse=True)
