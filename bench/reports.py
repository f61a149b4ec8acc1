"""Benchmark: every export kind, the cohort PDF and a casebook PDF at 10,000 and 100,000 patients,
with each job's wall-clock time, file size and peak memory.

Run: .venv/bin/python bench/reports.py [--sizes 10000,100000] [--repeat 1] [--only KIND,...]

Method: a throwaway embedded PostgreSQL server, migrated and seeded with seed_demo up to each size
(8 centres; seeding not timed), then VACUUM ANALYZE as the tables' owner. Each job is the function a worker runs for it
(reports.exports.write_export for the 7 export kinds, reports.pdf.render_cohort_report with the
outcomes computed from the current data, reports.pdf.render_casebook), writing to a temporary file,
and runs in a fresh Python subprocess that joins the same server: so its peak RSS
(VmHWM) is its own and not a high-water mark left by an earlier job. The RSS of that
process after Django's set-up and before the job is printed beside it ("base"). Best of `--repeat`
runs (each in its own process). Targets (issue 14): at 100,000 patients the wide CSV under 10 s,
the XLSX under 60 s, the cohort PDF under 3 s, every export with memory bounded by streaming.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
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
if "BENCH_CHILD" not in os.environ:
    os.environ["EMBEDDED_PG_DIR"] = tempfile.mkdtemp(prefix="bench-reports-pg-")
    os.environ["EMBEDDED_PG_THROWAWAY"] = "1"

import django  # noqa: E402

django.setup()

import harness  # noqa: E402
from django.core.management import call_command  # noqa: E402

from cohort.models import Patient  # noqa: E402
from reports.exports import EXPORT_KINDS  # noqa: E402

JOBS = ("cohort_pdf", "casebook_pdf", *EXPORT_KINDS)


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux VmHWM). Not getrusage's ru_maxrss: that keeps
    the high-water mark of the parent it was forked from, which had seeded the database."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def warm_up() -> None:
    """What a worker process pays once, not per job: the writers' imports and WeasyPrint's fonts."""
    import pandas  # noqa: F401
    import pyreadstat  # noqa: F401
    import weasyprint
    import xlsxwriter  # noqa: F401

    weasyprint.HTML(string="<p>warm-up</p>").write_pdf()


def run_job(job: str, out: Path) -> dict:
    """In the child process: one job, timed, with the process's memory before and at its peak."""
    from reports.exports import write_export
    from reports.pdf import render_casebook, render_cohort_report

    warm_up()
    patient = Patient.objects.order_by("study_id").first()
    base = peak_rss_mib()
    started = time.perf_counter()
    if job == "cohort_pdf":
        render_cohort_report("all", out)
    elif job == "casebook_pdf":
        render_casebook(patient, out)
    else:
        write_export(job, out, patients=Patient.objects.all())
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": out.stat().st_size, "base_mib": base, "peak_mib": peak_rss_mib()}


def in_child(job: str, out: Path) -> dict | None:
    """The job's figures from a fresh process; None (its error printed) if it failed, so one
    failing job does not cost the others' figures and the seeding."""
    env = os.environ | {"BENCH_CHILD": "1"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", job, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(f"{job} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def size_text(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 1024:,.0f} KiB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", default=",".join(JOBS), help="comma-separated jobs: " + ", ".join(JOBS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_job(args.child, Path(args.out))))
        return
    jobs = [job for job in args.only.split(",") if job]
    unknown = set(jobs) - set(JOBS)
    if unknown:
        parser.error(f"unknown jobs: {', '.join(sorted(unknown))}")
    with contextlib.redirect_stdout(io.StringIO()):
        call_command("migrate", verbosity=0)
    out = Path(tempfile.mkdtemp(prefix="bench-reports-out-"))
    logins = out / "demo_logins.txt"
    print(f"reports benchmark: {os.cpu_count()} CPUs, embedded PostgreSQL, best of {args.repeat}, one process per run")
    print(f"{'patients':>9}  {'job':<15} {'seconds':>8}  {'file':>10}  {'peak RSS':>9}  (base)")
    for size in (int(size) for size in args.sizes.split(",")):
        missing = size - Patient.objects.count()
        if missing > 0:
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                call_command("seed_demo", patients=missing, centres=8, seed=size, logins_file=str(logins))
            harness.vacuum_analyze()
            print(f"{size:>9,}  (seeded {missing:,} patients in {time.perf_counter() - started:.1f} s, not counted)")
        for job in jobs:
            suffix = ".pdf" if job.endswith("_pdf") else EXPORT_KINDS[job][0]
            path = out / f"{job}-{size}{suffix}"
            runs = [run for run in (in_child(job, path) for _ in range(args.repeat)) if run]
            if not runs:
                continue
            best = min(runs, key=lambda run: run["seconds"])
            print(
                f"{size:>9,}  {job:<15} {best['seconds']:8.2f}  {size_text(best['bytes']):>10}  "
                f"{max(r['peak_mib'] for r in runs):6.0f} MiB  ({best['base_mib']:.0f} MiB)",
                flush=True,
            )
            path.unlink()


if __name__ == "__main__":
    main()
