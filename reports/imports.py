"""Import in the browser with a preview (issue 15 item 4).

A nurse (her centres' patients) or a coordinator (any centre) uploads the form files or a zip of
them. The files go to MEDIA_ROOT/imports/<job id>/, the volume the web and worker containers share,
and a worker (in-process without a broker, as the export jobs) computes the preview with the
importer's own write step, recording instead of writing (cohort.importer.import_rows). Apply is a
job too (`ready` -> `apply_queued` -> `applying` -> `applied`): a worker writes through the same
importer with the user and the reason in the audit trail, and compares what it wrote with the
preview shown: any difference (the data changed meanwhile) rolls it all back and shows the new
preview instead. A job is applied at most once (its rows and `applied` commit together, under the
worker's claim).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import uuid
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone, translation

from cohort import access, crf, csvformat, display
from cohort.audit import audit_context
from cohort.importer import ImportFailed, import_cohort
from reports import background
from reports.models import ImportJob

log = logging.getLogger(__name__)

RUN_TASK = "reports.tasks.run_import_preview"
APPLY_TASK = "reports.tasks.run_import_apply"
SOURCE = "web_import"  # the audit context's source of an applied import
MAX_ATTEMPTS = background.MAX_ATTEMPTS


class StalePreview(Exception):
    """What apply would write is not the preview shown: the data changed since."""


class TakenOver(Exception):
    """The apply's claim went to another worker (a lost heartbeat): roll back, it writes instead."""


# --- who ---------------------------------------------------------------------------------------


def importable_centre_ids(user: User) -> set[int] | None:
    """The centres whose patients the user may import: a coordinator any (None), a nurse hers,
    anyone else none (an empty set: the page answers 403)."""
    if access.is_coordinator(user):
        return None
    return access.writable_centre_ids(user)


def may_import(user: User) -> bool:
    return importable_centre_ids(user) != set()


def jobs_for_user(user: User):
    """Only one's own uploads: another user's job answers 404, as one that does not exist."""
    return ImportJob.objects.filter(uploaded_by=user)


# --- upload ------------------------------------------------------------------------------------


def job_dir(job: ImportJob) -> Path:
    return Path(settings.MEDIA_ROOT) / "imports" / str(job.pk)


def import_upload(*, by: User, files: dict[str, bytes]) -> ImportJob:
    """Store the files where the worker reads them and queue the preview. The row is committed
    before the worker is told (and the sweep tells it again if the wake-up is lost). The worker
    writes the errors in the uploader's interface language, as reports.jobs' PDFs are written."""
    with transaction.atomic():
        centres = importable_centre_ids(by)
        job = ImportJob.objects.create(
            uploaded_by=by,
            centres=None if centres is None else sorted(centres),
            files=sorted(files),
            language=translation.get_language() or "en",
        )
        directory = job_dir(job)
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (directory / name).write_bytes(content)
        transaction.on_commit(lambda: enqueue(job.pk))
    return job


def enqueue(job_id: int) -> bool:
    return background.wake(RUN_TASK, job_id)


# --- preview (the worker) ----------------------------------------------------------------------


def preview_run(job_id: int, *, claim: str | None = None) -> ImportJob | None:
    """Claim a queued job and compute its preview; None when another worker has it or it is done.
    Safe to run twice. `claim` names the task message (see reports.jobs.job_run)."""
    claim = claim or uuid.uuid4().hex
    if not background.claim_job(
        ImportJob.objects.all(),
        job_id,
        claim=claim,
        queued=ImportJob.Status.QUEUED,
        running=ImportJob.Status.RUNNING,
    ):
        return None
    job = ImportJob.objects.select_related("uploaded_by").get(pk=job_id)
    mine = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING, attempts=job.attempts)

    def progress(percent: int, message: str) -> None:
        mine.update(progress=max(0, min(99, int(percent))), message=message[:200], heartbeat_at=timezone.now())

    try:
        with background.heartbeat(lambda: mine.all()):
            preview, errors = _preview(job, progress)
    except Exception as error:
        mine.update(
            status=ImportJob.Status.FAILED, error=f"{type(error).__name__}: {error}"[:2000], finished_at=timezone.now()
        )
        log.exception("import preview %s failed", job.pk)
        return ImportJob.objects.get(pk=job.pk)
    status = ImportJob.Status.INVALID if errors else ImportJob.Status.READY
    stored = mine.update(
        status=status, preview=preview, errors=errors, progress=100, message="", finished_at=timezone.now()
    )
    if stored and errors:  # never to be applied: the files go (the errors stay on the job)
        shutil.rmtree(job_dir(job), ignore_errors=True)
    return ImportJob.objects.get(pk=job.pk)


def _centres(job: ImportJob) -> set[int] | None:
    return None if job.centres is None else set(job.centres)


