"""Benchmark: outcome recompute (load + compute) at 1,000 / 10,000 / 100,000 patients.

Run: .venv/bin/python bench/outcomes.py [--sizes 1000,10000,100000] [--repeat 3]

Method: a throwaway embedded PostgreSQL server, migrated from scratch, seeded with seed_demo up to
each size (the seeding is not timed here; see bench/seed.py), then VACUUM ANALYZE as the tables'
owner (what autovacuum does to a database after bulk inserts; the planner and index-only scans
depend on it). For each size
the scope 'all' is loaded and computed by reports.services.compute_scope (the worker's code: loader,
SQL queries counted, then the computation) `--repeat` times inside one REPEATABLE READ transaction
like the worker's; the best and the median wall-clock seconds of each part are printed. Then the
same for one centre's scope, the largest of the 8 (a save there recomputes it and 'all'). Target
(issue 14): 100,000 patients under 1.0 s in total, with a query count that does not grow.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cohort.settings")
os.environ.setdefault("DEBUG", "1")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("CELERY_BROKER_URL", None)
os.environ["EMBEDDED_PG_DIR"] = tempfile.mkdtemp(prefix="bench-outcomes-pg-")
os.environ["EMBEDDED_PG_THROWAWAY"] = "1"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from harness import vacuum_analyze  # noqa: E402

from cohort.models import Patient  # noqa: E402
from reports.services import compute_scope, data_snapshot  # noqa: E402


def measure(scope: str, repeat: int) -> tuple[list[float], list[float], int, int]:
    loads, computes = [], []
    queries = 0
    n = 0
    for _ in range(repeat):
        with data_snapshot(), CaptureQueriesContext(connection) as captured:
            result, load_seconds, compute_seconds = compute_scope(scope)  # what the worker runs
        loads.append(load_seconds)
        computes.append(compute_seconds)
        queries = len(captured.captured_queries)
        n = result["n_patients"]
    return loads, computes, queries, n


def largest_centre() -> tuple[str, int]:
    row = Patient.objects.values("centre__code").annotate(n=Count("pk")).order_by("-n", "centre__code").first()
    return row["centre__code"], row["n"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with contextlib.redirect_stdout(io.StringIO()):
        call_command("migrate", verbosity=0)
    logins = Path(tempfile.mkdtemp(prefix="bench-outcomes-")) / "demo_logins.txt"
    print(f"outcomes benchmark: {os.cpu_count()} CPUs, embedded PostgreSQL, repeat {args.repeat}")
    print(
        f"{'patients':>9} {'included':>9} {'queries':>8} {'load s':>14} {'compute s':>14} {'total s':>8}"
        f"   {'centre (patients)':>18} {'centre total s':>14}"
    )
    for size in sizes:
        missing = size - Patient.objects.count()
        if missing > 0:
            with contextlib.redirect_stdout(io.StringIO()):
                call_command("seed_demo", patients=missing, centres=8, seed=size, logins_file=str(logins))
            vacuum_analyze()
        loads, computes, queries, included = measure("all", args.repeat)
        best = min(loads) + min(computes)
        centre, centre_patients = largest_centre()
        centre_loads, centre_computes, _queries, _n = measure(centre, args.repeat)
        centre_best = min(centre_loads) + min(centre_computes)
        print(
            f"{size:>9,} {included:>9,} {queries:>8} "
            f"{min(loads):>6.2f} (med {statistics.median(loads):.2f}) "
            f"{min(computes):>6.2f} (med {statistics.median(computes):.2f}) {best:>8.2f}"
            f"   {f'{centre} ({centre_patients:,})':>18} {centre_best:>14.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
