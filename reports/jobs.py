"""Report and export jobs: requested in the browser, rendered by a worker, downloaded later.

The job row is committed before the broker hears of it; a worker claims it with a conditional
update and keeps a heartbeat while it renders; a job whose heartbeat stops (worker killed) is put
back in the queue by the sweep, or taken over at once by its own message delivered again
(reports/background.py has the timings). Files are written to `<id>.<attempt>.part` and renamed into place,
so a download is always a whole file. Every write of a worker to the job row names its attempt: a
worker that was only slow, not dead, and was taken over by another cannot overwrite the job's
state when it finishes.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone, translation

from cohort import access
from cohort.models import Patient
from reports import background
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
    ReportJob.Kind.ODM_XML: "xml",
}
MAX_ATTEMPTS = background.MAX_ATTEMPTS
# The Celery task that runs `job_run` (reports/tasks.py), woken by its name.
RUN_TASK = "reports.tasks.run_report_job"


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


def enqueue(job_id: int) -> bool:
    """Wake a worker for the job, best-effort: the row is queued, the sweep sends it again."""
    return background.wake(RUN_TASK, job_id)


def _data_version() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT CASE WHEN is_called THEN last_value END FROM reports_data_version")
        return cursor.fetchone()[0]


def _progress(job_id: int, attempt: int):
    def report(percent: int, message: str) -> None:
        ReportJob.objects.filter(pk=job_id, status=ReportJob.Status.RUNNING, attempts=attempt).update(
            progress=max(0, min(99, int(percent))), message=message[:200], heartbeat_at=timezone.now()
        )

    return report


def _render(job: ReportJob, path: Path, progress) -> None:
    if job.kind == ReportJob.Kind.COHORT_PDF:
        from reports.pdf import render_cohort_report

        render_cohort_report(job.scope, path, progress=progress, language=job.language)
    elif job.kind == ReportJob.Kind.CASEBOOK_PDF:
        from reports.pdf import render_casebook

        render_casebook(job.patient, path, progress=progress, language=job.language)
    else:
        export_write(job.kind, job.scope, path, progress=progress)


def export_write(kind: str, scope: str, path: Path, *, progress=None) -> None:
    """Write the export `kind` of a scope's patients to `path`: the job's render, and
    `manage.py export_dataset` (SPEC section 8: the same file by the same code)."""
    from reports.exports import write_export

    # The audit trail includes removed patients (their removal is in it); data exports do not.
    patients = access.patients_in_scope(scope, removed=kind == ReportJob.Kind.AUDIT_CSV)
    write_export(kind, path, patients=patients, progress=progress)


def job_run(job_id: int, *, claim: str | None = None) -> ReportJob | None:
    """Claim and render one job; None when another worker has it or it is finished. Safe to run twice.

    `claim` names the task message: delivered again after its worker died, it takes the job over
    (a new attempt) rather than waiting for the sweep."""
    claim = claim or uuid.uuid4().hex
    if not background.claim_job(
        ReportJob.objects.all(),
        job_id,
        claim=claim,
        queued=ReportJob.Status.QUEUED,
        running=ReportJob.Status.RUNNING,
        started_at=timezone.now(),
    ):
        return None
    job = ReportJob.objects.select_related("patient").get(pk=job_id)
    attempt = job.attempts
    for earlier in range(1, attempt):  # left by a worker that died mid-render
        part_path(job, earlier).unlink(missing_ok=True)
    mine = ReportJob.objects.filter(pk=job.pk, status=ReportJob.Status.RUNNING, attempts=attempt)
    partial = part_path(job, attempt)
    try:
        mine.update(data_version=_data_version())
        with background.heartbeat(lambda: mine.all()):
            _render(job, partial, _progress(job.pk, attempt))
        with partial.open("rb+") as fh:  # on disk before the rename makes it visible
            os.fsync(fh.fileno())
        if not mine.exists():  # taken over meanwhile (this worker's heartbeat had stopped)
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


def take_back_lost() -> list[int]:
    """Put back in the queue (failed after MAX_ATTEMPTS) the jobs whose heartbeat stopped: their
    worker died. Their partial file goes; a worker that was only stuck finds the job is not its own."""
    cutoff = background.stale_before()
    taken = []
    for job in ReportJob.objects.filter(status=ReportJob.Status.RUNNING, heartbeat_at__lt=cutoff):
        back = ReportJob.objects.filter(pk=job.pk, status=ReportJob.Status.RUNNING, heartbeat_at__lt=cutoff).update(
            status=ReportJob.Status.QUEUED if job.attempts < MAX_ATTEMPTS else ReportJob.Status.FAILED,
            message="worker lost; queued again",
        )
        if back:
            part_path(job).unlink(missing_ok=True)
            taken.append(job.pk)
    return taken


def sweep() -> int:
    """Take back jobs whose worker died and re-send jobs left queued (broker down when they were
    asked for, lost message). Run by beat every few seconds; returns the wake-ups sent."""
    take_back_lost()
    # Every queued job, whether its wake-up was lost or not: a duplicate finds nothing to claim.
    queued = ReportJob.objects.filter(status=ReportJob.Status.QUEUED)
    return sum(enqueue(job_id) for job_id in queued.values_list("pk", flat=True))


def job_file(job: ReportJob) -> Path | None:
    if job.status != ReportJob.Status.DONE or not job.file_name:
        return None
    path = job_dir() / job.file_name
    return path if path.exists() else None