def _preview(job: ImportJob, progress=None) -> tuple[dict | None, list[str]]:
    """The change set of the job's files, or their errors in the uploader's language (as reports.pdf
    renders a job's PDF in its requester's); the change set holds values, in no language."""
    try:
        with translation.override(job.language or settings.LANGUAGE_CODE):
            summary = import_cohort(
                job_dir(job),
                user=job.uploaded_by,
                centres=_centres(job),
                source=SOURCE,
                write=False,
                record=True,
                progress=progress,
            )
    except ImportFailed as failure:
        return None, failure.errors
    return summary.as_json(), []


def sweep() -> int:
    """Re-send previews and applies left queued and take back those whose worker died (beat, with
    the report jobs)."""
    cutoff = background.stale_before()
    woken = 0
    for running, queued, task in (
        (ImportJob.Status.RUNNING, ImportJob.Status.QUEUED, RUN_TASK),
        (ImportJob.Status.APPLYING, ImportJob.Status.APPLY_QUEUED, APPLY_TASK),
    ):
        ImportJob.objects.filter(status=running, heartbeat_at__lt=cutoff, attempts__lt=MAX_ATTEMPTS).update(
            status=queued, message=""
        )
        ImportJob.objects.filter(status=running, heartbeat_at__lt=cutoff).update(
            status=ImportJob.Status.FAILED, error="worker lost during every attempt", finished_at=timezone.now()
        )
        waiting = ImportJob.objects.filter(status=queued).values_list("pk", flat=True)
        woken += sum(background.wake(task, pk) for pk in waiting)
    expire()
    return woken


# Uploads waiting for a decision, whose files are on the media volume (not queued or being applied).
EXPIRES = (ImportJob.Status.READY, ImportJob.Status.FAILED, ImportJob.Status.QUEUED, ImportJob.Status.RUNNING)


def expire() -> int:
    """Delete the files of uploads not applied within IMPORT_UPLOAD_EXPIRY_HOURS (the sweep); the
    job stays, `expired`, so its page says so. An apply queued or running is left alone; one queued
    at the same moment wins or loses by the conditional update."""
    cutoff = timezone.now() - dt.timedelta(hours=settings.IMPORT_UPLOAD_EXPIRY_HOURS)
    expired = 0
    for job in ImportJob.objects.filter(status__in=EXPIRES, uploaded_at__lt=cutoff).only("pk"):
        if ImportJob.objects.filter(pk=job.pk, status__in=EXPIRES).update(
            status=ImportJob.Status.EXPIRED, finished_at=timezone.now(), progress=0, message="", stale=False
        ):
            shutil.rmtree(job_dir(job), ignore_errors=True)
            expired += 1
    return expired


# --- apply -------------------------------------------------------------------------------------


def import_apply(job: ImportJob, *, by: User, reason: str) -> bool:
    """Queue the previewed import for a worker to write (a large one outlives a web request), with
    `by` and `reason` for the audit trail. True when queued; False when the job was not ready
    (applied or queued already: a double click, the back button). The row says so before the
    worker is told; the sweep tells it again if the wake-up is lost."""
    with transaction.atomic():
        queued = ImportJob.objects.filter(pk=job.pk, uploaded_by=by, status=ImportJob.Status.READY).update(
            status=ImportJob.Status.APPLY_QUEUED,
            reason=reason,
            stale=False,
            progress=0,
            message="",
            attempts=0,
            claimed_by="",
            error="",
        )
        if queued:
            transaction.on_commit(lambda: background.wake(APPLY_TASK, job.pk))
    return bool(queued)


