"""The production shape on real services: gunicorn + a prefork Celery worker, PostgreSQL, Redis."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from tests.livestack import running_stack
from tests.photos import jpeg_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_nurse_uploads_a_photo_and_the_worker_stores_result_and_heatmaps(
    tmp_path: Path, stack_weights: Path, postgres_url: str, redis_url: str
) -> None:
    with running_stack(
        var_dir=tmp_path / "var",
        weights=stack_weights,
        env={"DATABASE_URL": postgres_url, "CELERY_BROKER_URL": redis_url},
    ) as stack:
        nurse = stack.session("nurse")
        case_id = nurse.start_case("MRN-004821")
        image_id = nurse.upload(case_id, jpeg_bytes(1600, 1200, gps=True))
        card = nurse.wait_for_result(image_id)
        assert "Decision support, not a diagnosis." in card.body
        assert "Most likely:" in card.body

        with psycopg.connect(postgres_url) as db:
            row = db.execute(
                "SELECT a.status, a.label, a.heatmap_overlay, a.heatmap, m.version FROM diagnosis_analysis a "
                "JOIN diagnosis_modelversion m ON m.id = a.model_version_id WHERE a.image_id = %s",
                [image_id],
            ).fetchone()
        assert row is not None
        status, label, overlay, heatmap, version = row
        assert status == "done"
        assert label in ("chickenpox", "measles", "monkeypox", "normal")
        assert version in card.body
        private = tmp_path / "var" / "private"
        for name in (overlay, heatmap):
            assert (private / name).read_bytes().startswith(b"\x89PNG")

        # The worker moves the case into the clinicians' queue just after storing the result.
        deadline = time.monotonic() + 30
        while True:
            with psycopg.connect(postgres_url) as db:
                case_row = db.execute("SELECT status, risk FROM diagnosis_case WHERE id = %s", [case_id]).fetchone()
            if (case_row and case_row[0] == "awaiting_review") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert case_row is not None
        assert case_row[0] == "awaiting_review"
        assert case_row[1] >= 0.15  # the early-stage bonus, plus the mpox probability
        queue = stack.session("clinician").get("/review/")
        assert queue.status == 200
        assert f"/cases/{case_id}/" in queue.body

        health = nurse.get("/healthz")
        assert health.status == 200
        assert '"broker": "ok"' in health.body
