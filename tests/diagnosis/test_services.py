from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from PIL import Image

from diagnosis import services
from diagnosis.models import Analysis, Case, LesionImage, ModelVersion
from ml.imaging import CorruptImageError
from tests.diagnosis.helpers import case_for, image_for
from tests.model_weights import build_random_checkpoint
from tests.photos import jpeg_bytes, png_bytes

pytestmark = pytest.mark.django_db


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def test_case_create_strips_the_identifier_and_attributes_the_case(nurse) -> None:
    case = services.case_create(hospital_identifier="  MRN-1  ", created_by=nurse)
    assert case.patient.hospital_identifier == "MRN-1"
    assert case.created_by == nurse


def test_case_create_refuses_a_blank_identifier(nurse) -> None:
    with pytest.raises(ValidationError):
        services.case_create(hospital_identifier="   ", created_by=nurse)


def test_lesion_image_create_refuses_unknown_tags_before_writing(nurse, private_storage) -> None:
    case = case_for(nurse)
    with pytest.raises(ValidationError):
        services.lesion_image_create(case=case, data=jpeg_bytes(), body_part="elbow", stage="early", uploaded_by=nurse)
    assert files_under(private_storage) == []


def test_lesion_image_create_raises_image_errors_before_writing(nurse, private_storage) -> None:
    with pytest.raises(CorruptImageError):
        services.lesion_image_create(
            case=case_for(nurse), data=jpeg_bytes()[:500], body_part="arm", stage="early", uploaded_by=nurse
        )
    assert files_under(private_storage) == []


def test_lesion_image_create_removes_the_file_when_the_rows_fail(nurse, private_storage) -> None:
    unsaved_case = Case(patient=case_for(nurse).patient, created_by=nurse)  # no primary key: the insert fails
    with pytest.raises((ValueError, IntegrityError)):
        services.lesion_image_create(
            case=unsaved_case, data=jpeg_bytes(), body_part="arm", stage="early", uploaded_by=nurse
        )
    assert not LesionImage.objects.exists()
    assert files_under(private_storage) == []


def test_analysis_run_stores_the_result_and_both_heatmaps(nurse, predictor, private_storage) -> None:
    image = image_for(case_for(nurse))
    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)

    assert analysis is not None
    analysis.refresh_from_db()
    assert analysis.status == Analysis.Status.DONE
    assert set(analysis.probabilities) == {"chickenpox", "measles", "monkeypox", "normal"}
    assert sum(analysis.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert analysis.label == max(analysis.probabilities, key=analysis.probabilities.get)
    assert analysis.model_version is not None
    assert analysis.model_version.weights_sha256 == predictor.weights_sha256
    assert analysis.model_version.version == predictor.version
    assert set(analysis.timings) == {"decode_ms", "model_ms", "heatmap_ms", "total_ms"}
    assert (analysis.attempts, analysis.error_message) == (1, "")
    assert analysis.started_at
    assert analysis.finished_at
    for field in (analysis.heatmap_overlay, analysis.heatmap):
        path = private_storage / field.name
        assert path.is_file()
        assert path.read_bytes().startswith(b"\x89PNG")


def test_analysis_run_gives_the_model_the_same_input_as_the_bare_pipeline(nurse, predictor) -> None:
    image = image_for(case_for(nurse), data=jpeg_bytes(1600, 1200))
    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)
    assert analysis is not None
    with image.file.open("rb") as handle:
        bare = predictor.predict(handle.read())
    assert analysis.probabilities == pytest.approx(dict(bare.probabilities), abs=1e-6)


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("the photo was decoded again")

    monkeypatch.setattr(services, "open_image", no_decode)


def test_the_worker_reuses_the_upload_s_decode_of_a_large_jpeg_and_then_deletes_it(
    nurse, predictor, private_storage, monkeypatch
) -> None:
    image = image_for(case_for(nurse), data=jpeg_bytes(1600, 1200))
    copy = private_storage / f"{image.file.name}.decoded.ppm"
    assert copy.is_file()  # 400 x 300 raw pixels: less to read than the 518 kB JPEG is to decode
    with image.file.open("rb") as handle:
        bare = predictor.predict(handle.read())

    forbid_decoding(monkeypatch)
    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)

    assert analysis is not None
    assert analysis.status == Analysis.Status.DONE
    assert analysis.probabilities == pytest.approx(dict(bare.probabilities), abs=1e-6)
    assert not copy.exists()


def test_the_worker_reuses_the_upload_s_decode_of_a_png(nurse, predictor, private_storage, monkeypatch) -> None:
    image = image_for(case_for(nurse), data=png_bytes(640, 480))
    copy = private_storage / f"{image.file.name}.decoded.ppm"
    assert copy.is_file()
    with image.file.open("rb") as handle:
        bare = predictor.predict(handle.read())

    forbid_decoding(monkeypatch)
    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)

    assert analysis is not None
    assert analysis.probabilities == pytest.approx(dict(bare.probabilities), abs=1e-6)
    assert not copy.exists()


def test_a_photo_too_large_to_keep_decoded_leaves_no_decoded_copy(nurse, private_storage, monkeypatch) -> None:
    monkeypatch.setattr(services, "DECODED_COPY_MAX_BYTES", 200_000)
    case = case_for(nurse)
    image_for(case, data=png_bytes(640, 480))  # 921,600 bytes of raw pixels
    image_for(case, data=jpeg_bytes(2560, 1920))  # 230,400 at the check's scale (1/8: 320 x 240)
    assert not [path for path in files_under(private_storage) if path.name.endswith(".ppm")]


