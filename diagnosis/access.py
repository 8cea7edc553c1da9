"""Who may see and do what. One function per object type, shared by every view; a record the user may not see
answers 404, so its existence is not revealed, and the refusal is recorded in the audit trail under ``action`` (what
the user was trying to do). Call these outside any transaction, so that the 404 does not roll the entry back."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as AuthUser
from django.db.models import QuerySet
from django.http import Http404

from diagnosis.audit import audit_denied
from diagnosis.models import Analysis, AuditEntry, Case, LesionImage, Review

NURSE = "nurse"
CLINICIAN = "clinician"
AUDITOR = "auditor"
ADMIN = "admin"
ROLES = (NURSE, CLINICIAN, AUDITOR, ADMIN)

User = AuthUser | AnonymousUser


def user_roles(*, user: User) -> frozenset[str]:
    if not user.is_authenticated:
        return frozenset()
    cached: frozenset[str] | None = getattr(user, "_mpox_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        if user.is_superuser:
            names.add(ADMIN)
        cached = frozenset(names & set(ROLES))
        user._mpox_roles = cached  # type: ignore[union-attr,attr-defined]  # cached for the request
    return cached


def user_sees_all_cases(*, user: User) -> bool:
    return bool(user_roles(user=user) & {CLINICIAN, AUDITOR, ADMIN})


def user_can_create_case(*, user: User) -> bool:
    return bool(user_roles(user=user) & {NURSE, CLINICIAN, ADMIN})


def user_can_upload(*, user: User, case: Case) -> bool:
    roles = user_roles(user=user)
    if roles & {CLINICIAN, ADMIN}:
        return True
    return NURSE in roles and case.created_by_id == user.pk


def user_can_review(*, user: User) -> bool:
    """Reviews, amendments, second reads, claims and lab results are the clinicians' alone."""
    return CLINICIAN in user_roles(user=user)


def user_can_audit(*, user: User) -> bool:
    """The audit log and its reports are the auditors' and admins'."""
    return bool(user_roles(user=user) & {AUDITOR, ADMIN})


def case_list_for_user(*, user: User) -> QuerySet[Case]:
    cases = Case.objects.select_related("patient")
    if user_sees_all_cases(user=user):
        return cases
    if NURSE in user_roles(user=user):
        return cases.filter(created_by_id=user.pk)
    return cases.none()


def case_get_for_user(*, user: User, pk: int, action: str = AuditEntry.Action.CASE_VIEW) -> Case:
    try:
        return case_list_for_user(user=user).get(pk=pk)
    except Case.DoesNotExist:
        audit_denied(action=action, user=user, model=Case, pk=pk)
        raise Http404("No such case") from None


def image_get_for_user(*, user: User, pk: int, action: str = AuditEntry.Action.PHOTO_VIEW) -> LesionImage:
    try:
        return LesionImage.objects.select_related("case").get(pk=pk, case__in=case_list_for_user(user=user))
    except LesionImage.DoesNotExist:
        audit_denied(action=action, user=user, model=LesionImage, pk=pk)
        raise Http404("No such image") from None


def analysis_get_for_user(*, user: User, pk: int, action: str = AuditEntry.Action.HEATMAP_VIEW) -> Analysis:
    try:
        return Analysis.objects.select_related("image__case", "model_version").get(
            pk=pk, image__case__in=case_list_for_user(user=user)
        )
    except Analysis.DoesNotExist:
        audit_denied(action=action, user=user, model=Analysis, pk=pk)
        raise Http404("No such analysis") from None


def review_get_for_user(*, user: User, pk: int, action: str = AuditEntry.Action.AMENDMENT) -> Review:
    try:
        return Review.objects.select_related("case", "image").get(pk=pk, case__in=case_list_for_user(user=user))
    except Review.DoesNotExist:
        audit_denied(action=action, user=user, model=Review, pk=pk)
        raise Http404("No such review") from None
