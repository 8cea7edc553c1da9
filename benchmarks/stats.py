"""Statistics benchmark: GET /api/v1/stats over 50,000 cases with one analysed photo each, most of them graded.

    .venv/bin/python benchmarks/stats.py [--cases 50000]          # prints JSON

Builds the cases as the review-queue benchmark does (a throw-away SQLite database), gives 70 % of them a clinician's
review and 20 % a PCR result, then times the endpoint through Django's test client (median of five after a
warm-up) and counts its queries, next to a 1,000-case baseline.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from review_queue import add_cases, setup_django  # a sibling script, not a package


def add_ground_truth(*, clinician, rng: random.Random) -> None:  # type: ignore[no-untyped-def]
    from diagnosis.models import Case, LabResult, Review

    graded = set(Review.objects.values_list("case_id", flat=True)) | set(
        LabResult.objects.values_list("case_id", flat=True)
    )
    cases = [pk for pk in Case.objects.values_list("pk", flat=True) if pk not in graded]
    Review.objects.bulk_create(
        Review(
            case_id=pk,
            label=rng.choice(["mpox", "chickenpox", "measles", "normal", "other"]),
            confidence="sure",
            disposition="test_only",
            reviewer=clinician,
            case_version=1,
        )
        for pk in cases
        if rng.random() < 0.7
    )
    LabResult.objects.bulk_create(
        LabResult(
            case_id=pk,
            pcr=rng.choice(LabResult.Pcr.values),
            collected_on=date(2026, 3, 1),
            sample_reference=f"S{pk}",
            recorded_by=clinician,
            case_version=2,
        )
        for pk in cases
        if rng.random() < 0.2
    )


def timed(client) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get("/api/v1/stats")  # warm-up
    timings = []
    for _ in range(5):
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            response = client.get("/api/v1/stats")
            timings.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"/api/v1/stats answered {response.status_code}")
    return statistics.median(timings), len(queries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=50_000)
    parser.add_argument("--baseline-cases", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mpox-stats-bench-") as tmp:
        setup_django(Path(tmp))
        from django.conf import settings
        from rest_framework.test import APIClient

        from diagnosis import api_auth, services

        settings.MPOX_API_RATE = "1000/min"
        rng = random.Random(6)
        nurse, _ = services.user_create_with_role(username="bench-nurse", role="nurse", password="x" * 20)
        clinician, _ = services.user_create_with_role(username="bench-clinician", role="clinician", password="x" * 20)
        _, token = api_auth.api_client_create("bench", ["stats"])
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        add_cases(args.baseline_cases, nurse=nurse, rng=rng)
        add_ground_truth(clinician=clinician, rng=rng)
        baseline, baseline_queries = timed(client)
        add_cases(args.cases - args.baseline_cases, nurse=nurse, rng=rng)
        add_ground_truth(clinician=clinician, rng=rng)
        full, queries = timed(client)
        graded = client.get("/api/v1/stats").json()["n"]
    result = {
        "cases": args.cases,
        "graded_photos": graded,
        "stats_ms": round(full, 1),
        "queries": queries,
        "baseline": {"cases": args.baseline_cases, "stats_ms": round(baseline, 1), "queries": baseline_queries},
        "ratio_to_baseline": round(full / baseline, 2),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
