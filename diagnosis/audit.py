"""The tamper-evident audit trail: writing entries and verifying the hash chain.

Every entry is written inside the transaction of the action it records (so a rolled-back action leaves no entry) and
hashes its own content together with its predecessor's hash. Writers take one lock for the rest of their transaction
(an advisory lock on PostgreSQL; SQLite's IMMEDIATE transactions already serialise writers), so the chain never forks.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from diagnosis.models import Analysis, ApiClient, AuditEntry, Case, LabResult, LesionImage, Patient, Review

GENESIS_HASH = "0" * 64
# An arbitrary constant naming the audit chain's PostgreSQL advisory lock.
_PG_LOCK_KEY = 0x4D50_4F58_4155_4454 & 0x7FFF_FFFF_FFFF_FFFF

# The fields each hash covers, in this order.
HASHED_FIELDS = (
    "seq",
    "at",
    "actor_user_id",
    "api_client_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "patient_id",
    "case_id",
    "source_ip",
    "outcome",
    "detail",
    "prev_hash",
)


_AT, _PREV_HASH = HASHED_FIELDS.index("at"), HASHED_FIELDS.index("prev_hash")
# What json.dumps(..., sort_keys=True, separators=(",", ":")) builds on every call, built once.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def entry_hash(values: dict[str, Any]) -> str:
    """SHA-256 over an entry's hashed fields (canonical JSON; times in UTC with microseconds)."""
    return _fields_hash([values[name] for name in HASHED_FIELDS])


def _fields_hash(fields: list[Any]) -> str:
    """``entry_hash`` of the hashed fields in ``HASHED_FIELDS`` order (the list is changed in place)."""
    at = fields[_AT]
    if isinstance(at, datetime):
        fields[_AT] = at.astimezone(UTC).isoformat(timespec="microseconds")
    return hashlib.sha256(_CANONICAL_JSON.encode(fields).encode()).hexdigest()


# The request being served in this context, so services record its source IP without taking it as an argument.
_current_request: ContextVar[HttpRequest | None] = ContextVar("audit_current_request", default=None)


