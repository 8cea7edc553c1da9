"""The `make run` defaults: SQLite and the filesystem broker, with the real worker process."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.livestack import start_stack
from tests.photos import png_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_nurse_uploads_a_photo_and_the_worker_stores_result_and_heatmaps(tmp_path: Path, stack_weights: Path):
    var = tmp_path / "var"
    stack = start_stack(var_dir=var, weights=stack_weights)
    try:
        nurse = stack.session("nurse")
        case_id = nurse.start_case("MRN-004821")
        image_id = nurse.upload(case_id, png_bytes(800, 600), filename="lesion.png", body_part="hand")
        card = nurse.wait_for_result(image_id)
        assert "Most likely:" in card.body

        with sqlite3.connect(var / "db.sqlite3") as db:
            status, overlay, heatmap = db.execute(
                "SELECT status, heatmap_overlay, heatmap FROM diagnosis_analysis WHERE image_id = ?", [image_id]
            ).fetchone()
        assert status == "done"
        for name in (overlay, heatmap):
            assert (var / "private" / name).read_bytes().startswith(b"\x89PNG")
        assert list((var / "broker" / "queue").iterdir()) == []  # the message was consumed

        status_code, content, headers = nurse.get_bytes(f"/images/{image_id}/photo")
        assert status_code == 200
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert content.startswith(b"\x89PNG")
    except BaseException:
        print(stack.log())
        raise
    finally:
        stack.stop()
