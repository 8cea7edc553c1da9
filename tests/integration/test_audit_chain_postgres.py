"""The audit trail on a real PostgreSQL database: the trigger refuses UPDATE and DELETE, and with the trigger disabled
(as the table's owner or a superuser could) every kind of raw-SQL tampering is still caught by ``audit_verify``,
run as a real ``manage.py`` process. The same tampering on SQLite: tests/diagnosis/test_command_audit_verify.py."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg.types.json import Jsonb

from diagnosis.audit import entry_hash
from tests.integration.conftest import throwaway_postgres
from tests.livestack import ISOLATED, ROOT, manage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRIGGER = "diagnosis_auditentry_append_only"
# Entries written by the site's own code: the services' (users, a case) and audit_record's, with details, a failed
# login without a user, and text that JSON escapes.
WRITE_ENTRIES = """
from diagnosis import services
from diagnosis.audit import audit_record
nurse, _ = services.user_create_with_role(username="nurse", role="nurse", password="not-a-real-password")
clinician, _ = services.user_create_with_role(username="clinician", role="clinician", password="not-a-real-password")
case = services.case_create(hospital_identifier="MRN-004821", created_by=nurse)
for action in ("case_view", "case_claim", "review", "lab_result", "stats_view", "export"):
    audit_record(action=action, user=clinician, obj=case, detail={"note": "Ärztin \\"quoted\\"", "n": 1.5})
audit_record(action="login_failed", actor_label="mallory", outcome="failed")
"""


@pytest.fixture(scope="module")
def chain_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A migrated database with a chain written by the site, and a pristine copy of the chain to restore from."""
    with throwaway_postgres() as url:
        env = {key: value for key, value in os.environ.items() if key not in ISOLATED}
        env.update(DATABASE_URL=url, VAR_DIR=str(tmp_path_factory.mktemp("audit-pg") / "var"))
        manage("migrate", "--noinput", env=env)
        manage("shell", "-c", WRITE_ENTRIES, env=env)
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE pristine AS SELECT * FROM diagnosis_auditentry")
        yield env


@pytest.fixture
def db(chain_db: dict[str, str]) -> Iterator[psycopg.Connection]:
    """A superuser connection to the database, its chain as the site wrote it and the trigger on."""
    with psycopg.connect(chain_db["DATABASE_URL"], autocommit=True) as connection:
        connection.execute(f"ALTER TABLE diagnosis_auditentry DISABLE TRIGGER {TRIGGER}")
        connection.execute("DELETE FROM diagnosis_auditentry")
        connection.execute("INSERT INTO diagnosis_auditentry SELECT * FROM pristine")
        connection.execute(f"ALTER TABLE diagnosis_auditentry ENABLE TRIGGER {TRIGGER}")
        yield connection


def audit_verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "audit_verify"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def entries(db: psycopg.Connection) -> int:
    row = db.execute("SELECT count(*) FROM diagnosis_auditentry").fetchone()
    assert row is not None
    return int(row[0])


def test_the_chain_the_site_wrote_is_intact(chain_db: dict[str, str], db: psycopg.Connection) -> None:
    done = audit_verify(chain_db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Audit chain intact: {entries(db)} entries checked.")
    assert entries(db) >= 9


@pytest.mark.parametrize(
    ("statement", "refused"),
    [
        ("UPDATE diagnosis_auditentry SET actor_label = 'someone-else' WHERE seq = 4", "UPDATE"),
        ("DELETE FROM diagnosis_auditentry WHERE seq = 4", "DELETE"),
        ("DELETE FROM diagnosis_auditentry", "DELETE"),
        ("TRUNCATE diagnosis_auditentry", "TRUNCATE"),
    ],
)
def test_the_triggers_refuse_updates_deletes_and_truncation_even_to_a_superuser(
    chain_db: dict[str, str], db: psycopg.Connection, statement: str, refused: str
) -> None:
    before = entries(db)
    with pytest.raises(psycopg.errors.RaiseException, match=f"audit entries are append-only: {refused} refused"):
        db.execute(statement)
    assert entries(db) == before
    assert audit_verify(chain_db).returncode == 0


def _insert(db: psycopg.Connection, values: dict[str, object], digest: str) -> None:
    columns = [*values, "entry_hash"]
    db.execute(
        f"INSERT INTO diagnosis_auditentry ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
        [*(Jsonb(v) if name == "detail" else v for name, v in values.items()), digest],
    )


def _forged_after(db: psycopg.Connection, seq: int) -> dict[str, object]:
    """A plausible entry to follow entry ``seq``, linked to its hash."""
    row = db.execute("SELECT at, entry_hash FROM diagnosis_auditentry WHERE seq = %s", [seq]).fetchone()
    assert row is not None
    return {
        "seq": seq + 1,
        "at": row[0],
        "actor_user_id": None,
        "api_client_id": None,
        "actor_label": "nobody",
        "action": "logout",
        "object_type": "",
        "object_id": "",
        "patient_id": None,
        "case_id": None,
        "source_ip": None,
        "outcome": "success",
        "detail": {},
        "prev_hash": row[1],
    }


def edit(db: psycopg.Connection) -> str:
    db.execute("UPDATE diagnosis_auditentry SET source_ip = '10.6.6.6' WHERE seq = 4")
    return "broken at entry 4: its content does not match its hash"


def delete(db: psycopg.Connection) -> str:
    db.execute("DELETE FROM diagnosis_auditentry WHERE seq = 3")
    return "broken at entry 4: expected entry 3 next, found 4"


def insert_in_the_middle(db: psycopg.Connection) -> str:
    # Room after entry 3 (two steps: the unique seq is checked row by row), then a self-consistent entry 4.
    db.execute("UPDATE diagnosis_auditentry SET seq = seq + 1000000 WHERE seq >= 4")
    db.execute("UPDATE diagnosis_auditentry SET seq = seq - 999999 WHERE seq >= 1000000")
    forged = _forged_after(db, 3)
    _insert(db, forged, entry_hash(forged))
    return "broken at entry 5: its link to the previous entry does not match"


def append_at_the_end(db: psycopg.Connection) -> str:
    last = entries(db)
    _insert(db, _forged_after(db, last), hashlib.sha256(b"made up").hexdigest())
    return f"broken at entry {last + 1}: its content does not match its hash"


def reorder(db: psycopg.Connection) -> str:
    db.execute("UPDATE diagnosis_auditentry SET seq = 1000000 WHERE seq = 3")
    db.execute("UPDATE diagnosis_auditentry SET seq = 3 WHERE seq = 6")
    db.execute("UPDATE diagnosis_auditentry SET seq = 6 WHERE seq = 1000000")
    return "broken at entry 3: its link to the previous entry does not match"


@pytest.mark.parametrize("tamper", [edit, delete, insert_in_the_middle, append_at_the_end, reorder])
def test_tampering_with_the_trigger_disabled_is_caught_and_the_first_broken_entry_named(
    chain_db: dict[str, str], db: psycopg.Connection, tamper: Callable[[psycopg.Connection], str]
) -> None:
    db.execute(f"ALTER TABLE diagnosis_auditentry DISABLE TRIGGER {TRIGGER}")
    expected = tamper(db)
    done = audit_verify(chain_db)
    assert done.returncode == 1
    assert f"CommandError: audit chain {expected}" in done.stderr
    assert "Audit chain intact" not in done.stdout
