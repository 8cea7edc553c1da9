"""Speed benchmark: the paper's Eq. 6 average FPS for Fast-MpoxNet on every backend, with and without the heatmap,
against torchvision's ShuffleNetV2-x0.5 and MobileNetV3-small in torch eager, plus batch-8 throughput and the time
to decode a 12 MP phone JPEG.

    python -m ml.bench [--json] [--n 100] [--rounds 10] [--threads N] [--weights PATH]

Everything runs in one process. After a warm-up, the variants take turns in ``rounds`` rounds of ``n / rounds``
images each, so that a background load drifting over time hits them all alike. Eq. 6 is the mean over the ``n``
images of 1 / (t_out - t_in), one image at a time; for batch 8 it is the mean of 8 / (t_out - t_in) per batch. Model
timings start from the preprocessed input tensor and end with the ``Prediction`` objects (softmax and heatmap
included); decoding is measured on its own (``decode_ms``). The weights do not change the speed: without a
checkpoint a randomly initialised Fast-MpoxNet is measured.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ml.checkpoint import DEFAULT_CHECKPOINT, PAPER_CLASSES, Checkpoint, Preprocessing
from ml.imaging import open_image
from ml.inference import Predictor, available_cores, to_input
from ml.model import build_model, fast_mpoxnet, parameter_count

__all__ = ["Variant", "main", "run_benchmark"]

logger = logging.getLogger(__name__)

BASELINE = "shufflenet_v2_x0_5"
PHONE_PHOTO_SIZE = (4000, 3000)  # 12 MP
SETTLE_SECONDS = 0.05


@dataclass
class Variant:
    name: str
    backend: str
    heatmap: bool
    batch: int
    step: Callable[[], object]
    rates: list[float]

    def measure(self, count: int) -> None:
        for _ in range(count):
            start = time.perf_counter()
            self.step()
            self.rates.append(self.batch / (time.perf_counter() - start))

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "backend": self.backend,
            "heatmap": self.heatmap,
            "batch": self.batch,
            "fps": round(statistics.fmean(self.rates), 2),
        }


def run_benchmark(
    *, weights: Path | None, n: int = 100, rounds: int = 10, warmup: int = 10, threads: int | None = None
) -> dict[str, object]:
    """Measure every variant and return the JSON-ready summary (see the module docstring)."""
    if n < rounds or rounds < 1:
        raise ValueError(f"need n >= rounds >= 1, got n={n}, rounds={rounds}")
    threads = threads or available_cores()
    torch.set_num_threads(threads)
    preprocessing = Preprocessing()
    with tempfile.TemporaryDirectory(prefix="mpox-bench-") as scratch:
        checkpoint_path = weights if weights is not None else _random_checkpoint(Path(scratch) / "random.pt")
        onnx_path = Path(scratch) / "model.onnx"
        on_openvino = Predictor.load(checkpoint_path, backend="openvino", onnx_path=onnx_path, threads=threads)
        on_onnx = Predictor.load(checkpoint_path, backend="onnx", onnx_path=onnx_path, threads=threads)
        on_torch = Predictor.load(checkpoint_path, backend="torch", threads=threads)

        photo = _phone_jpeg()
        one = to_input(photo, preprocessing)[None]
        eight = np.repeat(one, 8, axis=0)
        variants = [
            Variant("fast_mpoxnet", predictor.backend, heatmap, batch, _predict(predictor, batch_input, heatmap), [])
            for predictor in (on_openvino, on_onnx, on_torch)
            for heatmap, batch, batch_input in ((False, 1, one), (True, 1, one), (True, 8, eight))
        ]
        for name in (BASELINE, "mobilenet_v3_small"):
            variants.append(Variant(name, "torch", False, 1, _eager(name, one), []))

        for variant in variants:
            for _ in range(warmup):
                variant.step()
        per_round = n // rounds
        for _ in range(rounds):
            for variant in variants:
                # The runtimes' thread pools spin for a while after their last call (OpenMP, TBB); a pause keeps
                # them from slowing whichever variant comes next.
                time.sleep(SETTLE_SECONDS)
                variant.measure(per_round)

        decode_ms = _decode_ms(photo, preprocessing, repeats=max(3, rounds * 2))
        decode_full_ms = _decode_ms(photo, None, repeats=max(3, rounds))
        params = parameter_count(on_torch.checkpoint.build_model())

    summaries = [variant.summary() for variant in variants]
    baseline_fps = next(float(s["fps"]) for s in summaries if s["name"] == BASELINE)  # type: ignore[arg-type]
    best_with_heatmap = max(
        float(s["fps"])  # type: ignore[arg-type]
        for s in summaries
        if s["name"] == "fast_mpoxnet" and s["heatmap"] and s["batch"] == 1
    )
    return {
        "params": params,
        "variants": summaries,
        "baseline": {"name": BASELINE, "fps": baseline_fps},
        "best_ratio_with_heatmap": round(best_with_heatmap / baseline_fps, 2),
        "decode_ms": round(decode_ms, 1),
        "decode_full_ms": round(decode_full_ms, 1),
        "threads": threads,
        "n": per_round * rounds,
        "weights": str(weights) if weights is not None else "random",
    }


def _predict(predictor: Predictor, batch: np.ndarray, heatmap: bool) -> Callable[[], object]:
    return lambda: predictor.predict_arrays(batch, heatmap=heatmap)


def _eager(name: str, batch: np.ndarray) -> Callable[[], object]:
    model = build_model(name, num_classes=len(PAPER_CLASSES)).eval()
    tensor = torch.from_numpy(batch)

    def step() -> object:
        with torch.inference_mode():
            return model(tensor)

    return step


def _random_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = fast_mpoxnet(num_classes=len(PAPER_CLASSES), aux_heads=False)
    Checkpoint(
        arch="fast_mpoxnet", class_names=PAPER_CLASSES, state_dict=model.state_dict(), config=model.config.to_dict()
    ).save(path)
    return path


def _phone_jpeg() -> bytes:
    """A 12 MP JPEG with photo-like detail: smooth shapes plus sensor-like noise, quality 92."""
    rng = np.random.default_rng(0)
    width, height = PHONE_PHOTO_SIZE
    coarse = rng.integers(0, 256, (height // 64, width // 64, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize(PHONE_PHOTO_SIZE, Image.Resampling.BICUBIC), dtype=np.int16)
    noisy = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, format="JPEG", quality=92)
    return out.getvalue()


def _decode_ms(data: bytes, preprocessing: Preprocessing | None, *, repeats: int) -> float:
    """Median time to the model's input (draft mode) or, without ``preprocessing``, to a full-size decode."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        if preprocessing is None:
            open_image(data)
        else:
            to_input(data, preprocessing)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _table(result: dict[str, object]) -> str:
    lines = [f"{'model':<20} {'backend':<8} {'heatmap':<8} {'batch':>5} {'fps':>9}"]
    for row in result["variants"]:  # type: ignore[attr-defined]
        lines.append(
            f"{row['name']:<20} {row['backend']:<8} {row['heatmap']!s:<8} {row['batch']:>5} {row['fps']:>9.1f}"
        )
    lines.append(
        f"params {result['params']:,}; best with heatmap / {BASELINE}: {result['best_ratio_with_heatmap']}x; "
        f"12 MP JPEG to input: {result['decode_ms']} ms (full decode {result['decode_full_ms']} ms); "
        f"{result['threads']} threads, n={result['n']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--n", type=int, default=100, help="timed images per variant (Eq. 6's N)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds the N images are split into")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls per variant first")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: every core)")
    parser.add_argument(
        "--weights", type=Path, default=None, help=f"checkpoint (default {DEFAULT_CHECKPOINT} if present)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    weights = args.weights or (DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None)
    result = run_benchmark(weights=weights, n=args.n, rounds=args.rounds, warmup=args.warmup, threads=args.threads)
    print(json.dumps(result) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
