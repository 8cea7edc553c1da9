"""audit_verify on SQLite: an intact chain passes; raw-SQL tampering of every kind names the first broken entry.

The same tampering on PostgreSQL, trigger included, is in tests/integration/test_audit_chain_postgres.py.
"""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from diagnosis.audit import audit_record, entry_hash
from diagnosis.models import AuditEntry
from tests.diagnosis.helpers import case_for, image_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(nurse, clinician) -> list[AuditEntry]:
    """Entries written by the real writer (those the services write, then eight more): people, objects, details and
    an outcome other than success."""
    case = case_for(nurse)
    image = image_for(case)
    audit_record(action=AuditEntry.Action.LOGIN, user=nurse, detail={"via": "form"})
    audit_record(action=AuditEntry.Action.CASE_CREATE, user=nurse, obj=case)
    audit_record(action=AuditEntry.Action.UPLOAD, user=nurse, obj=image)
    audit_record(action=AuditEntry.Action.CASE_VIEW, user=clinician, obj=case)
    audit_record(action=AuditEntry.Action.PHOTO_VIEW, user=clinician, obj=image, detail={"size": "full"})
    audit_record(action=AuditEntry.Action.LOGIN_FAILED, actor_label="mallory", outcome=AuditEntry.Outcome.FAILED)
    audit_record(action=AuditEntry.Action.PHOTO_REVEAL, user=clinician, obj=image)
    audit_record(action=AuditEntry.Action.LOGOUT, user=clinician)
    return list(AuditEntry.objects.order_by("seq"))


def verify() -> str:
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


def sql(statement: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def test_an_intact_chain_passes_and_says_how_many_entries_it_checked(chain) -> None:
    out = verify()
    assert out.startswith(f"Audit chain intact: {len(chain)} entries checked.")
    assert chain[-1].entry_hash in out  # the newest hash, to keep somewhere else


def test_a_chain_written_with_the_hash_format_of_the_first_release_still_verifies() -> None:
    # Hashes computed once, by the first release's entry_hash: a change of format would break every stored chain.
    first = {
        "seq": 1,
        "at": datetime(2026, 3, 2, 13, 4, 5, tzinfo=timezone(timedelta(hours=1))),
        "actor_user_id": 7,
        "api_client_id": None,
        "actor_label": "clinician",
        "action": "photo_view",
        "object_type": "lesionimage",
        "object_id": "12",
        "patient_id": 3,
        "case_id": 5,
        "source_ip": "10.1.2.3",
        "outcome": "success",
        "detail": {"size": "full", "note": "Ärztin"},
        "prev_hash": "0" * 64,
    }
    first_hash = "731f922ca5f8f513b4599a3d154238e6face6e96fb698fe11c7aa5413d8bb624"
    second = {
        **first,
        "seq": 2,
        "at": datetime(2026, 3, 2, 12, 4, 6, 500, tzinfo=UTC),
        "actor_user_id": None,
        "actor_label": "mallory",
        "action": "login_failed",
        "object_type": "",
        "object_id": "",
        "patient_id": None,
        "case_id": None,
        "outcome": "failed",
        "detail": {},
        "prev_hash": first_hash,
    }
    second_hash = "508b56f586d14b42ddbc1238e9015f40faf265abe215d8be0424147cc80ece61"
    assert (entry_hash(first), entry_hash(second)) == (first_hash, second_hash)
    AuditEntry.objects.bulk_create(
        [AuditEntry(**first, entry_hash=first_hash), AuditEntry(**second, entry_hash=second_hash)]
    )
    assert verify().startswith("Audit chain intact: 2 entries checked.")


def test_an_empty_trail_is_intact() -> None:
    assert verify().startswith("Audit chain intact: 0 entries checked.")


def test_a_row_edited_with_raw_sql_is_named(chain) -> None:
    sql("UPDATE diagnosis_auditentry SET actor_label = 'someone-else' WHERE seq = 4")
    with pytest.raises(CommandError, match=r"broken at entry 4: its content does not match its hash \(3 entries"):
        verify()


def test_an_edited_detail_is_named_too(chain) -> None:
    sql("""UPDATE diagnosis_auditentry SET detail = '{"size": "thumbnail"}' WHERE seq = 5""")
    with pytest.raises(CommandError, match="broken at entry 5: its content does not match its hash"):
        verify()


def test_a_deleted_row_is_named_by_the_gap_it_leaves(chain) -> None:
    sql("DELETE FROM diagnosis_auditentry WHERE seq = 3")
    with pytest.raises(CommandError, match="broken at entry 4: expected entry 3 next, found 4"):
        verify()


def test_a_row_inserted_in_the_middle_with_a_correct_hash_of_its_own_breaks_the_next_link(chain) -> None:
    # The forger makes room after entry 3 and writes a self-consistent entry 4 linked to entry 3.
    for entry in reversed(chain[3:]):
        sql("UPDATE diagnosis_auditentry SET seq = seq + 1 WHERE seq = %s", [entry.seq])
    forged = {
        "seq": 4,
        "at": chain[2].at,
        "actor_user_id": None,
        "api_client_id": None,
        "actor_label": "nobody",
        "action": AuditEntry.Action.LOGOUT,
        "object_type": "",
        "object_id": "",
        "patient_id": None,
        "case_id": None,
        "source_ip": None,
        "outcome": AuditEntry.Outcome.SUCCESS,
        "detail": {},
        "prev_hash": chain[2].entry_hash,
    }
    AuditEntry.objects.bulk_create([AuditEntry(**forged, entry_hash=entry_hash(forged))])
    with pytest.raises(CommandError, match="broken at entry 5: its link to the previous entry does not match"):
        verify()


def test_a_forged_row_appended_at_the_end_is_named(chain) -> None:
    last = chain[-1]
    sql(
        "INSERT INTO diagnosis_auditentry (seq, at, actor_label, action, object_type, object_id, outcome, detail, "
        "prev_hash, entry_hash) VALUES (%s, %s, 'admin', 'logout', '', '', 'success', '{}', %s, %s)",
        [last.seq + 1, "2026-01-01 00:00:00", last.entry_hash, hashlib.sha256(b"made up").hexdigest()],
    )
    with pytest.raises(CommandError, match=f"broken at entry {last.seq + 1}: its content does not match its hash"):
        verify()


def test_two_rows_swapped_in_order_are_named_at_the_first_of_them(chain) -> None:
    sql("UPDATE diagnosis_auditentry SET seq = 1000 WHERE seq = 3")
    sql("UPDATE diagnosis_auditentry SET seq = 3 WHERE seq = 6")
    sql("UPDATE diagnosis_auditentry SET seq = 6 WHERE seq = 1000")
    with pytest.raises(CommandError, match="broken at entry 3: its link to the previous entry does not match"):
        verify()


def test_small_chunks_walk_the_same_chain(chain) -> None:
    out = io.StringIO()
    call_command("audit_verify", "--chunk-size", "3", stdout=out)
    assert out.getvalue().startswith(f"Audit chain intact: {len(chain)} entries checked.")
    sql("UPDATE diagnosis_auditentry SET outcome = 'denied' WHERE seq = 7")
    with pytest.raises(CommandError, match="broken at entry 7"):
        call_command("audit_verify", "--chunk-size", "3")


def test_a_chunk_size_below_one_is_refused() -> None:
    with pytest.raises(CommandError, match="--chunk-size must be at least 1"):
        call_command("audit_verify", "--chunk-size", "0")
