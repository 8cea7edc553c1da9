"""Review-queue benchmark: render time of /review/ with 50,000 cases awaiting review (issue target: < 300 ms).

    .venv/bin/python benchmarks/review_queue.py [--cases 50000]          # prints JSON

Builds the cases in a throw-away SQLite database (or the one DATABASE_URL names, which must be disposable), then
times the queue page through Django's test client: the median of five renders after a warm-up, next to a baseline
measured in the same process, the same page with 1,000 cases, so the ratio shows how the page scales.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(var_dir: Path) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpoxsite.settings")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{var_dir / 'bench.sqlite3'}")
    os.environ["VAR_DIR"] = str(var_dir)
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def add_cases(n: int, *, nurse, rng: random.Random) -> None:  # type: ignore[no-untyped-def]
    from django.utils import timezone

    from diagnosis.models import Analysis, Case, LesionImage, Patient

    now = timezone.now()
    patient = Patient.objects.create(hospital_identifier=f"MRN-BENCH-{rng.random()}", created_by=nurse)
    first_new = (Case.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    # What case_risk_refresh stores as analyses finish; refreshing 50,000 rows one by one would dominate the run.
    Case.objects.bulk_create(
        Case(
            patient=patient,
            created_by=nurse,
            status=Case.Status.AWAITING_REVIEW,
            ai_mpox_max=(p := rng.random()),
            risk=p + rng.choice([0.0, 0.15, 0.3, 0.6]),
            created_at=now - timedelta(minutes=rng.randrange(60 * 48)),
        )
        for _ in range(n)
    )
    case_ids = Case.objects.filter(pk__gte=first_new).values_list("pk", flat=True)
    images = LesionImage.objects.bulk_create(
        LesionImage(
            case_id=case_id,
            file=f"lesions/bench-{case_id}.jpg",
            sha256="0" * 64,
            size_bytes=1,
            image_format="JPEG",
            width=1,
            height=1,
            body_part=rng.choice(LesionImage.BodyPart.values),
            stage=rng.choice(LesionImage.Stage.values),
            uploaded_by=nurse,
        )
        for case_id in case_ids
    )
    Analysis.objects.bulk_create(
        Analysis(
            image_id=image.pk,
            status=Analysis.Status.DONE,
            probabilities={"monkeypox": (q := rng.random()), "chickenpox": 1 - q},
            label="monkeypox" if q > 0.5 else "chickenpox",
            inconclusive=rng.random() < 0.1,
        )
        for image in images
    )


def render_ms(client, rounds: int = 5) -> float:  # type: ignore[no-untyped-def]
    client.get("/review/")  # warm-up: session, templates
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        response = client.get("/review/")
        timings.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"/review/ answered {response.status_code}")
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=50_000)
    parser.add_argument("--baseline-cases", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mpox-queue-bench-") as tmp:
        setup_django(Path(tmp))
        from django.test import Client

        from diagnosis import services

        rng = random.Random(4)
        nurse, _ = services.user_create_with_role(username="bench-nurse", role="nurse", password="x" * 20)
        clinician, _ = services.user_create_with_role(username="bench-clinician", role="clinician", password="x" * 20)
        client = Client()
        client.force_login(clinician)
        add_cases(args.baseline_cases, nurse=nurse, rng=rng)
        baseline = render_ms(client)
        add_cases(args.cases - args.baseline_cases, nurse=nurse, rng=rng)
        full = render_ms(client)
    result = {
        "cases": args.cases,
        "queue_ms": round(full, 1),
        "baseline": {"cases": args.baseline_cases, "queue_ms": round(baseline, 1)},
        "ratio_to_baseline": round(full / baseline, 2),
        "target_ms": 300,
        "target_met": full < 300,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
