"""Inference for the clinic site: load a checkpoint once per process, then ``predict`` photos.

    predictor = Predictor.load()              # ml/weights/fast_mpoxnet.pt, OpenVINO or ONNX Runtime when available
    prediction = predictor.predict(upload_bytes)
    prediction.label, prediction.probabilities, prediction.inconclusive, prediction.heatmap

Three backends give the same numbers (``tests/ml/test_inference.py`` holds them to 1e-4): OpenVINO and ONNX
Runtime, both running the ONNX export (``ml.export``) several times faster than torch eager at batch 1, and torch
eager itself. OpenVINO is the fastest here (it fuses each GELU into its convolution and runs each channel shuffle as
one step, with two layout conversions in the whole graph, where ONNX Runtime converts layouts around every
shuffle), so ``auto`` tries it first. Every backend returns the ABLGFM feature map with the logits, so the Grad-CAM
heatmap costs a 256 x 49 product and a resize (``ml.cam``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal, Protocol

import numpy as np
import torch
from PIL import Image

from ml.cam import class_activation_maps, heatmap_png, overlay_png
from ml.checkpoint import (
    DEFAULT_CHECKPOINT,
    Checkpoint,
    CheckpointError,
    Preprocessing,
    file_sha256,
    load_checkpoint,
)
from ml.export import (
    EXPORT_VERSION,
    HIGH,
    INPUT_NAME,
    LOW,
    LOW_PROJECTED,
    OUTPUT_NAMES,
    WEIGHTS_SHA256_KEY,
    export_onnx,
    split_at_fusion,
)
from ml.imaging import as_rgb, centre_crop, open_image
from ml.model import FastMpoxNet

__all__ = ["Prediction", "Predictor", "Timings", "heatmap_png", "model_version", "overlay_png", "to_input"]

logger = logging.getLogger(__name__)

Backend = Literal["auto", "openvino", "onnx", "torch"]
BACKENDS: tuple[Backend, ...] = ("auto", "openvino", "onnx", "torch")
ImageInput = bytes | str | Path | Image.Image

# Where an ONNX export is written when the one beside the weights is missing or stale (the weights folder may be
# read-only in a container). Files are named by the weights' hash and the export version, so processes share them
# safely.
ONNX_CACHE_DIR = Path(tempfile.gettempdir()) / "mpox-triage-onnx"


@dataclass(frozen=True)
class Timings:
    decode_ms: float
    model_ms: float
    heatmap_ms: float

    @property
    def total_ms(self) -> float:
        return self.decode_ms + self.model_ms + self.heatmap_ms


@dataclass(frozen=True, eq=False)
class Prediction:
    """One photo's result. ``probabilities`` follows the checkpoint's class order; ``heatmap`` (read-only,
    input_size x input_size, float32 in [0, 1]) is aligned with the centre crop the model saw."""

    probabilities: Mapping[str, float]
    label: str
    inconclusive: bool
    heatmap: np.ndarray | None
    timings: Timings
    model_version: str


class _Runner(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N x classes) and features (N x C x H x W) for a normalised N x 3 x S x S float32 batch."""
        ...


class _TorchRunner:
    name = "torch"

    def __init__(self, model: FastMpoxNet) -> None:
        self.model = model.eval()

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            features = self.model.forward_features(torch.from_numpy(batch))
            logits = self.model.forward_head(features)
        return logits.numpy(), features.numpy()


class _OnnxRunner:
    name = "onnx"

    def __init__(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One intra-op thread per image: at this network's size, splitting one image over two threads costs more in
        # synchronisation than it gains (2.3 ms with one thread, 4.8 ms with two, on the 2-core machine). A batch
        # uses the cores by running its images side by side instead (``run``).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.weights_sha256 = self.session.get_modelmeta().custom_metadata_map.get(WEIGHTS_SHA256_KEY, "")
        self.parallel_images = max(1, threads or available_cores())
        self._output_names = list(OUTPUT_NAMES)
        self._pool: ThreadPoolExecutor | None = None
        # A lone photo with a second core free: the fusion's projection of stage 2 (a 1 x 1 convolution and GELU on
        # a 256 x 28 x 28 map, 0.25 ms) runs on that core while this thread runs stages 3-5 (see split_at_fusion).
        self._parts: list[ort.InferenceSession] = []
        parts = split_at_fusion(path) if self.parallel_images > 1 else None
        if parts is not None:
            self._parts = [ort.InferenceSession(p, options, providers=["CPUExecutionProvider"]) for p in parts]
            self._projection = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx-fusion")

    def _one(self, image: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self._output_names, {INPUT_NAME: image[None]})  # type: ignore[no-any-return]

    def _split(self, image: np.ndarray) -> list[np.ndarray]:
        front, stages, projection, fusion = self._parts
        low = front.run([LOW], {INPUT_NAME: image[None]})[0]
        projected = self._projection.submit(projection.run, [LOW_PROJECTED], {LOW: low})
        high = stages.run([HIGH], {LOW: low})[0]
        inputs = {LOW_PROJECTED: projected.result()[0], HIGH: high}
        return fusion.run(self._output_names, inputs)  # type: ignore[no-any-return]

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(batch) == 1:
            logits, features = self._split(batch[0]) if self._parts else self._one(batch[0])
            return logits, features
        # The export takes one image at a time (see ml.export); ONNX Runtime releases the GIL while it runs, so a
        # thread per core runs a batch's images in parallel.
        if self.parallel_images > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.parallel_images, thread_name_prefix="onnx")
            outputs = list(self._pool.map(self._one, batch))
        else:
            outputs = [self._one(image) for image in batch]
        return np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])