class AuditRequestMiddleware:
    """Makes the current request known to ``audit_record`` for the length of the request, and only that long."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)


def request_ip(request: HttpRequest | None) -> str | None:
    """The client's address: REMOTE_ADDR, or behind MPOX_TRUSTED_PROXIES proxies the address they saw.

    Each trusted proxy appends the address it received from to X-Forwarded-For, so the client is the entry that
    many places from the right; anything further left was written by the client itself and could be forged.
    """
    if request is None:
        request = _current_request.get()
    if request is None:
        return None
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = settings.MPOX_TRUSTED_PROXIES
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies == 0 or len(forwarded) < proxies:
        return remote
    try:
        return str(ipaddress.ip_address(forwarded[-proxies]))
    except ValueError:
        return remote


def _references(obj: Model | None) -> tuple[str, str, int | None, int | None]:
    """(object type, object id, patient id, case id) of a domain object."""
    if obj is None:
        return "", "", None, None
    object_type = obj._meta.model_name or ""
    case: Case | None = None
    if isinstance(obj, Patient):
        return object_type, str(obj.pk), obj.pk, None
    if isinstance(obj, Case):
        case = obj
    elif isinstance(obj, LesionImage | Review | LabResult):
        case = obj.case
    elif isinstance(obj, Analysis):
        case = obj.image.case
    if case is None:
        return object_type, str(obj.pk), None, None
    return object_type, str(obj.pk), case.patient_id, case.pk


def audit_record(
    *,
    action: str,
    user: Any = None,
    api_client: ApiClient | None = None,
    request: HttpRequest | None = None,
    obj: Model | None = None,
    outcome: str = AuditEntry.Outcome.SUCCESS,
    detail: dict[str, Any] | None = None,
    actor_label: str = "",
) -> AuditEntry:
    """Append one entry to the chain, inside the caller's transaction when there is one.

    ``user`` may be anonymous or None (a failed login names the attempted username in ``actor_label``); ``detail``
    holds small extra facts (an endpoint, a status code, a filter) and must never hold a photo or an identifier.
    Without ``request``, the source IP is that of the request being served (see ``AuditRequestMiddleware``), if any.
    """
    return _append(
        action=action,
        user=user,
        api_client=api_client,
        request=request,
        references=_references(obj),
        outcome=outcome,
        detail=detail,
        actor_label=actor_label,
    )


def audit_denied(*, action: str, user: Any, model: type[Model], pk: object) -> AuditEntry:
    """Record that an access check refused ``user`` the ``model`` row ``pk`` (which may not exist at all).

    The entry names the row's case and patient by their ids when the row exists. Call it outside any transaction
    the refusal rolls back (the access check's 404 must not take the entry with it).
    """
    obj = model._default_manager.filter(pk=pk).first()
    references = _references(obj) if obj is not None else (model._meta.model_name or "", str(pk), None, None)
    return _append(
        action=action,
        user=user,
        api_client=None,
        request=None,
        references=references,
        outcome=AuditEntry.Outcome.DENIED,
        detail=None,
        actor_label="",
    )


def _append(
    *,
    action: str,
    user: Any,
    api_client: ApiClient | None,
    request: HttpRequest | None,
    references: tuple[str, str, int | None, int | None],
    outcome: str,
    detail: dict[str, Any] | None,
    actor_label: str,
) -> AuditEntry:
    if action not in AuditEntry.Action.values:
        raise ValueError(f"unknown audit action {action!r}")
    if outcome not in AuditEntry.Outcome.values:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    user_id = user.pk if user is not None and getattr(user, "is_authenticated", False) else None
    if not actor_label:
        actor_label = api_client.name if api_client is not None else (user.get_username() if user_id else "")
    object_type, object_id, patient_id, case_id = references
    values: dict[str, Any] = {
        "at": timezone.now(),
        "actor_user_id": user_id,
        "api_client_id": api_client.pk if api_client is not None else None,
        "actor_label": actor_label[:150],
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "patient_id": patient_id,
        "case_id": case_id,
        "source_ip": request_ip(request),
        "outcome": outcome,
        "detail": detail or {},
    }
    with transaction.atomic():
        _chain_lock()
        last = AuditEntry.objects.order_by("-seq").values_list("seq", "entry_hash").first()
        values["seq"], values["prev_hash"] = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
        return AuditEntry.objects.create(**values, entry_hash=entry_hash(values))


def _chain_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_LOCK_KEY])


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


@dataclass(frozen=True)
class ChainReport:
    checked: int
    first_break: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def _rows(chunk_size: int) -> Iterator[tuple[Any, ...]]:
    columns = (*HASHED_FIELDS, "entry_hash")
    last_seq = 0
    while True:
        chunk = list(AuditEntry.objects.filter(seq__gt=last_seq).order_by("seq").values_list(*columns)[:chunk_size])
        if not chunk:
            return
        yield from chunk
        last_seq = chunk[-1][0]


def audit_chain_verify(*, chunk_size: int = 20_000) -> ChainReport:
    """Walk the chain in order; report the first entry whose content, link or position was tampered with.

    An edited row fails its own hash; a deleted, inserted or reordered row breaks the next entry's link or the
    sequence.
    """
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for row in _rows(chunk_size):
        seq = row[0]
        if seq != expected_seq:
            return ChainReport(checked, ChainBreak(seq, f"expected entry {expected_seq} next, found {seq}"))
        if row[_PREV_HASH] != expected_prev:
            return ChainReport(checked, ChainBreak(seq, "its link to the previous entry does not match"))
        if _fields_hash(list(row[:-1])) != row[-1]:
            return ChainReport(checked, ChainBreak(seq, "its content does not match its hash"))
        expected_prev = row[-1]
        expected_seq += 1
        checked += 1
    return ChainReport(checked, None)
