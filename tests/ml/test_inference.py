from __future__ import annotations

import dataclasses
import logging
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import ml.cam
import ml.inference
from ml.checkpoint import PAPER_CLASSES, CheckpointError, InconclusiveRule, Preprocessing, file_sha256
from ml.export import EXPORT_VERSION, export_onnx
from ml.imaging import CorruptImageError
from ml.inference import Prediction, Predictor, to_input
from tests.ml.factories import calibrated_model, checkpoint_for, encode, photo


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "fast_mpoxnet.pt"
    checkpoint_for(calibrated_model(seed=11)).save(path)
    return path


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(ml.inference, "ONNX_CACHE_DIR", tmp_path / "onnx-cache")
    return tmp_path / "onnx-cache"


@pytest.fixture(scope="module")
def onnx_file(weights):
    return export_onnx(
        checkpoint_for(calibrated_model(seed=11)), weights.with_suffix(".onnx"), weights_sha256=file_sha256(weights)
    )


@pytest.fixture(scope="module")
def on_torch(weights) -> Predictor:
    return Predictor.load(weights, backend="torch")


@pytest.fixture(scope="module")
def on_onnx(weights, onnx_file) -> Predictor:
    return Predictor.load(weights, backend="onnx")


@pytest.fixture(scope="module")
def on_openvino(weights, onnx_file) -> Predictor:
    return Predictor.load(weights, backend="openvino")


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return encode(photo(640, 480, seed=2), "JPEG", quality=92)


