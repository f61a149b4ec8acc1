"""Celery tasks: thin interfaces that take ids or scope codes and call a service (STYLE).

The services wake these by name (reports/background.py), so this module imports them and nothing
of reports imports it but the app's start-up, which registers the tasks in every process."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError, connection

from cohort import data_checks as checks
from cohort import monitoring
from cohort.models import Patient
from reports import imports as import_jobs
from reports import jobs, services

# Every task that changes the study's derived state: acknowledged only when done, so a worker that
# dies mid-task leaves its message to another; retried when the database drops the connection.
DURABLE = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
}


@shared_task(ignore_result=False)
def database_health() -> dict:
    """What the worker sees of the study database: proves it reads committed rows from PostgreSQL."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version')")
        (server_version,) = cursor.fetchone()
    return {"patients": Patient.objects.count(), "server_version": server_version}


@shared_task(name=services.RECOMPUTE_TASK, bind=True, **DURABLE, max_retries=5, soft_time_limit=600)
def recompute_outcomes(self, scope: str) -> int | None:
    """Recompute one scope's outcomes; returns the snapshot id, or None when there was nothing to do.
    The task id names the claim: delivered again after its worker died, it takes its claim back."""
    try:
        snapshot = services.recompute(scope, claim=self.request.id)
    except services.StillChanging:
        # Changes are still coming in: look again once the burst is over.
        raise self.retry(countdown=services.DEBOUNCE.total_seconds(), max_retries=None) from None
    return snapshot.pk if snapshot else None


@shared_task
def sweep_recompute_requests() -> int:
    """Periodic (beat, every 5 s): take back claims of lost workers, re-send waiting requests."""
    return services.sweep()


@shared_task(
    name=jobs.RUN_TASK,
    bind=True,
    **{**DURABLE, "autoretry_for": (*DURABLE["autoretry_for"], OSError)},  # and a full disk
    max_retries=3,
    soft_time_limit=1800,
)
def run_report_job(self, job_id: int) -> str | None:
    """Render one report or export job; returns the file name, or None if nothing was to be done.
    The task id names the claim: delivered again after its worker died, it takes its claim back."""
    job = jobs.job_run(job_id, claim=self.request.id)
    return job.file_name if job else None


@shared_task
def sweep_report_jobs() -> int:
    """Periodic (beat, every 5 s): take back jobs of workers that died mid-render, re-send queued
    jobs; the same for the import previews and applies."""
    return jobs.sweep() + import_jobs.sweep()


@shared_task(name=import_jobs.RUN_TASK, bind=True, **DURABLE, max_retries=3, soft_time_limit=1800)
def run_import_preview(self, job_id: int) -> str | None:
    """Compute one uploaded import's preview (reports.imports); safe to run twice."""
    job = import_jobs.preview_run(job_id, claim=self.request.id)
    return job.status if job else None


@shared_task(name=import_jobs.APPLY_TASK, bind=True, **DURABLE, max_retries=3, soft_time_limit=3600)
def run_import_apply(self, job_id: int) -> str | None:
    """Write one previewed import (reports.imports.apply_run); at most once, safe to deliver twice."""
    job = import_jobs.apply_run(job_id, claim=self.request.id)
    return job.status if job else None


@shared_task(name=services.DATA_CHECKS_TASK, **DURABLE, max_retries=3, soft_time_limit=1800)
def data_checks(patient_ids: list[int] | None = None) -> str:
    """The automatic data queries (SPEC section 10) of these patients, or (None) of every patient:
    hourly by beat, and after a save for the patient saved. Safe to run twice or at once. The hourly
    run also folds the centres' CRF row tallies (cohort.monitoring.fold_tallies)."""
    summary = checks.run(patients=patient_ids)
    if patient_ids is None:
        monitoring.fold_tallies()
    return str(summary)


@shared_task(name=services.REQUESTED_CHECKS_TASK, **DURABLE, max_retries=3, soft_time_limit=1800)
def requested_data_checks() -> str:
    """The automatic data queries (SPEC section 10) of the patients whose saves requested them
    (cohort.models.DataCheckRequest), woken after those saves commit and by the sweep. Safe to run
    twice or at once: a patient checked is a request gone."""
    return str(checks.run_requested())
