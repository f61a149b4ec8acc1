"""Report and export jobs: requested in the browser, rendered by a worker, downloaded later.

The job row is committed before the broker hears of it; a worker claims it with a conditional
update and keeps a heartbeat while it renders; a job whose heartbeat stops (worker killed) is put
back in the queue by the sweep. Files are written to `<id>.<attempt>.part` and renamed into place,
so a download is always a whole file. Every write of a worker to the job row names its attempt: a
worker that was only slow, not dead, and was taken over by another cannot overwrite the job's
state when it finishes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone, translation

from cohort.models import Patient
from reports.models import ReportJob

log = logging.getLogger(__name__)

EXTENSIONS = {
    ReportJob.Kind.COHORT_PDF: "pdf",
    ReportJob.Kind.CASEBOOK_PDF: "pdf",
    ReportJob.Kind.IMPORT_CSV_ZIP: "zip",
    ReportJob.Kind.WIDE_CSV: "csv",
    ReportJob.Kind.WIDE_XLSX: "xlsx",
    ReportJob.Kind.WIDE_SAV: "sav",
    ReportJob.Kind.WIDE_DTA: "dta",
    ReportJob.Kind.DICTIONARY_CSV: "csv",
    ReportJob.Kind.AUDIT_CSV: "csv",
}
MAX_ATTEMPTS = 3


def job_dir() -> Path:
    path = Path(settings.MEDIA_ROOT) / "reports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def part_path(job: ReportJob, attempt: int | None = None) -> Path:
    return job_dir() / f"{job.pk}.{job.attempts if attempt is None else attempt}.part"


def final_name(job: ReportJob) -> str:
    subject = job.patient.study_id if job.patient_id else job.scope
    stamp = timezone.localtime(job.requested_at).strftime("%Y%m%d-%H%M")
    return f"{job.pk}-{job.kind}-{subject}-{stamp}.{EXTENSIONS[job.kind]}"


def job_request(*, kind: str, scope: str, by: User, patient: Patient | None = None) -> ReportJob:
    """Queue a job; the worker is told once the row is committed (and by the sweep otherwise)."""
    with transaction.atomic():
        job = ReportJob.objects.create(
            kind=kind, scope=scope, patient=patient, requested_by=by, language=translation.get_language() or "en"
        )
        transaction.on_commit(lambda: enqueue(job.pk))
    return job


def job_retry(job: ReportJob) -> bool:
    updated = ReportJob.objects.filter(pk=job.pk, status=ReportJob.Status.FAILED).update(
        status=ReportJob.Status.QUEUED, progress=0, message="", error="", attempts=0
    )
    if updated:
        transaction.on_commit(lambda: enqueue(job.pk))
    return bool(updated)


def enqueue(job_id: int) -> None:
    from reports.tasks import run_report_job

    try:
        run_report_job.delay(job_id)
    except Exception:  # broker down: the row is queued, the sweep sends it again
        log.warning("could not enqueue report job %s; the sweep will retry", job_id, exc_info=True)


def _data_version() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT CASE WHEN is_called THEN last_value END FROM reports_data_version")
        return cursor.fetchone()[0]


def _progress(job_id: int, attempt: int):
    delay = float(getattr(settings, "REPORT_JOB_STAGE_DELAY", 0))

    def report(percent: int, message: str) -> None:
        ReportJob.objects.filter(pk=job_id, status=ReportJob.Status.RUNNING, attempts=attempt).update(
            progress=max(0, min(99, int(percent))), message=message[:200], heartbeat_at=timezone.now()
        )
        if delay:  # only the crash test sets this, to have time to kill the worker mid-render
            time.sleep(delay)

    return report


def _render(job: ReportJob, path: Path, progress) -> None:
    if job.kind == ReportJob.Kind.COHORT_PDF:
        from reports.pdf import render_cohort_report

        render_cohort_report(job.scope, path, progress=progress, language=job.language)
    elif job.kind == ReportJob.Kind.CASEBOOK_PDF:
        from reports.pdf import render_casebook

        render_casebook(job.patient, path, progress=progress, language=job.language)
    else:
        from reports.exports import write_export

        # The audit trail includes removed patients (their removal is in it); data exports do not.
        patients = (Patient.all_objects if job.kind == ReportJob.Kind.AUDIT_CSV else Patient.objects).all()
        if job.scope != "all":
            patients = patients.filter(centre__code=job.scope)
        write_export(job.kind, path, patients=patients, progress=progress)


def job_run(job_id: int) -> ReportJob | None:
    """Claim and render one job; None when another worker has it or it is finished. Safe to run twice."""
    now = timezone.now()
    claimed = ReportJob.objects.filter(pk=job_id, status=ReportJob.Status.QUEUED).update(
        status=ReportJob.Status.RUNNING, started_at=now, heartbeat_at=now, progress=0, attempts=F("attempts") + 1
    )
    if not claimed:
        return None
    job = ReportJob.objects.select_related("patient").get(pk=job_id)
    attempt = job.attempts
    mine = ReportJob.objects.filter(pk=job.pk, status=ReportJob.Status.RUNNING, attempts=attempt)
    partial = part_path(job, attempt)
    try:
        mine.update(data_version=_data_version())
        _render(job, partial, _progress(job.pk, attempt))
        with partial.open("rb+") as fh:  # on disk before the rename makes it visible
            os.fsync(fh.fileno())
        if not mine.exists():  # taken over meanwhile (this worker had stopped reporting progress)
            partial.unlink(missing_ok=True)
            return None
        final = job_dir() / final_name(job)
        os.replace(partial, final)
    except Exception as error:
        partial.unlink(missing_ok=True)
        status = ReportJob.Status.QUEUED if attempt < MAX_ATTEMPTS and _transient(error) else ReportJob.Status.FAILED
        failed = mine.update(
            status=status, error=f"{type(error).__name__}: {error}"[:2000], message="", finished_at=timezone.now()
        )
        if not failed:  # another attempt has the job: its outcome, not this one's
            return None
        if status == ReportJob.Status.QUEUED:
            raise
        log.exception("report job %s failed", job.pk)
        return ReportJob.objects.get(pk=job.pk)
    done = mine.update(
        status=ReportJob.Status.DONE,
        progress=100,
        message="",
        file_name=final.name,
        file_size=final.stat().st_size,
        finished_at=timezone.now(),
    )
    return ReportJob.objects.get(pk=job.pk) if done else None


def _transient(error: Exception) -> bool:
    from django.db import InterfaceError, OperationalError

    return isinstance(error, (OperationalError, InterfaceError, OSError))


def stale_after() -> dt.timedelta:
    return dt.timedelta(seconds=float(getattr(settings, "REPORT_JOB_STALE_SECONDS", 120)))


def sweep() -> int:
    """Put back jobs whose worker died (no heartbeat) and re-send queued jobs. Run by beat."""
    cutoff = timezone.now() - stale_after()
    for job in ReportJob.objects.filter(status=ReportJob.Status.RUNNING, heartbeat_at__lt=cutoff):
        back = ReportJob.objects.filter(pk=job.pk, status=ReportJob.Status.RUNNING, heartbeat_at__lt=cutoff).update(
            status=ReportJob.Status.QUEUED if job.attempts < MAX_ATTEMPTS else ReportJob.Status.FAILED,
            message="worker lost; queued again",
        )
        if back:
            part_path(job).unlink(missing_ok=True)
    queued = list(ReportJob.objects.filter(status=ReportJob.Status.QUEUED).values_list("pk", flat=True))
    for job_id in queued:
        enqueue(job_id)
    return len(queued)


def job_file(job: ReportJob) -> Path | None:
    if job.status != ReportJob.Status.DONE or not job.file_name:
        return None
    path = job_dir() / job.file_name
    return path if path.exists() else None