class _OpenVinoRunner:
    name = "openvino"

    def __init__(self, path: Path, threads: int | None) -> None:
        import onnx
        import openvino as ov

        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        self.path = path
        self.weights_sha256 = meta.get(WEIGHTS_SHA256_KEY, "")
        # One stream with every allowed core on it: the lowest latency for a lone photo. f32 throughout, so that
        # CPUs with bf16 units compute what the other backends compute. (A second model with a stream per core for
        # batches, one photo per stream, measured no faster in ml.bench: 990-1,090 photos a second at batch 8.)
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": max(1, threads or available_cores()),
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self._local = threading.local()  # an infer request is not thread-safe: one per calling thread

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        logits, features = [], []
        for image in batch:  # the export takes one image at a time; each call already uses every core
            request.infer({INPUT_NAME: image[None]})
            # The request reuses its output buffers for the next photo.
            logits.append(request.get_tensor(OUTPUT_NAMES[0]).data.copy())
            features.append(request.get_tensor(OUTPUT_NAMES[1]).data.copy())
        return np.concatenate(logits), np.concatenate(features)


class Predictor:
    """A checkpoint loaded for serving. Build it once per process with ``Predictor.load``; ``predict`` may be called
    from several threads."""

    def __init__(self, *, checkpoint: Checkpoint, weights_sha256: str, runner: _Runner) -> None:
        self.checkpoint = checkpoint
        self.class_names: tuple[str, ...] = tuple(checkpoint.class_names)
        self.weights_sha256 = weights_sha256
        self.version = model_version(checkpoint, weights_sha256)
        self.backend = runner.name
        self._runner = runner
        self._fc_weight = checkpoint.state_dict["fc.weight"].detach().float().numpy().copy()

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        *,
        backend: Backend = "auto",
        onnx_path: str | Path | None = None,
        threads: int | None = None,
    ) -> Predictor:
        """Load ``weights`` (default ``ml/weights/fast_mpoxnet.pt``) for inference.

        ``backend="auto"`` runs the export at ``onnx_path`` (default: the weights path with ``.onnx``) when it was
        made from these weights, otherwise exports the checkpoint into ``ONNX_CACHE_DIR``; it runs on OpenVINO,
        or should that fail on ONNX Runtime, or should that fail too on torch eager, with a warning for each
        fallback. ``"openvino"`` and ``"onnx"`` raise instead of falling back. ``threads`` caps the cores used
        (default: every available core): OpenVINO runs each image on all of them; ONNX Runtime runs a batch's
        images on up to ``threads`` threads at once, one thread each, and with ``threads`` > 1 a lone image's two
        fusion inputs on two threads; for torch it sets ``torch.set_num_threads``, which is process-wide.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        weights = Path(weights) if weights is not None else DEFAULT_CHECKPOINT
        checkpoint = load_checkpoint(weights)
        if checkpoint.arch != "fast_mpoxnet":
            raise CheckpointError(f"{weights} holds {checkpoint.arch}; the site serves only fast_mpoxnet checkpoints")
        sha = file_sha256(weights)
        runner: _Runner | None = None
        for kind in ("openvino", "onnx"):
            if runner is not None or backend not in ("auto", kind):
                continue
            try:
                runner = _open_export(kind, checkpoint, weights, sha, onnx_path, threads)
            except Exception:
                # Any failure of a runtime or of the export (their error types vary by version) leaves the next
                # backend, slower but equivalent, so still correct.
                if backend == kind:
                    raise
                logger.warning("%s unavailable for %s; trying the next backend", kind, weights, exc_info=True)
        if runner is None:
            if threads is not None:
                torch.set_num_threads(threads)
            model = checkpoint.build_model()
            assert isinstance(model, FastMpoxNet)  # the arch was checked above
            runner = _TorchRunner(model)
        predictor = cls(checkpoint=checkpoint, weights_sha256=sha, runner=runner)
        # The first call pays for lazy initialisation (a second or more for torch); not the first nurse's.
        size = checkpoint.preprocessing.input_size
        predictor.predict_arrays(np.zeros((1, 3, size, size), dtype=np.float32))
        logger.info("loaded %s on the %s backend", predictor.version, predictor.backend)
        return predictor

    def predict(self, image: ImageInput, *, heatmap: bool = True) -> Prediction:
        """Classify one photo (its bytes, path, or a PIL image). Raises ``ml.imaging.ImageError`` for bad input."""
        return self.predict_batch([image], heatmap=heatmap)[0]

    def predict_batch(self, images: Sequence[ImageInput], *, heatmap: bool = True) -> list[Prediction]:
        """Classify several photos in one model call; model and heatmap time are shared equally in ``timings``."""
        decode_ms: list[float] = []
        tensors: list[np.ndarray] = []
        for image in images:
            start = time.perf_counter()
            tensors.append(to_input(image, self.checkpoint.preprocessing))
            decode_ms.append(_ms_since(start))
        if not tensors:
            return []
        return self.predict_arrays(np.stack(tensors), heatmap=heatmap, decode_ms=decode_ms)

    def predict_arrays(
        self, batch: np.ndarray, *, heatmap: bool = True, decode_ms: Sequence[float] | None = None
    ) -> list[Prediction]:
        """Classify already preprocessed inputs (N x 3 x S x S float32, as ``to_input`` makes them)."""
        count = len(batch)
        start = time.perf_counter()
        logits, features = self._runner.run(np.ascontiguousarray(batch, dtype=np.float32))
        model_ms = _ms_since(start) / count
        probabilities = _softmax(logits)
        indices = probabilities.argmax(axis=1)
        maps: np.ndarray | None = None
        heatmap_ms = 0.0
        if heatmap:
            start = time.perf_counter()
            size = self.checkpoint.preprocessing.input_size
            maps = class_activation_maps(features, self._fc_weight, indices, size=size)
            maps.flags.writeable = False
            heatmap_ms = _ms_since(start) / count
        return [
            Prediction(
                probabilities=MappingProxyType(dict(zip(self.class_names, map(float, probabilities[i]), strict=True))),
                label=self.class_names[int(indices[i])],
                inconclusive=self.checkpoint.inconclusive.is_inconclusive(logits[i]),
                heatmap=None if maps is None else maps[i],
                timings=Timings(
                    decode_ms=decode_ms[i] if decode_ms is not None else 0.0, model_ms=model_ms, heatmap_ms=heatmap_ms
                ),
                model_version=self.version,
            )
            for i in range(count)
        ]


def to_input(image: ImageInput, preprocessing: Preprocessing) -> np.ndarray:
    """Decode (JPEG draft mode down to the resize target), centre-crop and normalise one photo: 3 x S x S float32."""
    rgb = as_rgb(image) if isinstance(image, Image.Image) else open_image(image, target_short_side=preprocessing.resize)
    crop = np.asarray(centre_crop(rgb, preprocessing), dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    mean = np.asarray(preprocessing.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(preprocessing.std, dtype=np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray((crop - mean) / std)


def model_version(checkpoint: Checkpoint, weights_sha256: str) -> str:
    """Human-readable and unique per weights file, e.g. ``fast-mpoxnet 2026-11-25 sha256:ab12cd34ef56``."""
    parts = [checkpoint.arch.replace("_", "-"), checkpoint.created_at[:10], f"sha256:{weights_sha256[:12]}"]
    return " ".join(part for part in parts if part)


def _open_export(
    kind: Literal["openvino", "onnx"],
    checkpoint: Checkpoint,
    weights: Path,
    sha: str,
    onnx_path: str | Path | None,
    threads: int | None,
) -> _OpenVinoRunner | _OnnxRunner:
    """A runner of kind ``kind`` on the ONNX export of ``weights``: the one at ``onnx_path`` if it was made from
    these weights, else a fresh one in ``ONNX_CACHE_DIR``."""
    runner_class = _OpenVinoRunner if kind == "openvino" else _OnnxRunner
    path = Path(onnx_path) if onnx_path is not None else weights.with_suffix(".onnx")
    if path.is_file():
        runner = runner_class(path, threads)
        if runner.weights_sha256 == sha:
            return runner
        logger.warning("%s was exported from other weights than %s; using a fresh export", path, weights)
    else:
        logger.info("no ONNX export at %s; exporting %s", path, weights)
    cached = ONNX_CACHE_DIR / f"{checkpoint.arch}-{sha[:16]}-v{EXPORT_VERSION}.onnx"
    if not cached.is_file():
        export_onnx(checkpoint, cached, weights_sha256=sha)
    runner = runner_class(cached, threads)
    if runner.weights_sha256 != sha:
        raise ValueError(f"{cached} does not hold the export of {weights}")
    return runner


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
