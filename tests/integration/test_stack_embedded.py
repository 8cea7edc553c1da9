"""The `make run` defaults: SQLite and the filesystem broker, with the real worker process and beat."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.livestack import Stack, running_stack
from tests.photos import png_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_weights: Path) -> Iterator[Stack]:
    # Short limits, so that the stale sweep (every second) can be seen at work within the test.
    with running_stack(
        var_dir=tmp_path_factory.mktemp("embedded") / "var",
        weights=stack_weights,
        env={
            "CELERY_TASK_SOFT_TIME_LIMIT": "5",
            "CELERY_TASK_TIME_LIMIT": "7",
            "MPOX_ANALYSIS_STALE_SECONDS": "8",
            "MPOX_REQUEUE_INTERVAL_SECONDS": "1",
            # A webhook's request must give up within the task's soft limit (settings refuse otherwise).
            "MPOX_WEBHOOK_TIMEOUT_SECONDS": "2",
        },
    ) as stack:
        yield stack


def query(stack: Stack, sql: str, *params: object) -> tuple:
    with sqlite3.connect(stack.var_dir / "db.sqlite3") as db:
        row = db.execute(sql, params).fetchone()
    assert row is not None
    return tuple(row)


def test_a_nurse_uploads_a_photo_and_the_worker_stores_result_and_heatmaps(stack: Stack) -> None:
    nurse = stack.session("nurse")
    case_id = nurse.start_case("MRN-004821")
    image_id = nurse.upload(case_id, png_bytes(800, 600), filename="lesion.png", body_part="hand")
    card = nurse.wait_for_result(image_id)
    assert "Most likely:" in card.body

    status, overlay, heatmap = query(
        stack, "SELECT status, heatmap_overlay, heatmap FROM diagnosis_analysis WHERE image_id = ?", image_id
    )
    assert status == "done"
    for name in (overlay, heatmap):
        assert (stack.var_dir / "private" / name).read_bytes().startswith(b"\x89PNG")

    status_code, content, headers = nurse.get_bytes(f"/images/{image_id}/photo")
    assert status_code == 200
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert content.startswith(b"\x89PNG")


def test_an_analysis_whose_worker_died_is_sent_again_by_the_sweep(stack: Stack) -> None:
    nurse = stack.session("nurse")
    # Posted as the form does without JavaScript (redirected to the case page), so that path runs on the real stack.
    image_id = nurse.upload(nurse.start_case("MRN-1"), png_bytes(320, 240), filename="lesion.png", script=False)
    nurse.wait_for_result(image_id)
    # What a SIGKILLed worker leaves behind: the row still running, its message gone for good.
    with sqlite3.connect(stack.var_dir / "db.sqlite3") as db:
        db.execute(
            "UPDATE diagnosis_analysis SET status = 'running', started_at = '2020-01-01 00:00:00', label = '' "
            "WHERE image_id = ?",
            [image_id],
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, attempts, label = query(
            stack, "SELECT status, attempts, label FROM diagnosis_analysis WHERE image_id = ?", image_id
        )
        if status == "done":
            break
        time.sleep(0.2)
    assert (status, attempts) == ("done", 2)
    assert label
