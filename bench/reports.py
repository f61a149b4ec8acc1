"""Benchmark: the cohort PDF at 1,000 and 10,000 patients, a casebook PDF, and the wide export
at 10,000 patients.

Run: .venv/bin/python bench/reports.py [--sizes 1000,10000]

Method: a throwaway embedded PostgreSQL server, migrated and seeded with seed_demo up to each size
(seeding not timed). Each figure is the wall-clock time of the same function a worker runs for
the job (reports.pdf.render_cohort_report with the outcomes computed from the current data,
reports.pdf.render_casebook, reports.exports.write_export), writing to a temporary file; best of
`--repeat` runs. SPEC target: cohort PDF of 10,000 patients under 10 s.
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
os.environ.pop("CELERY_BROKER_URL", None)
os.environ["EMBEDDED_PG_DIR"] = tempfile.mkdtemp(prefix="bench-reports-pg-")
os.environ["EMBEDDED_PG_THROWAWAY"] = "1"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from cohort.models import Patient  # noqa: E402
from reports.exports import write_export  # noqa: E402
from reports.pdf import render_casebook, render_cohort_report  # noqa: E402


def best_of(repeat: int, action) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with contextlib.redirect_stdout(io.StringIO()):
        call_command("migrate", verbosity=0)
    out = Path(tempfile.mkdtemp(prefix="bench-reports-out-"))
    logins = out / "demo_logins.txt"
    print(f"reports benchmark: {os.cpu_count()} CPUs, embedded PostgreSQL, best of {args.repeat}")
    for size in (int(size) for size in args.sizes.split(",")):
        missing = size - Patient.objects.count()
        if missing > 0:
            with contextlib.redirect_stdout(io.StringIO()):
                call_command("seed_demo", patients=missing, centres=8, seed=size, logins_file=str(logins))
        pdf = out / f"cohort-{size}.pdf"
        seconds = best_of(args.repeat, lambda pdf=pdf: render_cohort_report("all", pdf))
        print(f"{size:>7,} patients  cohort PDF (all centres)  {seconds:6.2f} s  {pdf.stat().st_size / 1024:,.0f} KiB")
        patient = Patient.objects.order_by("study_id").first()
        casebook = out / "casebook.pdf"
        seconds = best_of(args.repeat, lambda patient=patient, casebook=casebook: render_casebook(patient, casebook))
        print(f"{size:>7,} patients  casebook PDF ({patient.study_id})  {seconds:6.2f} s")
        for kind in ("wide_csv", "wide_xlsx", "wide_sav"):
            path = out / f"wide.{kind}"
            seconds = best_of(
                args.repeat, lambda kind=kind, path=path: write_export(kind, path, patients=Patient.objects.all())
            )
            print(f"{size:>7,} patients  export {kind:<10} {seconds:6.2f} s  {path.stat().st_size / 1024:,.0f} KiB")


if __name__ == "__main__":
    main()