def test_a_prediction_is_a_small_frozen_record(on_onnx, jpeg) -> None:
    prediction = on_onnx.predict(jpeg)

    assert tuple(prediction.probabilities) == PAPER_CLASSES
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
    assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.__getitem__)
    assert prediction.heatmap is not None
    assert prediction.heatmap.shape == (224, 224)
    assert prediction.heatmap.dtype == np.float32
    assert prediction.heatmap.min() >= 0.0
    assert prediction.heatmap.max() <= 1.0
    assert prediction.model_version == on_onnx.version
    assert prediction.timings.total_ms == pytest.approx(
        prediction.timings.decode_ms + prediction.timings.model_ms + prediction.timings.heatmap_ms
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        prediction.label = "normal"  # type: ignore[misc]
    with pytest.raises(TypeError):
        prediction.probabilities["normal"] = 1.0  # type: ignore[index]
    with pytest.raises(ValueError, match="read-only"):
        prediction.heatmap[0, 0] = 1.0


@pytest.mark.parametrize(("backend", "threads"), [("onnx", None), ("openvino", 1), ("openvino", 2)])
def test_the_fast_backends_agree_with_torch(weights, onnx_file, on_torch, backend, threads) -> None:
    fast_predictor = Predictor.load(weights, backend=backend, threads=threads)
    assert fast_predictor.backend == backend
    images = [encode(photo(400, 300, seed=seed), "PNG") for seed in range(3)]
    batch = np.stack([to_input(image, Preprocessing()) for image in images])

    torch_logits, torch_features = on_torch._runner.run(batch)
    fast_logits, fast_features = fast_predictor._runner.run(batch)
    assert fast_logits.shape == torch_logits.shape
    assert fast_features.shape == torch_features.shape
    assert np.abs(torch_logits - fast_logits).max() <= 1e-4
    # Features reach ~50 with random weights; float32 summation order differs by about 1e-4 of that.
    assert np.abs(torch_features - fast_features).max() <= 1e-4 * np.abs(torch_features).max()

    for eager, fast in zip(on_torch.predict_batch(images), fast_predictor.predict_batch(images), strict=True):
        assert eager.label == fast.label
        assert all(abs(eager.probabilities[c] - fast.probabilities[c]) <= 1e-5 for c in PAPER_CLASSES)
        assert eager.heatmap is not None
        assert fast.heatmap is not None
        assert np.abs(eager.heatmap - fast.heatmap).max() <= 1e-4


@pytest.mark.parametrize("threads", [1, 2])
def test_a_lone_photo_gives_the_same_answer_on_one_core_or_two(weights, onnx_file, on_torch, threads) -> None:
    # With two cores the export is cut around the fusion and its stage-2 projection runs beside stages 3-5.
    predictor = Predictor.load(weights, backend="onnx", threads=threads)
    assert bool(predictor._runner._parts) == (threads > 1)  # type: ignore[attr-defined]
    image = to_input(encode(photo(400, 300, seed=5), "PNG"), Preprocessing())[None]

    torch_logits, torch_features = on_torch._runner.run(image)
    onnx_logits, onnx_features = predictor._runner.run(image)
    assert onnx_logits.shape == torch_logits.shape
    assert onnx_features.shape == torch_features.shape
    assert np.abs(torch_logits - onnx_logits).max() <= 1e-4
    assert np.abs(torch_features - onnx_features).max() <= 1e-4 * np.abs(torch_features).max()


def test_without_a_heatmap_it_skips_the_work(on_onnx, jpeg) -> None:
    prediction = on_onnx.predict(jpeg, heatmap=False)
    assert prediction.heatmap is None
    assert prediction.timings.heatmap_ms == 0.0


def test_bytes_paths_and_decoded_images_give_the_same_answer(on_onnx, tmp_path) -> None:
    data = encode(photo(300, 300, seed=4), "PNG")
    path = tmp_path / "lesion.png"
    path.write_bytes(data)
    image = Image.open(path)

    results = [on_onnx.predict(source) for source in (data, path, str(path), image)]

    for other in results[1:]:
        assert dict(other.probabilities) == dict(results[0].probabilities)


def test_a_photo_taken_sideways_is_seen_upright(on_onnx) -> None:
    upright = photo(240, 320, seed=6)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; display needs 90 degrees clockwise
    sideways = encode(upright.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif.tobytes())

    expected = on_onnx.predict(encode(upright, "PNG"))
    actual = on_onnx.predict(sideways)

    assert actual.probabilities == pytest.approx(expected.probabilities)


def test_a_batch_gives_what_single_predictions_give(on_onnx) -> None:
    images = [encode(photo(256 + 32 * i, 256, seed=i), "JPEG") for i in range(3)]
    one_by_one = [on_onnx.predict(image) for image in images]
    together = on_onnx.predict_batch(images)
    assert on_onnx.predict_batch([]) == []
    for single, batched in zip(one_by_one, together, strict=True):
        assert batched.label == single.label
        assert batched.probabilities == pytest.approx(single.probabilities, abs=1e-6)


# ONNX Runtime spreads a batch's photos over threads; OpenVINO runs them one by one on one infer request, which
# reuses its output buffers. Either way each result must land with its own photo.
@pytest.mark.parametrize(("backend", "threads"), [("onnx", 3), ("openvino", 1), ("openvino", 2)])
def test_a_batch_keeps_each_photo_with_its_own_result(weights, onnx_file, backend, threads) -> None:
    predictor = Predictor.load(weights, backend=backend, threads=threads)
    images = [encode(photo(224, 224, seed=20 + i), "PNG") for i in range(5)]
    together = predictor.predict_batch(images)
    heatmaps = [p.heatmap for p in together if p.heatmap is not None]
    assert len({h.tobytes() for h in heatmaps}) == len(images)
    for image, batched in zip(images, together, strict=True):
        single = predictor.predict(image)
        assert batched.probabilities == pytest.approx(single.probabilities, abs=1e-6)
        assert batched.heatmap is not None
        assert single.heatmap is not None
        assert np.allclose(batched.heatmap, single.heatmap, atol=1e-6)


def test_it_is_safe_to_share_between_threads(on_openvino, on_onnx, on_torch) -> None:
    # Heatmaps tell these photos apart; their probabilities are all nearly one-hot "normal".
    images = [encode(photo(224, 224, seed=i), "PNG") for i in range(3)]

    def heatmaps(predictions: list[Prediction]) -> list[np.ndarray]:
        return [p.heatmap for p in predictions if p.heatmap is not None]

    for predictor in (on_openvino, on_onnx, on_torch):
        expected = heatmaps([predictor.predict(image) for image in images])
        assert len({h.tobytes() for h in expected}) == len(images)
        with ThreadPoolExecutor(max_workers=3) as pool:
            actual = heatmaps(list(pool.map(predictor.predict, images)))
        assert all(np.allclose(a, e, atol=1e-5) for a, e in zip(actual, expected, strict=True))
        with ThreadPoolExecutor(max_workers=3) as pool:
            batches = list(pool.map(lambda k, p=predictor: p.predict_batch(images[k:] + images[:k]), range(3)))
        for shift, batch in enumerate(batches):
            rotated = expected[shift:] + expected[:shift]
            assert all(np.allclose(a, e, atol=1e-5) for a, e in zip(heatmaps(batch), rotated, strict=True))


def test_the_version_names_the_model_its_date_and_its_weights(on_onnx, weights) -> None:
    assert on_onnx.version == f"fast-mpoxnet 2026-11-25 sha256:{file_sha256(weights)[:12]}"
    assert re.fullmatch(r"fast-mpoxnet \d{4}-\d\d-\d\d sha256:[0-9a-f]{12}", on_onnx.version)
    assert on_onnx.weights_sha256 == file_sha256(weights)
    assert on_onnx.class_names == PAPER_CLASSES


def test_low_confidence_is_inconclusive_per_the_checkpoint(on_onnx, tmp_path, jpeg) -> None:
    path = tmp_path / "strict.pt"
    checkpoint_for(calibrated_model(seed=11), threshold=1.0).save(path)
    assert Predictor.load(path, backend="torch").predict(jpeg).inconclusive
    # The default rule (threshold 0) never withholds an answer.
    assert not on_onnx.predict(jpeg).inconclusive


def test_a_by_label_rule_flags_a_prediction_by_its_top_labels_threshold(on_torch, tmp_path, jpeg) -> None:
    answer = on_torch.predict(jpeg, heatmap=False)
    top = PAPER_CLASSES.index(answer.label)
    score = max(answer.probabilities.values())

    def inconclusive_with(top_threshold: float, other_threshold: float) -> bool:
        thresholds = tuple(top_threshold if i == top else other_threshold for i in range(len(PAPER_CLASSES)))
        path = tmp_path / f"by_label_{top_threshold}.pt"
        checkpoint = checkpoint_for(calibrated_model(seed=11))
        checkpoint = dataclasses.replace(
            checkpoint, inconclusive=InconclusiveRule(threshold=0.0, label_thresholds=thresholds)
        )
        checkpoint.save(path)
        return Predictor.load(path, backend="torch").predict(jpeg, heatmap=False).inconclusive

    # Only the top label's threshold counts, whatever the others are.
    assert inconclusive_with(score + 0.01, 0.0)
    assert not inconclusive_with(score - 0.01, 1.0)


def test_auto_uses_a_matching_onnx_export_on_openvino(weights, onnx_file, onnx_cache) -> None:
    predictor = Predictor.load(weights)
    assert predictor.backend == "openvino"
    assert not onnx_cache.exists()
    assert Predictor.load(weights, backend="onnx").backend == "onnx"
    assert not onnx_cache.exists()


def test_auto_falls_back_to_onnx_runtime_when_openvino_fails(weights, onnx_file, monkeypatch, caplog) -> None:
    def broken_openvino(*args, **kwargs):
        raise RuntimeError("no OpenVINO plugin for this CPU")

    monkeypatch.setattr(ml.inference._OpenVinoRunner, "__init__", broken_openvino)
    with caplog.at_level(logging.WARNING, logger="ml.inference"):
        assert Predictor.load(weights).backend == "onnx"
    assert "openvino unavailable" in caplog.text
    with pytest.raises(RuntimeError, match="no OpenVINO plugin"):
        Predictor.load(weights, backend="openvino")


def test_auto_replaces_a_stale_export_with_a_fresh_one(tmp_path, onnx_file, onnx_cache, caplog) -> None:
    path = tmp_path / "retrained.pt"
    retrained = checkpoint_for(calibrated_model(seed=11))
    retrained.created_at = "2026-12-01T10:00:00+00:00"
    retrained.save(path)
    shutil.copy(onnx_file, path.with_suffix(".onnx"))  # the previous weights' export

    with caplog.at_level(logging.WARNING, logger="ml.inference"):
        predictor = Predictor.load(path)

    assert predictor.backend == "openvino"
    assert "exported from other weights" in caplog.text
    assert [p.name for p in onnx_cache.iterdir()] == [f"fast_mpoxnet-{file_sha256(path)[:16]}-v{EXPORT_VERSION}.onnx"]
    eager = Predictor.load(path, backend="torch")
    image = encode(photo(seed=9), "PNG")
    assert predictor.predict(image).probabilities == pytest.approx(eager.predict(image).probabilities, abs=1e-5)


def test_auto_falls_back_to_torch_when_onnx_cannot_be_made(tmp_path, monkeypatch, caplog) -> None:
    path = tmp_path / "weights.pt"
    checkpoint_for(calibrated_model(seed=11)).save(path)

    def broken_export(*args, **kwargs):
        raise RuntimeError("exporter unavailable")

    monkeypatch.setattr(ml.inference, "export_onnx", broken_export)
    with caplog.at_level(logging.WARNING, logger="ml.inference"):
        assert Predictor.load(path).backend == "torch"
    assert "openvino unavailable" in caplog.text
    assert "onnx unavailable" in caplog.text
    for backend in ("openvino", "onnx"):
        with pytest.raises(RuntimeError, match="exporter unavailable"):
            Predictor.load(path, backend=backend)


def test_it_refuses_a_missing_or_foreign_checkpoint(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Predictor.load(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="backend"):
        Predictor.load(tmp_path / "missing.pt", backend="gpu")  # type: ignore[arg-type]


def test_a_damaged_upload_raises_an_image_error_with_a_plain_message(on_onnx, jpeg) -> None:
    with pytest.raises(CorruptImageError, match="damaged or incomplete"):
        on_onnx.predict(jpeg[: len(jpeg) // 2])


def test_the_model_sees_the_centre_crop(on_onnx) -> None:
    image = Image.new("RGB", (336, 224), (255, 0, 0))
    image.paste((0, 128, 0), (56, 0, 280, 224))
    pixels = to_input(image, Preprocessing())
    mean, std = np.array(Preprocessing().mean), np.array(Preprocessing().std)
    expected = ((np.array([0, 128, 0]) / 255 - mean) / std).astype(np.float32)
    assert pixels.shape == (3, 224, 224)
    assert np.allclose(pixels.transpose(1, 2, 0), expected, atol=1e-6)


def test_prediction_is_reexported_with_the_renderers() -> None:
    assert ml.inference.overlay_png is ml.cam.overlay_png
    assert ml.inference.heatmap_png is ml.cam.heatmap_png
    assert dataclasses.is_dataclass(Prediction)