def test_the_worker_decodes_the_photo_when_the_decoded_copy_is_at_another_scale(
    nurse, predictor, private_storage
) -> None:
    image = image_for(case_for(nurse), data=jpeg_bytes(1600, 1200))
    copy = private_storage / f"{image.file.name}.decoded.ppm"
    Image.new("RGB", (800, 600), (255, 0, 0)).save(copy, format="PPM")  # as a model reading 448 px would want
    with image.file.open("rb") as handle:
        bare = predictor.predict(handle.read())

    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)

    assert analysis is not None
    assert analysis.probabilities == pytest.approx(dict(bare.probabilities), abs=1e-6)
    assert not copy.exists()


def test_a_failed_analysis_deletes_the_decoded_copy_too(nurse, predictor, private_storage) -> None:
    image = image_for(case_for(nurse), data=jpeg_bytes(1600, 1200))
    copy = private_storage / f"{image.file.name}.decoded.ppm"
    copy.write_bytes(b"P6 damaged")
    (private_storage / image.file.name).write_bytes(b"\xff\xd8\xff\xe0 garbage")

    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)

    assert analysis is not None
    assert analysis.status == Analysis.Status.FAILED
    assert "damaged or incomplete" in analysis.error_message
    assert not copy.exists()


def test_analysis_run_does_nothing_for_an_analysis_that_is_not_queued(nurse, predictor) -> None:
    image = image_for(case_for(nurse))
    analysis_id = image.analyses.get().pk
    services.analysis_run(analysis_id=analysis_id)
    assert services.analysis_run(analysis_id=analysis_id) is None  # a duplicate message
    assert services.analysis_run(analysis_id=999_999) is None
    assert Analysis.objects.get().attempts == 1


def test_analysis_run_fails_a_damaged_stored_photo_with_a_readable_message(nurse, predictor) -> None:
    image = image_for(case_for(nurse))
    with image.file.open("wb") as handle:  # damaged on disk after upload
        handle.write(b"\xff\xd8\xff\xe0 garbage")
    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)
    assert analysis is not None
    assert analysis.status == Analysis.Status.FAILED
    assert "damaged or incomplete" in analysis.error_message
    assert not analysis.heatmap


def test_analysis_run_fails_when_the_photo_file_is_gone(nurse, predictor) -> None:
    image = image_for(case_for(nurse))
    image.file.delete(save=False)
    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)
    assert analysis is not None
    assert analysis.status == Analysis.Status.FAILED
    assert analysis.error_message == services.MSG_FILE_MISSING


def test_analysis_run_fails_with_a_message_when_the_model_cannot_load(nurse, settings, tmp_path) -> None:
    from diagnosis import inference

    settings.MPOX_MODEL_WEIGHTS = tmp_path / "missing.pt"
    inference.predictor_reset()
    image = image_for(case_for(nurse))
    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)
    assert analysis is not None
    assert analysis.status == Analysis.Status.FAILED
    assert analysis.error_message == services.MSG_MODEL_UNAVAILABLE


def _age(analysis: Analysis, *, status: str, minutes: int, attempts: int = 1) -> None:
    past = analysis.queued_at - timedelta(minutes=minutes)
    Analysis.objects.filter(pk=analysis.pk).update(status=status, queued_at=past, started_at=past, attempts=attempts)


def test_analysis_requeue_stale_sends_stuck_analyses_again(nurse, django_capture_on_commit_callbacks) -> None:
    case = case_for(nurse)
    stuck_running, stuck_queued, fresh = (image_for(case).analyses.get() for _ in range(3))
    _age(stuck_running, status=Analysis.Status.RUNNING, minutes=10)
    _age(stuck_queued, status=Analysis.Status.QUEUED, minutes=10, attempts=0)
    with django_capture_on_commit_callbacks() as callbacks:
        count = services.analysis_requeue_stale(older_than=timedelta(minutes=5))
    assert count == 2
    assert len(callbacks) == 2
    for analysis in (stuck_running, stuck_queued):
        analysis.refresh_from_db()
        assert analysis.status == Analysis.Status.QUEUED
        assert analysis.started_at is None
    fresh.refresh_from_db()
    assert fresh.status == Analysis.Status.QUEUED


def test_analysis_requeue_stale_gives_up_after_the_last_attempt(nurse, django_capture_on_commit_callbacks) -> None:
    analysis = image_for(case_for(nurse)).analyses.get()
    _age(analysis, status=Analysis.Status.RUNNING, minutes=10, attempts=3)
    with django_capture_on_commit_callbacks() as callbacks:
        count = services.analysis_requeue_stale(older_than=timedelta(minutes=5), max_attempts=3)
    assert (count, len(callbacks)) == (0, 0)
    analysis.refresh_from_db()
    assert analysis.status == Analysis.Status.FAILED
    assert analysis.error_message == services.MSG_GAVE_UP


def test_model_version_ensure_active_keeps_one_active_version(predictor, tmp_path) -> None:
    from ml.inference import Predictor

    first = services.model_version_ensure_active(predictor=predictor)
    assert services.model_version_ensure_active(predictor=predictor) == first
    assert first.active
    assert first.metrics == {"note": "random weights for tests"}
    assert first.class_names == ["chickenpox", "measles", "monkeypox", "normal"]

    other = Predictor.load(build_random_checkpoint(tmp_path / "other.pt", seed=1), backend="torch", threads=1)
    second = services.model_version_ensure_active(predictor=other)
    first.refresh_from_db()
    assert second.active
    assert not first.active
    assert list(ModelVersion.objects.filter(active=True)) == [second]