def apply_run(job_id: int, *, claim: str | None = None) -> ImportJob | None:
    """Claim a queued apply and write it, all or nothing, as its uploader with the job's reason in
    the audit trail; None when another worker has it or it is done. Applied at most once: the
    import's rows and the job's `applied` commit in one transaction, and only while this claim
    holds (a worker taken over for a lost heartbeat rolls back). What would be written is compared
    with the preview shown: any difference (the data changed since) writes nothing and makes the
    job the new preview (`stale`), for a new decision."""
    claim = claim or uuid.uuid4().hex
    if not background.claim_job(
        ImportJob.objects.all(),
        job_id,
        claim=claim,
        queued=ImportJob.Status.APPLY_QUEUED,
        running=ImportJob.Status.APPLYING,
    ):
        return None
    job = ImportJob.objects.select_related("uploaded_by").get(pk=job_id)
    by = job.uploaded_by
    mine = ImportJob.objects.filter(
        pk=job.pk, status=ImportJob.Status.APPLYING, claimed_by=claim, attempts=job.attempts
    )
    # The import writes inside a transaction: its progress goes out with the heartbeat, from the
    # heartbeat's own connection (this one's writes are not seen before the commit).
    state = {"progress": 0, "message": ""}

    def progress(percent: int, message: str) -> None:
        state.update(progress=max(0, min(99, int(percent))), message=message[:200])

    try:
        with background.heartbeat(lambda: mine.all(), fields=lambda: dict(state)), transaction.atomic():
            with audit_context(user=by, reason=job.reason, source=SOURCE, own=True):
                summary = import_cohort(
                    job_dir(job),
                    user=by,
                    centres=importable_centre_ids(by),
                    source=SOURCE,
                    record=True,
                    progress=progress,
                )
            if summary.as_json() != job.preview:
                raise StalePreview
            if not mine.update(status=ImportJob.Status.APPLIED, applied_at=timezone.now(), progress=100, message=""):
                raise TakenOver
    except TakenOver:
        log.warning("import apply %s: claim taken over; rolled back", job.pk)
        return None
    except (StalePreview, ImportFailed):
        # Rolled back. Show what an apply would now write (or why it cannot), for a new decision,
        # with the centres the user may import now (the apply's).
        centres = importable_centre_ids(by)
        job.centres = None if centres is None else sorted(centres)
        preview, errors = _preview(job)
        status = ImportJob.Status.INVALID if errors else ImportJob.Status.READY
        mine.update(
            status=status,
            preview=preview,
            errors=errors,
            centres=job.centres,
            stale=True,
            progress=100,
            message="",
            finished_at=timezone.now(),
        )
        if errors:
            shutil.rmtree(job_dir(job), ignore_errors=True)
        return ImportJob.objects.get(pk=job.pk)
    except Exception as error:
        mine.update(
            status=ImportJob.Status.FAILED, error=f"{type(error).__name__}: {error}"[:2000], finished_at=timezone.now()
        )
        log.exception("import apply %s failed", job.pk)
        return ImportJob.objects.get(pk=job.pk)
    shutil.rmtree(job_dir(job), ignore_errors=True)  # written: the files are in the database now
    return ImportJob.objects.get(pk=job.pk)


# --- display -----------------------------------------------------------------------------------


def _field(form: str, variable: str):
    model = crf.FILES[form].model
    return model._meta.get_field(csvformat.field_name(next(v for v in crf.FILES[form].variables if v.name == variable)))


def _shown(field, text: str) -> str:
    """A value of the import files as the forms show it in the user's language, a code with its label."""
    if text == "":
        return display.MISSING
    if field.choices:
        label = dict(field.flatchoices).get(text)
        return f"{label} ({text})" if label is not None and str(label) != text else text
    value: object = text
    if field.get_internal_type() == "DateField":
        try:
            value = dt.date.fromisoformat(text)
        except ValueError:
            return text
    elif display.is_number(field):
        try:
            value = Decimal(text) if field.get_internal_type() == "DecimalField" else int(text)
        except (InvalidOperation, ValueError):
            return text
    return display.value_text(field, value)


def error_lines(errors: list[str]) -> list[dict[str, str]]:
    """The errors as the import page lists them: each line as the worker wrote it (`file:row:
    variable: message`), and the label of the variable in the user's language when the line names
    one of a form file's variables (a nurse reads "Geboortejaar", not only birth_year)."""
    lines = []
    for error in errors:
        parts = csvformat.error_parts(error)
        form, variable = str(parts["file"]).removesuffix(".csv"), str(parts["variable"])
        label = ""
        if form in crf.FILES and any(v.name == variable for v in crf.FILES[form].variables):
            label = str(_field(form, variable).verbose_name)
        lines.append({"text": error, "label": "" if label == variable else label})
    return lines


def preview_context(preview: dict) -> dict:
    """The preview as the page shows it: counts per form, and per patient each row's change with
    the variables' labels (the data dictionary's, in the user's language) and values as the forms
    show them."""
    counts = preview["counts"]
    totals = [
        {"form": crf.FILES[form].label, **{bucket: counts[bucket].get(form, 0) for bucket in counts}}
        for form in crf.FILES
        if any(counts[bucket].get(form) for bucket in counts)
    ]
    patients = []
    for patient in preview["patients"]:
        rows = []
        for row in patient["rows"]:
            form = row["form"]
            title = (
                crf.BY_KEY[row["row"]].title
                if form == "assessments" and row["row"] in crf.BY_KEY
                else crf.FILES[form].label
            )
            fields = []
            for variable, old, new in row["fields"]:
                field = _field(form, variable)
                fields.append(
                    {
                        "variable": variable,
                        "label": field.verbose_name,
                        "old": _shown(field, old),
                        "new": _shown(field, new),
                    }
                )
            which = "" if form == "assessments" else row["row"]
            rows.append({"title": title, "which": which, "action": row["action"], "fields": fields})
        patients.append({**patient, "rows": rows})
    return {
        "totals": totals,
        "patients": patients,
        "created": sum(1 for p in preview["patients"] if p["new"]),
        "changed": sum(1 for p in preview["patients"] if not p["new"]),
        "changes": sum(sum(counts[b].values()) for b in ("created", "updated", "deleted")),
    }
