"""Benchmark the whole stack against the bare model pipeline, on the same photos in the same run.

    .venv/bin/python benchmarks/stack.py --photos 20            # prints JSON

The stack is what `make run` starts (gunicorn + a prefork Celery worker, SQLite + filesystem broker by default;
set DATABASE_URL / CELERY_BROKER_URL to measure PostgreSQL / Redis), in a temporary VAR_DIR, driven over HTTP as
a browser would: upload (multipart POST), then poll the photo's card until it stops polling. Two measurements:

- latency: photos sent one at a time on an otherwise idle stack, submit-to-stored-result (p50 / p95);
- throughput: all photos submitted at once by a few uploaders, photos per second until the last result.

The bare pipeline is ``ml.inference.Predictor.predict`` (decode + model + heatmap) on the same bytes, in this
process. Photos are generated: 12 MP JPEGs (4000 x 3000, with EXIF GPS) and small PNGs (640 x 480), alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.livestack import Session, Stack, start_stack  # noqa: E402
from tests.model_weights import build_random_checkpoint  # noqa: E402
from tests.photos import jpeg_bytes, png_bytes  # noqa: E402

DEFAULT_WEIGHTS = ROOT / "ml" / "weights" / "fast_mpoxnet.pt"


def make_photos(count: int) -> list[tuple[str, str, bytes]]:
    """(kind, file name, bytes), alternating 12 MP JPEG and small PNG."""
    photos = []
    for i in range(count):
        if i % 2 == 0:
            photos.append(("jpeg_12mp", "photo.jpg", jpeg_bytes(4000, 3000, gps=True, seed=i, quality=92)))
        else:
            photos.append(("png_small", "photo.png", png_bytes(640, 480, seed=i)))
    return photos


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    index = q * (len(ordered) - 1)
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def summary(latencies_ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(latencies_ms, 0.5), 1),
        "p95_ms": round(percentile(latencies_ms, 0.95), 1),
        "mean_ms": round(statistics.fmean(latencies_ms), 1),
    }


def submit_and_wait(session: Session, case_id: int, name: str, data: bytes) -> float:
    start = time.perf_counter()
    image_id = session.upload(case_id, data, filename=name)
    session.wait_for_result(image_id, interval=0.01)
    return (time.perf_counter() - start) * 1000


def bench_stack(stack: Stack, photos: list[tuple[str, str, bytes]], uploaders: int) -> dict[str, object]:
    session = stack.session("nurse")
    case_id = session.start_case("BENCH-0001")
    # Warm-up: the worker process loads the model at start; one photo makes sure it is ready.
    submit_and_wait(session, case_id, photos[-1][1], photos[-1][2])

    latency: dict[str, list[float]] = {}
    for kind, name, data in photos:
        latency.setdefault(kind, []).append(submit_and_wait(session, case_id, name, data))

    sessions = [stack.session("nurse") for _ in range(uploaders)]
    start = time.perf_counter()
    with ThreadPoolExecutor(uploaders) as pool:
        image_ids = list(
            pool.map(
                lambda item: sessions[item[0] % uploaders].upload(case_id, item[1][2], filename=item[1][1]),
                enumerate(photos),
            )
        )
        list(pool.map(lambda image_id: session.wait_for_result(image_id, interval=0.02), image_ids))
    elapsed = time.perf_counter() - start
    return {
        "latency": {kind: summary(values) for kind, values in latency.items()},
        "latency_all": summary([v for values in latency.values() for v in values]),
        "throughput_per_s": round(len(photos) / elapsed, 2),
    }


def bench_bare(weights: Path, photos: list[tuple[str, str, bytes]], backend: str) -> dict[str, object]:
    from ml.inference import Predictor

    predictor = Predictor.load(weights, backend=backend)  # type: ignore[arg-type]
    predictor.predict(photos[-1][2])  # warm-up, as for the stack
    latency: dict[str, list[float]] = {}
    start = time.perf_counter()
    for kind, _, data in photos:
        one = time.perf_counter()
        predictor.predict(data, heatmap=True)
        latency.setdefault(kind, []).append((time.perf_counter() - one) * 1000)
    elapsed = time.perf_counter() - start
    return {
        "backend": predictor.backend,
        "latency": {kind: summary(values) for kind, values in latency.items()},
        "latency_all": summary([v for values in latency.values() for v in values]),
        "throughput_per_s": round(len(photos) / elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=20, help="photos per measurement (half 12 MP JPEG, half PNG)")
    parser.add_argument("--weights", type=Path, default=None, help="checkpoint (default: the shipped weights)")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--uploaders", type=int, default=4, help="parallel uploaders in the throughput run")
    parser.add_argument("--backend", default="auto", choices=["auto", "onnx", "torch"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mpox-bench-") as tmp:
        weights = args.weights or DEFAULT_WEIGHTS
        random_weights = not weights.is_file()
        if random_weights:
            weights = build_random_checkpoint(Path(tmp) / "random.pt")
        photos = make_photos(args.photos)
        bare = bench_bare(weights, photos, args.backend)
        stack = start_stack(
            var_dir=Path(tmp) / "var",
            weights=weights,
            concurrency=args.concurrency,
            env={"MPOX_INFERENCE_BACKEND": args.backend, "MPOX_INFERENCE_THREADS": "1", "LOG_LEVEL": "WARNING"},
        )
        try:
            measured = bench_stack(stack, photos, args.uploaders)
        finally:
            stack.stop()

    stack_p50 = measured["latency_all"]["p50_ms"]  # type: ignore[index]
    bare_p50 = bare["latency_all"]["p50_ms"]  # type: ignore[index]
    png_p50 = measured["latency"].get("png_small", {}).get("p50_ms")  # type: ignore[attr-defined]
    throughput_ratio = measured["throughput_per_s"] / bare["throughput_per_s"]  # type: ignore[operator]
    report = {
        "photos": args.photos,
        "cpu_cores": os.cpu_count(),
        "worker_processes": args.concurrency,
        "weights": "random (shipped weights missing)" if random_weights else str(weights),
        # Schemes only: the URLs may carry passwords.
        "database": (os.environ.get("DATABASE_URL") or "sqlite://").split(":", 1)[0],
        "broker": (os.environ.get("CELERY_BROKER_URL") or "filesystem://").split(":", 1)[0],
        "stack": measured,
        "bare_pipeline": bare,
        "ratios": {
            "throughput_stack_over_bare": round(throughput_ratio, 3),
            "p50_stack_over_bare": round(stack_p50 / bare_p50, 2) if bare_p50 else None,
        },
        "targets": {
            "throughput_at_least_two_thirds_of_bare": throughput_ratio >= 2 / 3,
            "small_photo_p50_at_most_300_ms": png_p50 is not None and png_p50 <= 300,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
