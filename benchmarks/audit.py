"""Audit-trail benchmark (issue targets: an audit entry adds < 5 ms to a request; audit_verify checks 1,000,000
entries in < 60 s).

    .venv/bin/python benchmarks/audit.py [--entries 1000000] [--requests 300] [--postgres auto|off]   # prints JSON

Two measurements, each in a fresh process on a throw-away database: a temporary SQLite file, and PostgreSQL when
DATABASE_URL names one (it must be disposable) or a server answers at 127.0.0.1 (a database is created and dropped):

- overhead: the nurse's case page through Django's test client, the same request timed with the audit write and
  with ``audit_record`` replaced by a no-op, in alternating blocks so that load on the machine hits both alike; the
  added milliseconds are the difference of the medians. Next to it, one ``audit_record`` call timed on its own.
- verify: a valid chain of N entries bulk-inserted (hashes computed here, exactly as ``audit_record`` computes them),
  then ``manage.py audit_verify`` timed over it; the baseline is the same walk over a tenth of the entries, so the
  ratio shows it scales linearly.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OVERHEAD_TARGET_MS = 5.0
VERIFY_TARGET_S = 60.0


def setup_django(var_dir: Path, database_url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "mpoxsite.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ["VAR_DIR"] = str(var_dir)
    os.environ["PRIVATE_STORAGE_ROOT"] = str(var_dir / "private")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# --- overhead of one audit write per request ---


def _audit_disabled() -> Iterator[None]:
    """``audit_record`` replaced by a no-op wherever it was imported, however the callers imported it."""
    from diagnosis import audit

    # The public writer and, where it exists, the private one every writer ends in.
    originals = [getattr(audit, name) for name in ("audit_record", "_append") if hasattr(audit, name)]
    patched = [
        (module, name, value)
        for module in list(sys.modules.values())
        if module is not None
        for name, value in list(vars(module).items())
        if any(value is original for original in originals)
    ]
    for module, name, _ in patched:
        setattr(module, name, lambda **kwargs: None)
    try:
        yield
    finally:
        for module, name, value in patched:
            setattr(module, name, value)


def measure_overhead(requests: int, block: int = 25) -> dict[str, Any]:
    from contextlib import contextmanager

    from django.db import connection, transaction
    from django.db.backends.signals import connection_created
    from django.test import Client

    from diagnosis import services
    from diagnosis.audit import audit_record
    from diagnosis.models import AuditEntry
    from tests.photos import jpeg_bytes

    nurse, _ = services.user_create_with_role(username="bench-nurse", role="nurse", password="x" * 20)
    case = services.case_create(hospital_identifier="MRN-BENCH-1", created_by=nurse)
    services.lesion_image_create(case=case, data=jpeg_bytes(), body_part="arm", stage="early", uploaded_by=nurse)
    client = Client()
    client.force_login(nurse)
    path = f"/cases/{case.pk}/"
    disabled = contextmanager(_audit_disabled)

    def timed(n: int) -> list[float]:
        timings = []
        for _ in range(n):
            start = time.perf_counter()
            response = client.get(path)
            timings.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{path} answered {response.status_code}")
        return timings

    def compare() -> dict[str, Any]:
        timed(block)  # warm-up: session, templates, query plans
        with disabled():
            timed(block)
        with_audit: list[float] = []
        without_audit: list[float] = []
        entries_before = AuditEntry.objects.count()
        for _ in range(max(1, requests // block)):
            with_audit += timed(block)
            with disabled():
                without_audit += timed(block)
        entries_written = AuditEntry.objects.count() - entries_before
        calls = []
        for _ in range(requests):
            start = time.perf_counter()
            with transaction.atomic():
                audit_record(action=AuditEntry.Action.CASE_VIEW, user=nurse, obj=case)
            calls.append((time.perf_counter() - start) * 1000)
        added = statistics.median(with_audit) - statistics.median(without_audit)
        return {
            "request": f"GET /cases/<id>/ as a nurse, {len(with_audit)} times each way",
            "entries_per_request": round(entries_written / len(with_audit), 2),
            "with_audit_ms": round(statistics.median(with_audit), 2),
            "without_audit_ms": round(statistics.median(without_audit), 2),
            "added_ms": round(added, 2),
            "ratio_to_baseline": round(statistics.median(with_audit) / statistics.median(without_audit), 3),
            "audit_record_call_ms": round(statistics.median(calls), 2),
            "target_ms": OVERHEAD_TARGET_MS,
            "target_met": added < OVERHEAD_TARGET_MS and entries_written > 0,
        }

    result = compare()
    if connection.vendor == "postgresql":
        # A read-only page becomes a write transaction: on PostgreSQL most of the added time is the commit waiting
        # for the WAL to reach the disk. The same comparison without that wait shows the audit code's own cost.
        connection_created.connect(_no_commit_wait)
        _no_commit_wait(connection=connection)
        result["without_commit_wait"] = {
            key: value for key, value in compare().items() if key.endswith("_ms") and key != "target_ms"
        }
    return result


def _no_commit_wait(connection: Any, **kwargs: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")


# --- audit_verify over a long chain ---


def insert_chain(n: int, batch: int = 10_000) -> float:
    """Append n valid entries after the existing ones; returns the seconds it took."""
    from diagnosis.audit import GENESIS_HASH, entry_hash
    from diagnosis.models import AuditEntry

    start = time.perf_counter()
    last = AuditEntry.objects.order_by("-seq").values_list("seq", "entry_hash").first()
    seq, prev = last if last else (0, GENESIS_HASH)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    actions = [AuditEntry.Action.CASE_VIEW, AuditEntry.Action.PHOTO_VIEW, AuditEntry.Action.API_CALL]
    rows = []
    for i in range(n):
        seq += 1
        values: dict[str, Any] = {
            "seq": seq,
            "at": at + timedelta(milliseconds=seq),
            "actor_user_id": 1 + i % 40,
            "api_client_id": None,
            "actor_label": f"user{i % 40}",
            "action": actions[i % 3],
            "object_type": "case",
            "object_id": str(1 + i % 5000),
            "patient_id": 1 + i % 3000,
            "case_id": 1 + i % 5000,
            "source_ip": "10.0.0.7",
            "outcome": AuditEntry.Outcome.SUCCESS,
            "detail": {"endpoint": "/api/v1/analyses", "status": 200} if i % 3 == 2 else {},
            "prev_hash": prev,
        }
        prev = entry_hash(values)
        rows.append(AuditEntry(**values, entry_hash=prev))
        if len(rows) == batch:
            AuditEntry.objects.bulk_create(rows)
            rows = []
    AuditEntry.objects.bulk_create(rows)
    return time.perf_counter() - start


def verify_seconds() -> tuple[float, str]:
    import io

    from django.core.management import call_command

    out = io.StringIO()
    start = time.perf_counter()
    call_command("audit_verify", stdout=out)
    return time.perf_counter() - start, out.getvalue().strip()


def measure_verify(entries: int) -> dict[str, Any]:
    baseline_entries = max(1, entries // 10)
    insert_s = insert_chain(baseline_entries)
    baseline_s, _ = verify_seconds()
    insert_s += insert_chain(entries - baseline_entries)
    full_s, message = verify_seconds()
    return {
        "entries": entries,
        "verify_s": round(full_s, 2),
        "entries_per_s": round(entries / full_s),
        "command_said": message,
        "baseline": {"entries": baseline_entries, "verify_s": round(baseline_s, 2)},
        "ratio_to_baseline": round(full_s / baseline_s, 2),
        "insert_s": round(insert_s, 1),
        "target_s": VERIFY_TARGET_S,
        "target_met": full_s < VERIFY_TARGET_S,
    }


# --- orchestration: one child process per database and part ---


def run_part(part: str, database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--part", part, "--database-url", database_url]
    command += ["--entries", str(args.entries), "--requests", str(args.requests)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{part} on {database_url.split(':')[0]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def postgres_databases(args: argparse.Namespace) -> Iterator[str | None]:
    """The PostgreSQL URL to measure on (a throw-away database unless DATABASE_URL names one), or None."""
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        yield os.environ["DATABASE_URL"]
        return
    if args.postgres == "off":
        yield None
        return
    sys.path.insert(0, str(ROOT))
    import psycopg

    from tests.integration.conftest import POSTGRES_HOST, POSTGRES_PORT, _postgres_admin_connection

    try:
        admin = _postgres_admin_connection()
    except psycopg.OperationalError:
        yield None
        return
    assert isinstance(admin, psycopg.Connection)
    name = f"mpox_bench_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgres://{admin.info.user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--postgres", choices=["auto", "off"], default="auto")
    parser.add_argument("--part", choices=["overhead", "verify"], help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        with tempfile.TemporaryDirectory(prefix="mpox-audit-bench-") as tmp:
            url = args.database_url.replace("{tmp}", tmp)
            setup_django(Path(tmp), url)
            result = measure_overhead(args.requests) if args.part == "overhead" else measure_verify(args.entries)
        print(json.dumps(result))
        return 0

    sqlite = "sqlite:///{tmp}/bench.sqlite3"
    results: dict[str, Any] = {"sqlite": {}, "postgresql": None}
    for part in ("overhead", "verify"):
        results["sqlite"][part] = run_part(part, sqlite, args)
    for part in ("overhead", "verify"):
        for url in postgres_databases(args):
            if url is None:
                break
            results["postgresql"] = results["postgresql"] or {}
            results["postgresql"][part] = run_part(part, url, args)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
