from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from diagnosis import access
from diagnosis.models import Case


def review_queue(request: HttpRequest) -> dict[str, Any]:
    """The count badge on the review queue link, for clinicians: one COUNT on an indexed column, only if shown."""
    if not access.user_can_review(user=request.user):
        return {}
    return {
        "show_review_queue": True,
        # Called by the template (once), so pages that do not render the navigation cost nothing.
        "review_queue_count": lambda: Case.objects.filter(status=Case.Status.AWAITING_REVIEW).count(),
    }


def audit_link(request: HttpRequest) -> dict[str, Any]:
    """The Audit link in the top bar, for auditors and admins."""
    return {"show_audit_link": access.user_can_audit(user=request.user)}
