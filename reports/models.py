"""Outcome snapshots and the durable requests that ask for them (SPEC section 6)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from cohort.models import REASON_MAX_LENGTH


class RecomputeRequest(models.Model):
    """A scope whose outcomes are out of date. Written by a database trigger in the same
    transaction as the change to study data (whatever the write path); the broker message that
    wakes a worker is only a hint, and a periodic sweep re-sends it for requests left waiting."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    scope = models.CharField(max_length=16, help_text="'all' or a centre code")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    # The latest change this request covers (a database sequence advanced by every change).
    data_version = models.BigIntegerField()
    requested_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    # Refreshed by the claiming worker every few seconds; a claim whose heartbeat stopped is taken
    # back by the sweep (reports/background.py).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The task message holding the claim: the same message delivered again (its worker died) takes
    # the claim over at once. The trigger leaves it to the database default.
    claimed_by = models.CharField(max_length=64, blank=True, default="", db_default="")
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-requested_at"]
        # Appended by every write statement (never updated by it, so writers never wait for each
        # other); a worker takes all of a scope's pending rows at once: bursts coalesce there.
        indexes = [
            models.Index(fields=["status", "requested_at"], name="recompute_status_idx"),
            models.Index(fields=["scope", "status"], name="recompute_scope_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} v{self.data_version} {self.status}"


class OutcomeSnapshot(models.Model):
    """The outcomes of one scope as computed from the data at `data_version`."""

    scope = models.CharField(max_length=16)
    computed_at = models.DateTimeField()
    data_version = models.BigIntegerField()
    algorithm_version = models.CharField(max_length=16)
    result = models.JSONField()
    load_seconds = models.FloatField(default=0)
    compute_seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["-computed_at"]
        get_latest_by = "computed_at"
        indexes = [models.Index(fields=["scope", "-data_version", "-computed_at"], name="snapshot_scope_newest_idx")]

    def __str__(self) -> str:
        return f"{self.scope} v{self.data_version} at {self.computed_at:%Y-%m-%d %H:%M}"


class ReportJob(models.Model):
    """A PDF report or data export, rendered by a worker. The row is written before the broker is
    told, so a job is never lost; the file is written under a temporary name and moved into place,
    so it exists whole or not at all (SPEC sections 6 and 7)."""

    class Kind(models.TextChoices):
        COHORT_PDF = "cohort_pdf", _("Cohort report (PDF)")
        CASEBOOK_PDF = "casebook_pdf", _("Casebook (PDF)")
        IMPORT_CSV_ZIP = "import_csv_zip", _("Data in the import format (CSV files, zip)")
        WIDE_CSV = "wide_csv", _("Analysis dataset (CSV)")
        WIDE_XLSX = "wide_xlsx", _("Analysis dataset (Excel)")
        WIDE_SAV = "wide_sav", _("Analysis dataset (SPSS)")
        WIDE_DTA = "wide_dta", _("Analysis dataset (Stata)")
        DICTIONARY_CSV = "dictionary_csv", _("Data dictionary (CSV)")
        AUDIT_CSV = "audit_csv", _("Audit trail (CSV)")
        ODM_XML = "odm_xml", _("CDISC ODM 1.3.2 (XML)")

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("rendering")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    kind = models.CharField(max_length=16, choices=Kind.choices)
    scope = models.CharField(max_length=16, help_text="'all' or a centre code")
    patient = models.ForeignKey("cohort.Patient", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="report_jobs")
    requested_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=200, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The task message holding the claim (see RecomputeRequest.claimed_by).
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    file_name = models.CharField(max_length=200, blank=True, default="")
    file_size = models.BigIntegerField(null=True, blank=True)
    data_version = models.BigIntegerField(null=True, blank=True)
    language = models.CharField(max_length=8, default="en", help_text="the requester's interface language")

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="reportjob_status_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.scope} #{self.pk} {self.status}"


class ImportJob(models.Model):
    """An import uploaded in the browser (issue 15 item 4): its files (under MEDIA_ROOT/imports/<id>/,
    the volume web and worker share), the preview a worker computed from them, and, once applied,
    who applied it and why. Applied at most once: `ready` -> `applied` by a conditional update."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("checking")
        READY = "ready", _("ready to apply")
        INVALID = "invalid", _("has errors")
        FAILED = "failed", _("failed")
        # Apply is a job too (a large import outlives a web request): queued, then a worker writes it.
        APPLY_QUEUED = "apply_queued", _("waiting to be applied")
        APPLYING = "applying", _("applying")
        APPLIED = "applied", _("applied")
        # Not applied within IMPORT_UPLOAD_EXPIRY_HOURS: its files are deleted.
        EXPIRED = "expired", _("expired")

    uploaded_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="import_jobs")
    uploaded_at = models.DateTimeField(auto_now_add=True)
    # The centres whose patients the files may write (a nurse's); null: any (a coordinator).
    centres = models.JSONField(null=True, blank=True)
    files = models.JSONField(default=list, help_text="the form files' names")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=200, blank=True, default="")
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # cohort.importer.ImportSummary.as_json() of the preview; the errors as `file:row: variable: message`.
    preview = models.JSONField(null=True, blank=True)
    errors = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")
    reason = models.CharField(max_length=REASON_MAX_LENGTH, blank=True, default="")
    applied_at = models.DateTimeField(null=True, blank=True)
    # An apply refused because the data changed since the preview shown: the preview is the new one.
    stale = models.BooleanField(default=False)
    # The worker writes the preview's errors in it, as the import page shows them (as ReportJob's).
    language = models.CharField(max_length=8, default="en", help_text="the uploader's interface language")

    class Meta:
        ordering = ["-uploaded_at", "-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="importjob_status_idx")]

    def __str__(self) -> str:
        return f"import #{self.pk} {self.status}"

    @property
    def working(self) -> bool:
        """A worker has (or is about to have) it: the page shows progress and polls."""
        return self.status in (self.Status.QUEUED, self.Status.RUNNING, self.Status.APPLY_QUEUED, self.Status.APPLYING)

    @property
    def applying(self) -> bool:
        return self.status in (self.Status.APPLY_QUEUED, self.Status.APPLYING)
