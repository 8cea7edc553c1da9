"""Benchmark the whole stack against the bare model pipeline, on the same photos in the same run.

    .venv/bin/python benchmarks/stack.py --photos 40 --rounds 5   # prints JSON

The stack is what `make run` starts (gunicorn + a prefork Celery worker, SQLite + filesystem broker by default;
set DATABASE_URL / CELERY_BROKER_URL to measure PostgreSQL / Redis), in a temporary VAR_DIR, driven over HTTP as
the case page's upload script does it: a multipart POST marked as htmx's, answered with the new photo's card (the
script inserts it, and the card polls for its result; no page is loaded). Two measurements:

- latency: photos sent one at a time on an otherwise idle stack, submit-to-stored-result (p50 / p95);
- throughput: all photos submitted at once by a few uploaders, photos per second until the last result.

Throughput is measured in interleaved rounds (``--rounds``): the bare pipeline, then the stack, then the bare
pipeline again, and so on, and each stack round is compared with the mean of the bare rounds either side of it. A
shared machine's speed drifts by 10-20% within a minute; a ratio of two measurements taken minutes apart measures
the drift as much as the stack. Both sides are warmed up first: the bare pipeline with one photo, the stack with
one untimed round (the latency run alone leaves some of its processes cold). The report gives every round's ratio
and their median, which the target is judged on. While the bare pipeline runs, the stack's processes are stopped
(SIGSTOP, Linux only), so their idle polling does not take CPU from it.

"Stored result" is read from the database (the Analysis row done), polled every few milliseconds, so that the
measurement does not load the web server the way a flood of status requests would; the result page is checked
over HTTP once at the end. What a browser does after the upload, fetching the photo for the new card and polling
the card every second until the result shows, is left out: that is viewing, not submitting.

The bare pipeline is ``ml.inference.Predictor.predict`` (decode + model + heatmap) on the same bytes, in this
process; the target compares the stack with it. It is also timed with the two PNGs a worker must store on top
(``ml.cam.overlay_png`` and ``heatmap_png``), which is the same work as a worker's without the site around it.
Photos are generated: 12 MP JPEGs (4000 x 3000, with EXIF GPS) and small PNGs (640 x 480), alternating.

On Linux the report also gives the CPU time each part of the stack spent per photo during the throughput run
(read from /proc, so it holds when other programs load the machine): with W worker cores the stack cannot pass
W * 1000 / (its CPU ms per photo) photos per second, whatever the scheduling.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.livestack import Stack, running_stack  # noqa: E402
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


def finished_reader(stack: Stack) -> Callable[[Iterable[int]], set[int]]:
    """A function that answers which of the given images have a finished analysis, straight from the database."""
    query = "SELECT image_id FROM diagnosis_analysis WHERE status IN ('done', 'failed') AND image_id IN ({})"
    url = stack.env.get("DATABASE_URL", "")
    if url:
        import psycopg

        pg = psycopg.connect(url, autocommit=True)

        def finished_pg(image_ids: Iterable[int]) -> set[int]:
            ids = list(image_ids)
            rows = pg.execute(query.format(",".join(["%s"] * len(ids))), ids).fetchall()
            return {row[0] for row in rows}

        return finished_pg
    lite = sqlite3.connect(stack.var_dir / "db.sqlite3", check_same_thread=False)

    def finished_sqlite(image_ids: Iterable[int]) -> set[int]:
        ids = list(image_ids)
        return {row[0] for row in lite.execute(query.format(",".join("?" * len(ids))), ids)}

    return finished_sqlite


def wait_all(finished: Callable[[Iterable[int]], set[int]], image_ids: list[int], timeout: float = 300) -> None:
    pending = set(image_ids)
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} photos had no result after {timeout:.0f} s")
        pending -= finished(pending)
        time.sleep(0.005)


def process_tree(root: int) -> dict[int, tuple[int, float, str]]:
    """pid -> (parent pid, CPU time in ms, command line) for ``root`` and its descendants (Linux only)."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, float, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone in the meantime
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) * 1000 / tick, command)
    tree = {root}
    for _ in range(4):  # run_stack -> gunicorn / celery -> their workers
        tree |= {pid for pid, (parent, _, _) in table.items() if parent in tree}
    return {pid: table[pid] for pid in tree & table.keys()}


