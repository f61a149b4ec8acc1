"""Benchmark: `manage.py seed_demo` at 10,000 and 100,000 patients, audit triggers active.

Run: .venv/bin/python bench/seed.py [--sizes 10000,100000]

Method: a throwaway embedded PostgreSQL server (its data directory is deleted at exit), migrated
from scratch; then seed_demo --patients 10000 (this run also creates the centres and the demo
accounts, so it includes their password hashes), then seed_demo --patients 100000 on top of it.
Each figure is the wall-clock time of the whole command, one transaction, audit events included,
with the CPU seconds beside it (from /proc, so comparable on a shared machine): the PostgreSQL
backend's, the command's process's (the 10,000 run hashes the ten demo accounts' passwords) and its
drawing process's.
Target (issue 14): 100,000 patients in under a minute on a 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cohort.settings")
os.environ.setdefault("DEBUG", "1")
os.environ.pop("DATABASE_URL", None)
os.environ["EMBEDDED_PG_DIR"] = tempfile.mkdtemp(prefix="bench-seed-pg-")
os.environ["EMBEDDED_PG_THROWAWAY"] = "1"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from cohort import models  # noqa: E402

AUDITED = (
    models.Patient,
    models.PriorBiologic,
    models.UstekinumabDose,
    models.Reinduction,
    models.Assessment,
    models.FollowUp,
    models.AdverseEvent,
)


def counts() -> tuple[int, int]:
    rows = sum(model.objects.count() if model is not models.Patient else model.all_objects.count() for model in AUDITED)
    events = sum(model.pgh_event_model.objects.count() for model in AUDITED)
    return rows, events


def backend_cpu() -> float:
    """CPU seconds (user + system) of this connection's PostgreSQL backend (same machine)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    with contextlib.redirect_stdout(io.StringIO()):
        call_command("migrate", verbosity=0)
    logins = Path(tempfile.mkdtemp(prefix="bench-seed-")) / "demo_logins.txt"
    print(f"seed_demo benchmark ({os.cpu_count()} CPUs, embedded PostgreSQL, audit triggers on)")
    for patients in (int(size) for size in args.sizes.split(",")):
        rows_before, events_before = counts()
        backend_before, own_before = backend_cpu(), os.times()
        started = time.perf_counter()
        call_command(
            "seed_demo",
            patients=patients,
            centres=4,
            seed=2021,
            logins_file=str(logins),
            stdout=io.StringIO(),
        )
        elapsed = time.perf_counter() - started
        backend, own = backend_cpu() - backend_before, os.times()
        python = own.user + own.system - own_before.user - own_before.system
        drawing = own.children_user + own.children_system - own_before.children_user - own_before.children_system
        rows, events = counts()
        rows, events = rows - rows_before, events - events_before
        print(
            f"{patients:>7,} patients: {elapsed:6.1f} s  ({rows} CRF rows, {events} audit events, "
            f"{rows / elapsed:,.0f} rows/s); CPU: backend {backend:.1f} s, command {python:.1f} s, "
            f"drawing process {drawing:.1f} s"
        )


if __name__ == "__main__":
    main()
