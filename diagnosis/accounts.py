"""Accounts: log-in lockout, session expiry after inactivity, and the audit entries of logging in and out.

The audit table is the lockout's only store. A failed log-in is an ``login_failed`` entry naming the attempted
username and the source IP; ``MPOX_LOGIN_MAX_FAILURES`` of them for one username within ``MPOX_LOCKOUT_MINUTES``
write a ``lockout`` entry, and the username stays locked for that many minutes after it, or until an admin writes an
``unlock`` entry (admin action or ``manage.py login_unlock``). The same holds per source IP when
``MPOX_LOGIN_MAX_FAILURES_PER_IP`` is set. Lockout is enforced in the authentication backend, so every password
check (the log-in page, the admin's, ``Client.login``) honours it, and attempts during a lockout are refused even
with the right password.

Django's auth signals are the only hooks it gives for log-ins, log-outs and failed log-ins; the receivers below only
hand them to the functions here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import signals
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django_htmx.http import HttpResponseClientRedirect

from diagnosis.audit import audit_record, request_ip
from diagnosis.models import AuditEntry

USERNAME = "username"
IP = "ip"


@dataclass(frozen=True)
class LoginLock:
    scope: str  # USERNAME or IP
    until: datetime

    def minutes_left(self, *, now: datetime) -> int:
        return max(1, math.ceil((self.until - now).total_seconds() / 60))


def _window() -> timedelta:
    return timedelta(minutes=settings.MPOX_LOCKOUT_MINUTES)


def _keys(*, username: str, ip: str | None) -> list[tuple[str, str, int]]:
    """(scope, value, failures that lock it) for each key a log-in attempt is counted under."""
    keys = [(USERNAME, username[:150], settings.MPOX_LOGIN_MAX_FAILURES)]
    if ip and settings.MPOX_LOGIN_MAX_FAILURES_PER_IP > 0:
        keys.append((IP, ip, settings.MPOX_LOGIN_MAX_FAILURES_PER_IP))
    return keys


def _last_lock_event(*, scope: str, value: str) -> AuditEntry | None:
    """The latest lockout or unlock of this key: a lockout starts a lock, and either ends the failures before it."""
    return (
        AuditEntry.objects.filter(
            action__in=[AuditEntry.Action.LOCKOUT, AuditEntry.Action.UNLOCK], detail__scope=scope, detail__target=value
        )
        .order_by("-seq")
        .first()
    )


def login_lock_find(*, username: str, ip: str | None, now: datetime | None = None) -> LoginLock | None:
    """The lock that refuses a log-in as ``username`` from ``ip`` now, if any (the one lasting longest)."""
    now = now or timezone.now()
    locks = []
    for scope, value, _ in _keys(username=username, ip=ip):
        event = _last_lock_event(scope=scope, value=value)
        if event is not None and event.action == AuditEntry.Action.LOCKOUT and event.at + _window() > now:
            locks.append(LoginLock(scope=scope, until=event.at + _window()))
    return max(locks, key=lambda lock: lock.until, default=None)


def login_failure_record(*, username: str, request: HttpRequest | None) -> LoginLock | None:
    """Record a failed log-in; lock the username (and the IP) once it reaches its limit. Returns the lock, if any.

    An attempt refused because of a lock is recorded as denied and does not count towards the next lock.
    """
    ip = request_ip(request)
    now = timezone.now()
    with transaction.atomic():
        lock = login_lock_find(username=username, ip=ip, now=now)
        if lock is not None:
            audit_record(
                action=AuditEntry.Action.LOGIN_FAILED,
                request=request,
                actor_label=username,
                outcome=AuditEntry.Outcome.DENIED,
                detail={"reason": "locked", "scope": lock.scope},
            )
            return lock
        # audit_record takes the chain's writer lock for the rest of this transaction, so concurrent failures are
        # counted one after the other and a key is locked exactly once.
        audit_record(
            action=AuditEntry.Action.LOGIN_FAILED,
            request=request,
            actor_label=username,
            outcome=AuditEntry.Outcome.FAILED,
        )
        for scope, value, limit in _keys(username=username, ip=ip):
            failures = AuditEntry.objects.filter(
                action=AuditEntry.Action.LOGIN_FAILED, outcome=AuditEntry.Outcome.FAILED, at__gt=now - _window()
            )
            failures = failures.filter(actor_label=value) if scope == USERNAME else failures.filter(source_ip=value)
            last = _last_lock_event(scope=scope, value=value)
            if last is not None:
                failures = failures.filter(seq__gt=last.seq)
            count = failures.count()
            if count >= limit:
                audit_record(
                    action=AuditEntry.Action.LOCKOUT,
                    request=request,
                    actor_label=username,
                    outcome=AuditEntry.Outcome.DENIED,
                    detail={
                        "scope": scope,
                        "target": value,
                        "failures": count,
                        "minutes": settings.MPOX_LOCKOUT_MINUTES,
                    },
                )
                lock = LoginLock(scope=scope, until=now + _window())
    return lock


def login_unlock(
    *, username: str | None = None, ip: str | None = None, unlocked_by: Any = None, request: HttpRequest | None = None
) -> bool:
    """End the lock of a username or an IP now; returns whether it was locked (an unlock is recorded either way)."""
    if (username is None) == (ip is None):
        raise ValueError("unlock either a username or an IP")
    scope, value = (USERNAME, username[:150]) if username is not None else (IP, ip or "")
    with transaction.atomic():
        last = _last_lock_event(scope=scope, value=value)
        was_locked = (
            last is not None and last.action == AuditEntry.Action.LOCKOUT and last.at + _window() > timezone.now()
        )
        audit_record(
            action=AuditEntry.Action.UNLOCK,
            user=unlocked_by,
            request=request,
            actor_label="" if unlocked_by is not None else "manage.py",
            detail={"scope": scope, "target": value, "was_locked": was_locked},
        )
    return was_locked


class LockoutModelBackend(ModelBackend):
    """Django's username/password backend, refusing a locked username or IP before the password is checked."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> User | None:
        if username is not None and login_lock_find(username=username, ip=request_ip(request)) is not None:
            # PermissionDenied stops authenticate() at once and sends user_login_failed, which records the attempt.
            raise PermissionDenied
        return super().authenticate(request, username=username, password=password, **kwargs)

    async def aauthenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> User | None:
        # ModelBackend's own async version would skip the lock check.
        return await sync_to_async(self.authenticate)(request, username=username, password=password, **kwargs)


