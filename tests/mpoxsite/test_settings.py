"""settings.py read in a fresh interpreter under different environments: bad values fail loudly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


OUTER = ("DEBUG", "SECRET_KEY", "SECRET_KEY_FALLBACKS", "DATABASE_URL", "DB_CONN_MAX_AGE", "CELERY_BROKER_URL")


def load(
    tmp_path: Path,
    printed: str = "s.DEBUG, s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.MEDIA_ROOT",
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Import the settings under ``env`` (and none of the outer environment's) and print ``printed`` of them."""
    clean = {k: v for k, v in os.environ.items() if k not in OUTER}
    code = f"from mpoxsite import settings as s; print({printed})"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "VAR_DIR": str(tmp_path / "var"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_defaults_run_on_sqlite_and_the_filesystem_broker(tmp_path: Path) -> None:
    result = load(tmp_path)
    assert result.returncode == 0, result.stderr
    debug, engine, broker, media = result.stdout.split()
    assert (debug, engine, broker) == ("True", "django.db.backends.sqlite3", "filesystem://")
    assert media == str(tmp_path / "var" / "private")
    assert (tmp_path / "var" / "broker" / "queue").is_dir()


def test_production_without_a_secret_key_fails_loudly(tmp_path: Path) -> None:
    result = load(tmp_path, DEBUG="false")
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set" in result.stderr


def test_production_with_a_secret_key_and_services(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        DEBUG="false",
        SECRET_KEY="x" * 50,
        DATABASE_URL="postgres://u:p@db:5432/mpox",
        CELERY_BROKER_URL="redis://redis:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == ["False", "django.db.backends.postgresql", "redis://redis:6379/0"]


def test_former_secret_keys_are_read_for_rotation(tmp_path: Path) -> None:
    result = load(tmp_path, "s.SECRET_KEY_FALLBACKS", SECRET_KEY_FALLBACKS="old-key-one,old-key-two")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['old-key-one', 'old-key-two']"
    assert load(tmp_path, "s.SECRET_KEY_FALLBACKS").stdout.strip() == "[]"


@pytest.mark.parametrize("database_url", ["", "postgres://u:p@db:5432/mpox"])
def test_database_connections_are_kept_on_sqlite_and_postgresql(tmp_path: Path, database_url: str) -> None:
    printed = "s.DATABASES['default']['CONN_MAX_AGE'], s.DATABASES['default']['CONN_HEALTH_CHECKS']"
    result = load(tmp_path, printed, DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["60", "True"]
    assert load(tmp_path, printed, DATABASE_URL=database_url, DB_CONN_MAX_AGE="0").stdout.split() == ["0", "True"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("CELERY_TASK_TIME_LIMIT", "soon", "CELERY_TASK_TIME_LIMIT must be an integer"),
        ("MPOX_ADVISORY_THRESHOLD", "high", "MPOX_ADVISORY_THRESHOLD must be a number"),
        ("MPOX_ADVISORY_THRESHOLD", "1.5", "MPOX_ADVISORY_THRESHOLD must be in (0, 1]"),
        ("MPOX_INFERENCE_BACKEND", "gpu", "MPOX_INFERENCE_BACKEND must be auto, openvino, onnx or torch"),
        ("CELERY_TASK_SOFT_TIME_LIMIT", "500", "must be larger than CELERY_TASK_SOFT_TIME_LIMIT"),
        ("MPOX_PUBLIC_URL", "triage.example.org", "MPOX_PUBLIC_URL must start with http:// or https://"),
        ("MPOX_WEBHOOK_TIMEOUT_SECONDS", "60", "MPOX_WEBHOOK_TIMEOUT_SECONDS must be above 0 and below"),
        ("MPOX_WEBHOOK_MAX_ATTEMPTS", "0", "MPOX_WEBHOOK_MAX_ATTEMPTS and MPOX_WEBHOOK_BACKOFF_SECONDS must be"),
        ("MPOX_FHIR_PATIENT_SYSTEM", "MRN", "MPOX_FHIR_PATIENT_SYSTEM must be a URI"),
        ("MPOX_TRUSTED_PROXIES", "-1", "MPOX_TRUSTED_PROXIES must be 0 or more"),
    ],
)
def test_a_malformed_value_fails_loudly(tmp_path: Path, name: str, value: str, message: str) -> None:
    result = load(tmp_path, **{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr
