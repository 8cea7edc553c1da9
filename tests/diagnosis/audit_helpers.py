"""Audit entries for the auditor-page tests, written by the real writer (``audit_record``)."""

from __future__ import annotations

import re
from typing import Any

from django.test import RequestFactory

from diagnosis.audit import audit_record
from diagnosis.models import AuditEntry


def record(action: str, *, ip: str | None = None, **fields: Any) -> AuditEntry:
    """One entry; ``ip`` becomes its source address through a real request object."""
    request = RequestFactory().get("/", REMOTE_ADDR=ip) if ip else None
    return audit_record(action=action, request=request, **fields)


def listed_seqs(body: str) -> list[int]:
    """The entry numbers of the entries table, in the order shown."""
    table = body.split('id="audit-entries"', 1)[1].split("</table>", 1)[0]
    return [int(seq) for seq in re.findall(r"<tr class=\"outcome-\w+\">\s*<td>(\d+)</td>", table)]


def last_entry(action: str) -> AuditEntry:
    entry = AuditEntry.objects.filter(action=action).order_by("-seq").first()
    assert entry is not None, f"no {action} entry"
    return entry