class LoginView(auth_views.LoginView):
    """Django's log-in page; a locked-out user is told so (403) instead of "did not match"."""

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        username = str(form.data.get("username", ""))
        lock = login_lock_find(username=username, ip=request_ip(self.request)) if username else None
        if lock is None:
            return super().form_invalid(form)
        context = self.get_context_data(
            form=form, lockout_minutes=lock.minutes_left(now=timezone.now()), lockout_scope=lock.scope
        )
        return self.render_to_response(context, status=403)


@receiver(signals.user_logged_in)
def _on_logged_in(sender: Any, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: Any) -> None:
    audit_record(action=AuditEntry.Action.LOGIN, user=user, request=request)


@receiver(signals.user_logged_out)
def _on_logged_out(sender: Any, request: HttpRequest | None, user: AbstractBaseUser | None, **kwargs: Any) -> None:
    if user is not None:
        audit_record(action=AuditEntry.Action.LOGOUT, user=user, request=request)


@receiver(signals.user_login_failed)
def _on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django has already replaced the password in ``credentials``; only the username is kept.
    login_failure_record(username=str(credentials.get("username", "")), request=request)


LAST_ACTIVITY_KEY = "mpox_last_activity"
# The last-activity time is rewritten at most this often, so that not every request writes its session.
_ACTIVITY_RESOLUTION_SECONDS = 60


class SessionIdleTimeoutMiddleware:
    """Logs a user out after ``MPOX_SESSION_IDLE_MINUTES`` without activity.

    htmx GETs are the pages' own polling (the review queue, a pending photo's card), not a person at the screen, so
    they do not count as activity: a tablet left on the review queue still logs out. An expired session is ended on
    its next request (recorded as a logout with reason "idle"); ``SESSION_COOKIE_AGE`` bounds sessions never used
    again.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = int(timezone.now().timestamp())
            last = request.session.get(LAST_ACTIVITY_KEY)
            if isinstance(last, int) and now - last > settings.MPOX_SESSION_IDLE_MINUTES * 60:
                return self._expire(request)
            polling = request.method == "GET" and request.headers.get("HX-Request") == "true"
            if not isinstance(last, int) or (not polling and now - last >= _ACTIVITY_RESOLUTION_SECONDS):
                request.session[LAST_ACTIVITY_KEY] = now
        return self.get_response(request)

    def _expire(self, request: HttpRequest) -> HttpResponse:
        # Django's logout() would record a plain logout through the signal; this one says why, then does the same.
        audit_record(action=AuditEntry.Action.LOGOUT, user=request.user, request=request, detail={"reason": "idle"})
        request.session.flush()
        request.user = AnonymousUser()
        minutes = settings.MPOX_SESSION_IDLE_MINUTES
        messages.info(request, f"You were logged out after {minutes} minutes without activity. Please log in again.")
        if request.headers.get("HX-Request") == "true":
            # A polled fragment must not turn into a log-in form inside the page: send the whole page there.
            return HttpResponseClientRedirect(reverse("login"))
        return self.get_response(request)