def process_tree_cpu_ms(root: int) -> dict[int, tuple[str, float]]:
    """CPU time (user + system, ms) of ``root`` and its descendants, with each one's part of the stack (Linux only).

    The parts: the web server's workers, the Celery pool processes that run analyses, and the Celery main process
    (broker consumer and beat); run_stack and gunicorn's master do nothing per photo.
    """
    table = process_tree(root)
    parts = {}
    for pid, (parent, cpu_ms, command) in table.items():
        parent_command = table.get(parent, (0, 0.0, ""))[2]
        if "gunicorn" in command:
            part = "web (gunicorn workers)" if "gunicorn" in parent_command else "web (gunicorn master)"
        elif "celery" in command:
            part = "worker (analyses)" if "celery" in parent_command else "worker (broker consumer, beat)"
        else:
            part = "run_stack"
        parts[pid] = (part, cpu_ms)
    return parts


@contextmanager
def paused(root: int) -> Iterator[None]:
    """Stop ``root`` and its descendants (SIGSTOP) for the duration, so that they take no CPU; Linux only."""
    pids = list(process_tree(root)) if Path("/proc/self/stat").exists() else []
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def cpu_spent_ms(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU ms each part of the stack spent between two ``process_tree_cpu_ms`` readings."""
    spent: dict[str, float] = {}
    for pid, (part, cpu_ms) in after.items():
        spent[part] = spent.get(part, 0.0) + cpu_ms - before.get(pid, (part, 0.0))[1]
    return spent


class StackBench:
    """The stack's measurements: latency once, then one throughput round at a time."""

    def __init__(self, stack: Stack, photos: list[tuple[str, str, bytes]], uploaders: int) -> None:
        self.stack, self.photos, self.uploaders = stack, photos, uploaders
        self.session = stack.session("nurse")
        self.finished = finished_reader(stack)
        self.sessions = [stack.session("nurse") for _ in range(uploaders)]
        self.rounds = 0
        self.last_image_id = 0
        self.cpu: dict[str, float] = {}
        self.cpu_photos = 0

    def latency(self) -> dict[str, object]:
        """Photos one at a time on an idle stack: submit-to-stored-result and the upload request alone."""
        # Warm-up: the worker process loads the model at start; one photo makes sure it is ready.
        case_id = self.session.start_case("BENCH-0000")
        warm = self.photos[-1]
        wait_all(self.finished, [self.session.upload(case_id, warm[2], filename=warm[1])])
        latency: dict[str, list[float]] = {}
        upload: dict[str, list[float]] = {}
        for kind, name, data in self.photos:
            case_id = self.session.start_case("BENCH-0001")  # a fresh case, so the page after upload stays small
            start = time.perf_counter()
            image_id = self.session.upload(case_id, data, filename=name)
            upload.setdefault(kind, []).append((time.perf_counter() - start) * 1000)
            wait_all(self.finished, [image_id])
            latency.setdefault(kind, []).append((time.perf_counter() - start) * 1000)
        return {
            "latency": {kind: summary(values) for kind, values in latency.items()},
            "latency_all": summary([v for values in latency.values() for v in values]),
            # The part of the latency spent in the upload request (validation, metadata stripping, storing, card).
            "upload_request": {kind: summary(values) for kind, values in upload.items()},
        }

    def throughput_round(self, *, record: bool = True) -> float:
        """All photos submitted at once by the uploaders; photos per second until the last stored result.

        ``record=False``: a warm-up round, left out of the CPU figures.
        """
        self.rounds += 1
        # Fresh cases each round: a clinic's case holds a few photos, not every photo of the benchmark.
        case_ids = [s.start_case(f"BENCH-{self.rounds}{i:03d}") for i, s in enumerate(self.sessions)]

        def submit(item: tuple[int, tuple[str, str, bytes]]) -> int:
            index, (_, name, data) = item
            return self.sessions[index % self.uploaders].upload(case_ids[index % self.uploaders], data, filename=name)

        linux = Path("/proc/self/stat").exists()
        cpu_before = process_tree_cpu_ms(self.stack.process.pid) if linux else {}
        client_before = time.process_time()
        start = time.perf_counter()
        with ThreadPoolExecutor(self.uploaders) as pool:
            image_ids = list(pool.map(submit, enumerate(self.photos)))
        wait_all(self.finished, image_ids)
        elapsed = time.perf_counter() - start
        client_ms = (time.process_time() - client_before) * 1000
        if linux and record:
            spent = cpu_spent_ms(cpu_before, process_tree_cpu_ms(self.stack.process.pid))
            spent["this benchmark (uploaders, result polling)"] = client_ms
            for part, ms in spent.items():
                self.cpu[part] = self.cpu.get(part, 0.0) + ms
            self.cpu_photos += len(self.photos)
        self.last_image_id = image_ids[-1]
        return len(self.photos) / elapsed

    def cpu_ms_per_photo(self) -> dict[str, float]:
        """The stack's CPU per photo over all throughput rounds, by part; empty where /proc is missing."""
        if not self.cpu_photos:
            return {}
        per_photo = {part: round(ms / self.cpu_photos, 1) for part, ms in sorted(self.cpu.items()) if ms > 0}
        per_photo["total"] = round(sum(per_photo.values()), 1)
        return per_photo

    def check_result_page(self) -> None:
        card = self.session.wait_for_result(self.last_image_id)  # the result as the nurse's page shows it
        if "Most likely:" not in card.body:
            raise RuntimeError("the result card does not show a result")


class BareBench:
    """The bare pipeline on the same photos, in this process: ``Predictor.predict`` and a worker's two PNGs."""

    def __init__(self, weights: Path, photos: list[tuple[str, str, bytes]], backend: str) -> None:
        from ml.inference import Predictor

        self.photos = photos
        self.predictor = Predictor.load(weights, backend=backend)  # type: ignore[arg-type]
        self.predictor.predict(photos[-1][2])  # warm-up, as for the stack

    def latency(self) -> dict[str, object]:
        latency: dict[str, list[float]] = {}
        for kind, _, data in self.photos:
            one = time.perf_counter()
            self.predictor.predict(data, heatmap=True)
            latency.setdefault(kind, []).append((time.perf_counter() - one) * 1000)
        return {
            "backend": self.predictor.backend,
            "latency": {kind: summary(values) for kind, values in latency.items()},
            "latency_all": summary([v for values in latency.values() for v in values]),
        }

    def throughput_round(self) -> tuple[float, float]:
        """Photos per second: decode + model + heatmap, and that plus the two PNGs a worker stores."""
        from ml.imaging import open_image
        from ml.inference import heatmap_png, overlay_png

        start = time.perf_counter()
        for _, _, data in self.photos:
            self.predictor.predict(data, heatmap=True)
        bare = len(self.photos) / (time.perf_counter() - start)

        # What a worker computes for a photo, as diagnosis.services.analysis_run does it: one decode for the model
        # and the overlay, then the two PNGs it stores.
        preprocessing = self.predictor.checkpoint.preprocessing
        start = time.perf_counter()
        for _, _, data in self.photos:
            photo = open_image(data, target_short_side=preprocessing.resize)
            heatmap = self.predictor.predict(photo, heatmap=True).heatmap
            assert heatmap is not None
            overlay_png(photo, heatmap, preprocessing=preprocessing)
            heatmap_png(heatmap)
        with_pngs = len(self.photos) / (time.perf_counter() - start)
        return bare, with_pngs


def interleaved(
    stack: StackBench, bare: BareBench, *, rounds: int, pause: Callable[[], AbstractContextManager[None]]
) -> dict[str, object]:
    """bare, stack, bare, ..., bare: each stack round against the mean of the bare rounds either side of it.

    The stack first gets an untimed round, as the bare pipeline gets its warm-up call: until every web and worker
    process has served concurrent requests, some are cold (imports, compiled templates, database connections).
    """
    stack.throughput_round(record=False)
    with pause():
        bare_rounds = [bare.throughput_round()]
    stack_rounds = []
    for _ in range(rounds):
        stack_rounds.append(stack.throughput_round())
        with pause():
            bare_rounds.append(bare.throughput_round())
    ratios, with_pngs_ratios = [], []
    for i, stack_rate in enumerate(stack_rounds):
        (before, before_pngs), (after, after_pngs) = bare_rounds[i], bare_rounds[i + 1]
        ratios.append(stack_rate / ((before + after) / 2))
        with_pngs_ratios.append(stack_rate / ((before_pngs + after_pngs) / 2))
    return {
        "stack_per_s": [round(rate, 2) for rate in stack_rounds],
        "bare_per_s": [round(rate, 2) for rate, _ in bare_rounds],
        "bare_with_heatmap_pngs_per_s": [round(rate, 2) for _, rate in bare_rounds],
        "stack_over_bare": [round(ratio, 3) for ratio in ratios],
        "stack_over_bare_with_heatmap_pngs": [round(ratio, 3) for ratio in with_pngs_ratios],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=40, help="photos per round (half 12 MP JPEG, half PNG)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved throughput rounds (stack and bare)")
    parser.add_argument("--weights", type=Path, default=None, help="checkpoint (default: the shipped weights)")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--uploaders", type=int, default=4, help="parallel uploaders in the throughput run")
    parser.add_argument("--backend", default="auto", choices=["auto", "openvino", "onnx", "torch"])
    parser.add_argument(
        "--debug", action="store_true", help="DEBUG on, as `make run` has it (default: off, as deployed)"
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.photos < 1:
        parser.error("--rounds and --photos must be at least 1")
    # Deployed (Dockerfile, .env.example) the site runs with DEBUG off; on, Django also records every query.
    settings_env = {"DEBUG": "true"} if args.debug else {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50)}

    with tempfile.TemporaryDirectory(prefix="mpox-bench-") as tmp:
        weights = args.weights or DEFAULT_WEIGHTS
        random_weights = not weights.is_file()
        if random_weights:
            weights = build_random_checkpoint(Path(tmp) / "random.pt")
        photos = make_photos(args.photos)
        bare = BareBench(weights, photos, args.backend)
        bare_latency = bare.latency()
        with running_stack(
            var_dir=Path(tmp) / "var",
            weights=weights,
            concurrency=args.concurrency,
            env={
                "MPOX_INFERENCE_BACKEND": args.backend,
                "MPOX_INFERENCE_THREADS": "1",
                "LOG_LEVEL": "WARNING",
                **settings_env,
            },
        ) as running:
            stack = StackBench(running, photos, args.uploaders)
            stack_latency = stack.latency()
            rounds = interleaved(stack, bare, rounds=args.rounds, pause=lambda: paused(running.process.pid))
            stack.check_result_page()

    stack_p50 = stack_latency["latency_all"]["p50_ms"]  # type: ignore[index]
    bare_p50 = bare_latency["latency_all"]["p50_ms"]  # type: ignore[index]
    png_p50 = stack_latency["latency"].get("png_small", {}).get("p50_ms")  # type: ignore[attr-defined]
    ratio = statistics.median(rounds["stack_over_bare"])  # type: ignore[arg-type]
    with_pngs_ratio = statistics.median(rounds["stack_over_bare_with_heatmap_pngs"])  # type: ignore[arg-type]
    report = {
        "photos": args.photos,
        "rounds": args.rounds,
        "cpu_cores": os.cpu_count(),
        "worker_processes": args.concurrency,
        "debug": args.debug,
        "weights": "random (shipped weights missing)" if random_weights else str(weights),
        # Schemes only: the URLs may carry passwords.
        "database": (os.environ.get("DATABASE_URL") or "sqlite://").split(":", 1)[0],
        "broker": (os.environ.get("CELERY_BROKER_URL") or "filesystem://").split(":", 1)[0],
        "stack": {
            **stack_latency,
            "throughput_per_s": round(statistics.median(rounds["stack_per_s"]), 2),  # type: ignore[arg-type]
            "throughput_cpu_ms_per_photo": stack.cpu_ms_per_photo(),
        },
        "bare_pipeline": {
            **bare_latency,
            "throughput_per_s": round(statistics.median(rounds["bare_per_s"]), 2),  # type: ignore[arg-type]
            "with_heatmap_pngs_throughput_per_s": round(
                statistics.median(rounds["bare_with_heatmap_pngs_per_s"]),  # type: ignore[arg-type]
                2,
            ),
        },
        "rounds_detail": rounds,
        "ratios": {
            # Medians over the rounds (each stack round against the bare rounds either side of it).
            "throughput_stack_over_bare": round(ratio, 3),
            "throughput_stack_over_bare_with_heatmap_pngs": round(with_pngs_ratio, 3),
            "p50_stack_over_bare": round(stack_p50 / bare_p50, 2) if bare_p50 else None,
        },
        "targets": {
            "throughput_at_least_two_thirds_of_bare": ratio >= 2 / 3,
            "small_photo_p50_at_most_300_ms": png_p50 is not None and png_p50 <= 300,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
