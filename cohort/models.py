"""The case report form: one model per form of the data dictionary.

Field names are the dictionary's variable names, choices its codes, verbose_name its label and
help_text its notes. What a single row must never break is a database constraint (so no write path
can bypass it); conditional and cross-form rules live in cohort/validators.py.

Longer than the ~500 lines we aim for, on purpose: it is the data dictionary's seven forms as
models, each with its constraints, read side by side with the dictionary; the forms have no seam
between them, and Django's migrations and pghistory's event models name these classes here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import pghistory
import pgtrigger
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import formats
from django.utils.translation import gettext, gettext_noop, pgettext
from django.utils.translation import gettext_lazy as _

from cohort import checks
from cohort.choices import (
    ANTI_TNF_AGENTS,
    AECategory,
    AEOutcome,
    Agent,
    Causality,
    DiscontinuationReason,
    FollowUpStatus,
    FormStatus,
    Immunomodulator,
    Interval,
    MontrealBehaviour,
    MontrealLocation,
    NotDoneReason,
    Phase,
    Role,
    Route,
    Sex,
    Smoking,
    StopReason,
    Visit,
    YesNo,
)

STUDY_ID_PATTERN = r"^[A-Z0-9]{2,10}-[0-9]{3,5}$"
CENTRE_CODE_PATTERN = r"^[A-Z0-9]{2,10}$"
STUDY_START = dt.date(2016, 1, 1)

# The visit schedule as data (SPEC section 3): nominal day and inclusive window, days after t0.
VISIT_SCHEDULE: dict[str, tuple[int, int, int]] = {
    Visit.WEEK_0: (0, -14, 14),
    Visit.WEEK_8: (56, 42, 84),
    Visit.WEEK_20: (140, 112, 168),
    Visit.WEEK_52: (364, 308, 420),
}


# Single-row rules as functions of values: the models' properties below call them, and the wide
# export (reports/dataset.py) applies them to plain rows without making 400,000 instances.
def montreal_age_class(age_at_diagnosis: int) -> str:
    """Montreal age class at diagnosis: A1 <= 16 years, A2 17-40, A3 > 40."""
    if age_at_diagnosis <= 16:
        return "A1"
    return "A2" if age_at_diagnosis <= 40 else "A3"


def hbi_component_sum(parts: Sequence[int | None]) -> int | None:
    """The sum of the five HBI components, or None while any is missing (the demo generator calls
    it directly, without making a model instance per assessment)."""
    return None if None in parts else sum(parts)


def hbi_total(components: Sequence[int | None], entered: int | None) -> int | None:
    """The HBI: the sum of the five components when all are given, else the entered total."""
    total = hbi_component_sum(components)
    return entered if total is None else total


def study_day(assessment_date: dt.date | None, reinduction_date: dt.date | None) -> int | None:
    """Days after t0 (the re-induction dose); None without either date."""
    if reinduction_date is None or assessment_date is None:
        return None
    return (assessment_date - reinduction_date).days


def in_window(visit: str, day: int | None) -> bool | None:
    """Whether a visit's study day lies in its window; None when it cannot be told."""
    if day is None:
        return None
    _, low, high = VISIT_SCHEDULE[visit]
    return low <= day <= high


# Weight-based IV dose (dictionary, ustekinumab_doses.weight_kg): (upper weight bound, dose mg).
IV_DOSE_BANDS: tuple[tuple[Decimal, int], ...] = ((Decimal(55), 260), (Decimal(85), 390))
IV_DOSE_ABOVE_BANDS = 520


def iv_dose_for_weight(weight_kg: Decimal) -> int:
    """The weight-band IV dose for this weight (UstekinumabDose.expected_iv_dose; the demo
    generator calls it directly, without making a model instance per dose)."""
    for upper, dose in IV_DOSE_BANDS:
        if weight_kg <= upper:
            return dose
    return IV_DOSE_ABOVE_BANDS


class FieldCheck(models.CheckConstraint):
    """A check constraint whose violation is reported at one field (not as a non-field error),
    so the admin, the web forms and the importer all show the message beside the variable."""

    def __init__(self, *args, field: str, wording: tuple[str, dict] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.field = field
        # What a person reads (translated, in the field labels' words): the template and its values.
        # Not part of the migration state: violation_error_message stays the database's English.
        self.wording = wording

    def clone(self):
        """Django keeps a clone (built from deconstruct) in the model's options: keep the wording."""
        copy = super().clone()
        copy.wording = self.wording
        return copy

    def said(self) -> str:
        """The message in the reader's language (the catalogue holds each template)."""
        template, params = self.wording or (self.violation_error_message, {})
        values = {
            name: formats.localize(value) if isinstance(value, Decimal) else str(value)
            for name, value in params.items()
        }
        return gettext(template) % values if values else gettext(template)

    def validate(self, model, instance, exclude=None, using=None):
        kwargs = {"exclude": exclude}
        if using is not None:
            kwargs["using"] = using
        try:
            super().validate(model, instance, **kwargs)
        except ValidationError as error:
            raise ValidationError({self.field: error.messages}) from None

    def deconstruct(self):
        path, args, kwargs = super().deconstruct()
        kwargs["field"] = self.field
        return "cohort.models.FieldCheck", args, kwargs

    def __eq__(self, other):
        return super().__eq__(other) and getattr(other, "field", None) == self.field


def between(field: str, low, high=None, *, prefix: str) -> FieldCheck:
    """A range from the dictionary's min/max; NULL (missing) passes. A max of 'today' or
    'this_year' is not a constraint (it moves): see cohort.checks."""
    bounds = {f"{field}__gte": low} if high is None else {f"{field}__gte": low, f"{field}__lte": high}
    return FieldCheck(
        condition=Q(**{f"{field}__isnull": True}) | Q(**bounds),
        name=f"{prefix}_{field}_range",
        field=field,
        violation_error_message=f"must be {low} or later." if high is None else f"must be between {low} and {high}.",
        wording=(gettext_noop("must be %(low)s or later."), {"low": low})
        if high is None
        else (gettext_noop("must be between %(low)s and %(high)s."), {"low": low, "high": high}),
    )


def not_before(field: str, low, *, prefix: str) -> FieldCheck:
    return FieldCheck(
        condition=Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__gte": low}),
        name=f"{prefix}_{field}_min",
        field=field,
        violation_error_message=f"must be on or after {low}.",
        wording=(gettext_noop("must be on or after %(low)s."), {"low": low}),
    )


def one_of(field: str, choices: type[models.TextChoices], *, prefix: str, optional: bool = False) -> FieldCheck:
    allowed = list(choices.values)
    condition = Q(**{f"{field}__in": allowed})
    if optional:
        condition |= Q(**{field: ""})
    return FieldCheck(
        condition=condition,
        name=f"{prefix}_{field}_code",
        field=field,
        violation_error_message=f"must be one of {', '.join(allowed)}.",
        wording=(gettext_noop("must be one of %(allowed)s."), {"allowed": ", ".join(allowed)}),
    )


def yesno_field(label: str, help_text: str = "", *, required: bool = True) -> models.CharField:
    return models.CharField(label, max_length=3, choices=YesNo.choices, blank=not required, help_text=help_text)


def audited(**kwargs):
    """Audit trail (SPEC section 4): PostgreSQL triggers write an append-only event row for every
    insert, update and delete, whatever the write path (ORM, bulk update, import, raw SQL).

    Statement-level triggers: one INSERT ... SELECT from the statement's transition table writes
    the events of all its rows at once, and the context (user, reason) is attached once per
    statement, not once per row. A row trigger cost about 0.1 ms per row, which made the audit
    trail most of the time of a bulk load (seed_demo, import); an update that changes no tracked
    field still writes no event (the same IS DISTINCT FROM condition, as a WHERE on the join of
    the old and new rows)."""
    return pghistory.track(
        pghistory.InsertEvent(),
        pghistory.UpdateEvent(),
        pghistory.DeleteEvent(),
        append_only=True,
        level=pghistory.Statement,
        **kwargs,
    )


@audited()
class Centre(models.Model):
    code = models.CharField(
        _("Centre code"), max_length=10, unique=True, help_text=_("2 to 10 capital letters or digits, e.g. AMC.")
    )
    name = models.CharField(_("Name"), max_length=200)
    active = models.BooleanField(_("Active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            FieldCheck(
                condition=Q(code__regex=CENTRE_CODE_PATTERN),
                name="centre_code_pattern",
                field="code",
                violation_error_message=gettext_noop("must be 2 to 10 capital letters or digits (A-Z, 0-9)."),
            )
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class CrfRowTally(models.Model):
    """How many patients (not removed) a centre has, and how many CRF rows (each patient row and its
    forms' rows) and data queries waiting for the site or answered they have: the sums of the
    centre's tallies. Statement triggers on the CRF and query tables append one tally per centre a
    statement changes (migration 0013), so the monitoring figures (cohort/monitoring.py) read a few
    rows per centre instead of counting every row of the cohort (1.9 million at 100,000 patients:
    1.4 s on every dashboard view). Appended, never updated, so that no write waits for another's
    (as the recompute requests, reports/migrations/0004); `monitoring.fold_tallies` sums them into
    one per centre now and then."""

    centre = models.ForeignKey(Centre, on_delete=models.CASCADE, related_name="+")
    crf_rows = models.BigIntegerField()
    patients = models.BigIntegerField()
    waiting_queries = models.BigIntegerField()  # open or re-opened (QUERY_WAITING_FOR_SITE)
    answered_queries = models.BigIntegerField()
    patients_waiting = models.BigIntegerField(db_default=0)  # with a query waiting (WaitingQueries)

    def __str__(self) -> str:
        return f"{self.centre_id}: {self.patients:+} patients, {self.crf_rows:+} CRF rows"


class WaitingQueries(models.Model):
    """How many data queries of a patient wait for the site, kept by statement triggers on the
    queries (migration 0022), so that its centre's tally of patients with a waiting query
    (CrfRowTally.patients_waiting) changes exactly when the count crosses zero. One row per patient,
    added to in place: two writers of one patient's queries wait for each other, and the second
    sees the first's count. No constraint to the patient: its trigger deletes the row after it."""

    patient = models.OneToOneField(
        "Patient", primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    waiting = models.IntegerField()

    class Meta:
        verbose_name_plural = "waiting queries"

    def __str__(self) -> str:
        return f"{self.patient_id}: {self.waiting} waiting"


class CasebookSummary(models.Model):
    """What the patient list shows of a casebook (forms complete, flags, the visit plan, source
    verification, the data's hash for its signature), as the automatic data checks last summed it
    up (cohort.listing), so a page of the list reads 25 small rows instead of 25 whole casebooks.

    `data_stamp` is raised by statement triggers on every table the summary is made from (the CRF
    tables, flag confirmations, verification marks: migration 0021); a summary counts only while
    its `summary_stamp` is the data's stamp and its `rules` the code's (cohort.listing.RULES). Any
    other summary is stale and the list sums the casebook up from its rows, as it always did."""

    patient = models.OneToOneField(
        "Patient", primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    data_stamp = models.BigIntegerField(db_default=1)
    summary_stamp = models.BigIntegerField(null=True)
    rules = models.CharField(max_length=64, blank=True, db_default="")
    summary = models.JSONField(null=True)

    def __str__(self) -> str:
        return f"{self.patient_id}: data {self.data_stamp}, summary {self.summary_stamp}"


@audited()
class Membership(models.Model):
    """A user's access: their role at one centre (SPEC section 2)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    centre = models.ForeignKey(Centre, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(_("Role"), max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["centre__code", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "centre"],
                name="membership_one_role_per_centre",
                violation_error_message=gettext_noop("This user already has a role at this centre."),
            ),
            one_of("role", Role, prefix="membership"),
        ]

    def __str__(self) -> str:
        return f"{self.user} - {self.role} at {self.centre.code}"


# A reason for change is kept with every audit event it explains (SPEC section 4), whole: the
# casebook, the admin and a patient's removal take at most this many characters, and refuse more.
REASON_MAX_LENGTH = 200


class CrfRecord(models.Model):
    """What every CRF row carries: its form status and a version for optimistic locking."""

    form_status = models.CharField(
        _("Form status"), max_length=12, choices=FormStatus.choices, default=FormStatus.INCOMPLETE
    )
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    @property
    def needs_reason_for_change(self) -> bool:
        """A stored form marked complete is changed (or removed) only with a reason (SPEC section 4)."""
        return self.pk is not None and self.form_status == FormStatus.COMPLETE


# Soft delete (SPEC section 4): a removed patient keeps their row (deleted_at is set) and leaves
# every list and analysis. The ORM's one place is Patient.objects (Patient.all_objects where
# removed patients are meant); rows of other forms follow with patient__in=Patient.objects.all().
# Raw SQL over cohort_patient names the condition through this constant.
ACTIVE_PATIENT_SQL = "deleted_at IS NULL"


class PatientQuerySet(models.QuerySet):
    def active(self):
        return self.filter(deleted_at__isnull=True)

    def removed(self):
        return self.filter(deleted_at__isnull=False)


class ActivePatientManager(models.Manager.from_queryset(PatientQuerySet)):  # type: ignore[misc]
    """Soft-deleted patients leave every list and analysis (SPEC section 4)."""

    def get_queryset(self):
        return super().get_queryset().active()


@audited()
class Patient(CrfRecord):
    study_id = models.CharField(
        _("Study ID"),
        max_length=16,
        unique=True,
        help_text=_("The centre code, a hyphen and a sequence number; assigned on enrolment. Never changes."),
    )
    centre = models.ForeignKey(
        Centre,
        on_delete=models.PROTECT,
        related_name="patients",
        verbose_name=_("Centre"),
        help_text=_("A patient never moves between centres."),
    )
    enrolment_date = models.DateField(_("Date of enrolment"), validators=[checks.not_in_future])
    consent = yesno_field(_("Informed consent or waiver documented"), _("Must be yes for the record to be saved."))
    sex = models.CharField(_("Sex"), max_length=1, choices=Sex.choices)
    birth_year = models.PositiveSmallIntegerField(
        _("Year of birth"),
        validators=[checks.not_after_this_year],
        help_text=_("Year only: no full date of birth is stored."),
    )
    diagnosis_year = models.PositiveSmallIntegerField(
        _("Year of Crohn's disease diagnosis"), validators=[checks.not_after_this_year]
    )
    montreal_location = models.CharField(_("Montreal location"), max_length=2, choices=MontrealLocation.choices)
    upper_gi = yesno_field(_("Upper GI involvement (L4 modifier)"))
    montreal_behaviour = models.CharField(_("Montreal behaviour"), max_length=2, choices=MontrealBehaviour.choices)
    perianal = yesno_field(_("Perianal disease (p modifier)"))
    prior_resection = yesno_field(_("Prior intestinal resection"))
    smoking = models.CharField(_("Smoking status"), max_length=7, choices=Smoking.choices)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ActivePatientManager()
    all_objects = PatientQuerySet.as_manager()

    class Meta:
        ordering = ["study_id"]
        base_manager_name = "all_objects"
        # The patient list (cohort/views.py) counts and pages a user's patients from these alone
        # (index-only scans in study ID order): a page costs the same at 1,000 and 100,000 patients.
        indexes = [
            models.Index(
                fields=["centre", "study_id"],
                include=["id"],
                condition=Q(deleted_at__isnull=True),
                name="patient_list_of_centre",
            ),
            models.Index(
                fields=["study_id"], include=["id"], condition=Q(deleted_at__isnull=True), name="patient_list"
            ),
        ]
        constraints = [
            FieldCheck(
                condition=Q(study_id__regex=STUDY_ID_PATTERN),
                name="patient_study_id_pattern",
                field="study_id",
                violation_error_message=gettext_noop(
                    "must be the centre code, a hyphen and a 3 to 5 digit number, e.g. AMC-001."
                ),
            ),
            FieldCheck(
                condition=Q(consent=YesNo.YES),
                name="patient_consent_yes",
                field="consent",
                violation_error_message=gettext_noop(
                    "must be yes: a patient can only be entered with documented consent or waiver."
                ),
            ),
            not_before("enrolment_date", STUDY_START, prefix="patient"),
            between("birth_year", 1920, prefix="patient"),
            between("diagnosis_year", 1930, prefix="patient"),
            FieldCheck(
                condition=Q(diagnosis_year__gte=models.F("birth_year")),
                name="patient_diagnosis_after_birth",
                field="diagnosis_year",
                violation_error_message=gettext_noop("must be on or after the year of birth."),
            ),
            one_of("sex", Sex, prefix="patient"),
            one_of("montreal_location", MontrealLocation, prefix="patient"),
            one_of("montreal_behaviour", MontrealBehaviour, prefix="patient"),
            one_of("smoking", Smoking, prefix="patient"),
            one_of("upper_gi", YesNo, prefix="patient"),
            one_of("perianal", YesNo, prefix="patient"),
            one_of("prior_resection", YesNo, prefix="patient"),
        ]

    def __str__(self) -> str:
        return self.study_id

    @property
    def is_removed(self) -> bool:
        """Soft-deleted: left every list and analysis; the row and its audit trail stay."""
        return self.deleted_at is not None

    @property
    def age_at_diagnosis(self) -> int:
        return self.diagnosis_year - self.birth_year

    @property
    def montreal_age(self) -> str:
        return montreal_age_class(self.age_at_diagnosis)

    def anti_tnf_count(self, prior_biologics=None) -> int:
        """Distinct anti-TNF agents among the prior biologics (SPEC section 5)."""
        rows = self.prior_biologics.all() if prior_biologics is None else prior_biologics
        return len({row.agent for row in rows if row.agent in ANTI_TNF_AGENTS})


class PatientRow(CrfRecord):
    """A row of a form that belongs to one patient."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, verbose_name=_("Study ID"))

    class Meta:
        abstract = True


@audited()
class PriorBiologic(PatientRow):
    agent = models.CharField(
        _("Biologic agent"),
        max_length=20,
        choices=Agent.choices,
        help_text=_("Anti-TNF agents: infliximab, adalimumab, certolizumab pegol, golimumab."),
    )
    agent_other = models.CharField(
        _("Other agent (name)"),
        max_length=100,
        blank=True,
        help_text=_("Required when agent = other; empty otherwise."),
    )
    start_date = models.DateField(_("Start date"), null=True, blank=True, validators=[checks.not_in_future])
    stop_date = models.DateField(
        _("Stop date"),
        null=True,
        blank=True,
        validators=[checks.not_in_future],
        help_text=_("On or after the start date, and before the first ustekinumab dose."),
    )
    stop_reason = models.CharField(_("Reason stopped"), max_length=20, choices=StopReason.choices)

    class Meta:
        default_related_name = "prior_biologics"
        ordering = ["patient", "start_date", "id"]
        constraints = [
            one_of("agent", Agent, prefix="priorbiologic"),
            one_of("stop_reason", StopReason, prefix="priorbiologic"),
            FieldCheck(
                condition=(Q(agent=Agent.OTHER) & ~Q(agent_other="")) | (~Q(agent=Agent.OTHER) & Q(agent_other="")),
                name="priorbiologic_agent_other_iff_other",
                field="agent_other",
                violation_error_message="is required when agent = other, and must be empty otherwise.",
                wording=(gettext_noop("is required when the agent is “other”, and must be empty otherwise."), {}),
            ),
            not_before("start_date", dt.date(1998, 1, 1), prefix="priorbiologic"),
            not_before("stop_date", dt.date(1998, 1, 1), prefix="priorbiologic"),
            FieldCheck(
                condition=Q(start_date__isnull=True)
                | Q(stop_date__isnull=True)
                | Q(stop_date__gte=models.F("start_date")),
                name="priorbiologic_stop_after_start",
                field="stop_date",
                violation_error_message=gettext_noop("must be on or after the start date."),
            ),
        ]

    def __str__(self) -> str:
        period = " – ".join(formats.date_format(d) for d in (self.start_date, self.stop_date) if d)
        return f"{self.agent_other or self.get_agent_display()}{f' ({period})' if period else ''}"


@audited()
class UstekinumabDose(PatientRow):
    dose_date = models.DateField(_("Date of administration"), validators=[checks.not_in_future])
    phase = models.CharField(
        _("Phase"),
        max_length=20,
        choices=Phase.choices,
        help_text=_("Exactly one initial IV induction and one IV re-induction per patient, re-induction last."),
    )
    route = models.CharField(
        _("Route"), max_length=2, choices=Route.choices, help_text=_("Initial induction and re-induction are IV.")
    )
    dose_mg = models.PositiveSmallIntegerField(
        _("Dose (mg)"), help_text=_("Intravenous: 130 to 1040 mg; subcutaneous: 45 to 180 mg.")
    )
    weight_kg = models.DecimalField(
        _("Body weight (kg)"),
        max_digits=4,
        decimal_places=1,
        null=True,
        blank=True,
        help_text=_(
            "Recommended for IV doses. Weight-based IV dose: <=55 kg 260 mg, >55 to <=85 kg 390 mg, "
            ">85 kg 520 mg; a different dose is saved with a warning."
        ),
    )

    class Meta:
        default_related_name = "doses"
        ordering = ["patient", "dose_date", "id"]
        constraints = [
            one_of("phase", Phase, prefix="dose"),
            one_of("route", Route, prefix="dose"),
            not_before("dose_date", STUDY_START, prefix="dose"),
            between("dose_mg", 45, 1040, prefix="dose"),
            FieldCheck(
                condition=~Q(route=Route.IV) | Q(dose_mg__gte=130, dose_mg__lte=1040),
                name="dose_iv_range",
                field="dose_mg",
                violation_error_message=gettext_noop("an intravenous dose must be between 130 and 1040 mg."),
            ),
            FieldCheck(
                condition=~Q(route=Route.SC) | Q(dose_mg__gte=45, dose_mg__lte=180),
                name="dose_sc_range",
                field="dose_mg",
                violation_error_message=gettext_noop("a subcutaneous dose must be between 45 and 180 mg."),
            ),
            FieldCheck(
                condition=Q(phase=Phase.MAINTENANCE) | Q(route=Route.IV),
                name="dose_induction_is_iv",
                field="route",
                violation_error_message="must be iv for the initial induction and the re-induction.",
                wording=(gettext_noop("must be intravenous for the initial induction and the re-induction."), {}),
            ),
            between("weight_kg", 25, 250, prefix="dose"),
            # At most one of each; 'exactly one' is a rule of the complete record (validators).
            # Their indexes carry the date, so the recompute reads each patient's two induction
            # dates from them alone (an index-only scan), not from the table of every dose.
            models.UniqueConstraint(
                fields=["patient"],
                condition=Q(phase=Phase.INITIAL_INDUCTION),
                include=["dose_date"],
                name="dose_one_initial_induction",
                violation_error_message=gettext_noop("The patient already has an initial induction dose."),
            ),
            models.UniqueConstraint(
                fields=["patient"],
                condition=Q(phase=Phase.REINDUCTION),
                include=["dose_date"],
                name="dose_one_reinduction",
                violation_error_message=gettext_noop("The patient already has a re-induction dose."),
            ),
        ]

    def __str__(self) -> str:
        when = formats.date_format(self.dose_date) if self.dose_date else ""
        return f"{when} {self.get_phase_display()}, {self.dose_mg} mg {self.get_route_display()}"

    @property
    def expected_iv_dose(self) -> int | None:
        """The weight-band IV dose, or None when it cannot be told (SC dose or no weight)."""
        if self.route != Route.IV or self.weight_kg is None:
            return None
        return iv_dose_for_weight(self.weight_kg)

    @property
    def off_weight_band(self) -> bool:
        expected = self.expected_iv_dose
        return expected is not None and self.dose_mg != expected


@audited()
class Reinduction(PatientRow):
    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, verbose_name=_("Study ID"))
    initial_response = yesno_field(_("Initial response to ustekinumab"), _("Inclusion criterion: must be yes."))
    lor_date = models.DateField(
        _("Date of secondary loss of response"),
        validators=[checks.not_in_future],
        help_text=_("Between the initial induction dose and the re-induction dose (inclusive)."),
    )
    lor_clinical = yesno_field(
        _("Loss of response: clinical"), _("At least one of clinical, biochemical or endoscopic must be yes.")
    )
    lor_biochemical = yesno_field(_("Loss of response: biochemical"))
    lor_endoscopic = yesno_field(_("Loss of response: endoscopic"))
    interval_before = models.CharField(
        _("Maintenance interval before loss of response"), max_length=5, choices=Interval.choices
    )
    interval_after = models.CharField(
        _("Maintenance interval after re-induction"), max_length=5, choices=Interval.choices
    )
    corticosteroids = yesno_field(_("Corticosteroids at re-induction"))
    immunomodulator = models.CharField(
        _("Immunomodulator at re-induction"), max_length=12, choices=Immunomodulator.choices
    )

    class Meta:
        default_related_name = "reinduction"
        constraints = [
            FieldCheck(
                condition=Q(initial_response=YesNo.YES),
                name="reinduction_initial_response_yes",
                field="initial_response",
                violation_error_message=gettext_noop(
                    "must be yes: an initial response to ustekinumab is an inclusion criterion."
                ),
            ),
            FieldCheck(
                condition=Q(lor_clinical=YesNo.YES) | Q(lor_biochemical=YesNo.YES) | Q(lor_endoscopic=YesNo.YES),
                name="reinduction_lor_kind",
                field="lor_clinical",
                violation_error_message=gettext_noop(
                    "at least one of clinical, biochemical or endoscopic loss of response must be yes."
                ),
            ),
            not_before("lor_date", STUDY_START, prefix="reinduction"),
            one_of("lor_clinical", YesNo, prefix="reinduction"),
            one_of("lor_biochemical", YesNo, prefix="reinduction"),
            one_of("lor_endoscopic", YesNo, prefix="reinduction"),
            one_of("interval_before", Interval, prefix="reinduction"),
            one_of("interval_after", Interval, prefix="reinduction"),
            one_of("corticosteroids", YesNo, prefix="reinduction"),
            one_of("immunomodulator", Immunomodulator, prefix="reinduction"),
        ]

    def __str__(self) -> str:
        return pgettext("a row's name", "re-induction")


HBI_COMPONENTS = ("hbi_wellbeing", "hbi_pain", "hbi_stools", "hbi_mass", "hbi_complications")
MEASUREMENTS = (
    *HBI_COMPONENTS,
    "hbi",
    "crp_mg_l",
    "fcal_ug_g",
    "endoscopy_done",
    "ses_cd",
    "corticosteroids",
)


def _all_hbi_components_given() -> Q:
    return Q(**{f"{name}__isnull": False for name in HBI_COMPONENTS})


def _hbi_sum():
    total = models.F(HBI_COMPONENTS[0])
    for name in HBI_COMPONENTS[1:]:
        total = total + models.F(name)
    return total


def _measurements_empty() -> Q:
    q = Q()
    for name in MEASUREMENTS:
        q &= Q(**{name: ""}) if name in ("endoscopy_done", "corticosteroids") else Q(**{f"{name}__isnull": True})
    return q


@audited()
class Assessment(PatientRow):
    visit = models.CharField(_("Visit"), max_length=7, choices=Visit.choices)
    not_done = yesno_field(_("Visit not done"), _("When yes: give the reason and leave every measurement empty."))
    not_done_reason = models.CharField(
        _("Reason visit not done"), max_length=20, choices=NotDoneReason.choices, blank=True
    )
    assessment_date = models.DateField(
        _("Date of assessment"),
        null=True,
        blank=True,
        validators=[checks.not_in_future],
        help_text=_(
            "Required unless the visit was not done. Window in days after re-induction: week 0 -14 to 14, "
            "week 8 42-84, week 20 112-168, week 52 308-420; outside it the visit is saved with a flag."
        ),
    )
    hbi_wellbeing = models.PositiveSmallIntegerField(
        _("HBI general well-being"), null=True, blank=True, help_text=_("0 very well .. 4 terrible")
    )
    hbi_pain = models.PositiveSmallIntegerField(
        _("HBI abdominal pain"), null=True, blank=True, help_text=_("0 none .. 3 severe")
    )
    hbi_stools = models.PositiveSmallIntegerField(_("HBI liquid stools per day"), null=True, blank=True)
    hbi_mass = models.PositiveSmallIntegerField(
        _("HBI abdominal mass"), null=True, blank=True, help_text=_("0 none .. 3 definite and tender")
    )
    hbi_complications = models.PositiveSmallIntegerField(
        _("HBI complications (count)"),
        null=True,
        blank=True,
        help_text=_(
            "arthralgia, uveitis, erythema nodosum, aphthous ulcers, pyoderma gangrenosum, anal fissure, "
            "new fistula, abscess"
        ),
    )
    hbi = models.PositiveSmallIntegerField(
        _("Harvey-Bradshaw Index (total)"),
        null=True,
        blank=True,
        help_text=_(
            "The sum of the five components when all are given (computed); may be entered alone when the "
            "components are unknown."
        ),
    )
    crp_mg_l = models.DecimalField(
        _("C-reactive protein (mg/L)"), max_digits=5, decimal_places=1, null=True, blank=True
    )
    fcal_ug_g = models.DecimalField(
        _("Faecal calprotectin (ug/g)"), max_digits=6, decimal_places=1, null=True, blank=True
    )
    endoscopy_done = yesno_field(_("Endoscopy performed"), required=False)
    ses_cd = models.PositiveSmallIntegerField(
        _("SES-CD"), null=True, blank=True, help_text=_("Only when endoscopy was performed.")
    )
    corticosteroids = yesno_field(_("Corticosteroids at this visit"), required=False)

    class Meta:
        default_related_name = "assessments"
        ordering = ["patient", "visit"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "visit"],
                name="assessment_one_per_visit",
                violation_error_message=gettext_noop("This patient already has an assessment for this visit."),
            ),
            one_of("visit", Visit, prefix="assessment"),
            one_of("not_done", YesNo, prefix="assessment"),
            one_of("not_done_reason", NotDoneReason, prefix="assessment", optional=True),
            one_of("endoscopy_done", YesNo, prefix="assessment", optional=True),
            one_of("corticosteroids", YesNo, prefix="assessment", optional=True),
            FieldCheck(
                condition=Q(not_done=YesNo.NO) | ~Q(not_done_reason=""),
                name="assessment_not_done_reason_required",
                field="not_done_reason",
                violation_error_message=gettext_noop("is required when the visit was not done."),
            ),
            FieldCheck(
                condition=Q(not_done=YesNo.YES) | Q(not_done_reason=""),
                name="assessment_not_done_reason_only_if_not_done",
                field="not_done_reason",
                violation_error_message=gettext_noop("must be empty when the visit was done."),
            ),
            FieldCheck(
                condition=Q(not_done=YesNo.NO) | _measurements_empty(),
                name="assessment_not_done_no_measurements",
                field="not_done",
                violation_error_message=gettext_noop(
                    "a visit that was not done has no measurements: leave HBI, CRP, "
                    "calprotectin, endoscopy and corticosteroids empty."
                ),
            ),
            FieldCheck(
                condition=Q(not_done=YesNo.YES) | Q(assessment_date__isnull=False),
                name="assessment_date_required",
                field="assessment_date",
                violation_error_message=gettext_noop("is required unless the visit was not done."),
            ),
            not_before("assessment_date", STUDY_START, prefix="assessment"),
            between("hbi_wellbeing", 0, 4, prefix="assessment"),
            between("hbi_pain", 0, 3, prefix="assessment"),
            between("hbi_stools", 0, 50, prefix="assessment"),
            between("hbi_mass", 0, 3, prefix="assessment"),
            between("hbi_complications", 0, 8, prefix="assessment"),
            between("hbi", 0, 100, prefix="assessment"),
            FieldCheck(
                condition=~_all_hbi_components_given() | Q(hbi=_hbi_sum()),
                name="assessment_hbi_is_sum",
                field="hbi",
                violation_error_message=gettext_noop("must equal the sum of its five components when all are given."),
            ),
            between("crp_mg_l", 0, 500, prefix="assessment"),
            between("fcal_ug_g", 0, 20000, prefix="assessment"),
            between("ses_cd", 0, 56, prefix="assessment"),
            FieldCheck(
                condition=Q(ses_cd__isnull=True) | Q(endoscopy_done=YesNo.YES),
                name="assessment_ses_cd_needs_endoscopy",
                field="ses_cd",
                violation_error_message="may only be given when endoscopy_done = yes.",
                wording=(gettext_noop("may only be given when an endoscopy was done."), {}),
            ),
        ]

    def __str__(self) -> str:
        return self.get_visit_display()

    # The HBI rule's one home is hbi_total() above: the total is the sum of the five components when
    # all are given (held by the assessment_hbi_is_sum constraint). The loader's SQL CASE
    # (reports/loaders.py) and the page's live total (static/js/crf.js) are the same rule in SQL and
    # for the browser.
    @property
    def hbi_component_sum(self) -> int | None:
        """The sum of the five HBI components, or None while any is missing."""
        return hbi_component_sum([getattr(self, name) for name in HBI_COMPONENTS])

    @property
    def hbi_total(self) -> int | None:
        return hbi_total([getattr(self, name) for name in HBI_COMPONENTS], self.hbi)

    def fill_hbi(self) -> None:
        """Derive the entered total from the components when all five are given and no total was
        entered (a total that differs from their sum is refused by assessment_hbi_is_sum)."""
        if self.hbi is None:
            self.hbi = self.hbi_component_sum

    def study_day(self, reinduction_date: dt.date | None) -> int | None:
        return study_day(self.assessment_date, reinduction_date)

    def in_window(self, reinduction_date: dt.date | None) -> bool | None:
        return in_window(self.visit, self.study_day(reinduction_date))


@audited()
class FollowUp(PatientRow):
    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, verbose_name=_("Study ID"))
    status = models.CharField(_("Ustekinumab status"), max_length=12, choices=FollowUpStatus.choices)
    last_follow_up_date = models.DateField(
        _("Date of last follow-up"),
        validators=[checks.not_in_future],
        help_text=_("On or after the re-induction dose date and every assessment date."),
    )
    discontinuation_date = models.DateField(
        _("Date of discontinuation"),
        null=True,
        blank=True,
        validators=[checks.not_in_future],
        help_text=_(
            "Required when discontinued, empty otherwise; between the re-induction dose date and the "
            "date of last follow-up."
        ),
    )
    discontinuation_reason = models.CharField(
        _("Reason for discontinuation"),
        max_length=20,
        choices=DiscontinuationReason.choices,
        blank=True,
        help_text=_("Required when discontinued."),
    )
    next_therapy = models.CharField(
        _("Next therapy"), max_length=200, blank=True, help_text=_("Do not enter names or other identifiers.")
    )
    # Lets a record without adverse events be complete: "no" is a stated answer, not a missing form.
    adverse_events_any = yesno_field(
        _("Any adverse event since re-induction"),
        _("No: no adverse events are recorded. Yes: record each one on the adverse events form."),
        required=False,
    )

    class Meta:
        default_related_name = "follow_up"
        constraints = [
            one_of("status", FollowUpStatus, prefix="followup"),
            one_of("discontinuation_reason", DiscontinuationReason, prefix="followup", optional=True),
            one_of("adverse_events_any", YesNo, prefix="followup", optional=True),
            not_before("last_follow_up_date", STUDY_START, prefix="followup"),
            not_before("discontinuation_date", STUDY_START, prefix="followup"),
            FieldCheck(
                condition=~Q(status=FollowUpStatus.DISCONTINUED) | Q(discontinuation_date__isnull=False),
                name="followup_discontinuation_date_required",
                field="discontinuation_date",
                violation_error_message=gettext_noop("is required when the status is discontinued."),
            ),
            FieldCheck(
                condition=Q(status=FollowUpStatus.DISCONTINUED) | Q(discontinuation_date__isnull=True),
                name="followup_discontinuation_date_only_if_discontinued",
                field="discontinuation_date",
                violation_error_message=gettext_noop("must be empty unless the status is discontinued."),
            ),
            FieldCheck(
                condition=~Q(status=FollowUpStatus.DISCONTINUED) | ~Q(discontinuation_reason=""),
                name="followup_discontinuation_reason_required",
                field="discontinuation_reason",
                violation_error_message=gettext_noop("is required when the status is discontinued."),
            ),
            FieldCheck(
                condition=Q(status=FollowUpStatus.DISCONTINUED) | Q(discontinuation_reason=""),
                name="followup_discontinuation_reason_only_if_discontinued",
                field="discontinuation_reason",
                violation_error_message=gettext_noop("must be empty unless the status is discontinued."),
            ),
            FieldCheck(
                condition=Q(discontinuation_date__isnull=True)
                | Q(discontinuation_date__lte=models.F("last_follow_up_date")),
                name="followup_discontinuation_before_last_follow_up",
                field="discontinuation_date",
                violation_error_message=gettext_noop("must be on or before the date of last follow-up."),
            ),
        ]

    def __str__(self) -> str:
        return pgettext("a row's name", "follow-up")


@audited()
class AdverseEvent(PatientRow):
    onset_date = models.DateField(
        _("Onset date"),
        validators=[checks.not_in_future],
        help_text=_("On or after the re-induction dose date."),
    )
    category = models.CharField(_("Category"), max_length=24, choices=AECategory.choices)
    description = models.CharField(
        _("Description"),
        max_length=500,
        help_text=_("Free text, at most 500 characters. Do not enter names or other identifiers."),
    )
    serious = yesno_field(_("Serious adverse event"))
    causality = models.CharField(_("Relation to ustekinumab"), max_length=9, choices=Causality.choices)
    outcome = models.CharField(_("Outcome"), max_length=9, choices=AEOutcome.choices)
    led_to_discontinuation = yesno_field(_("Led to discontinuation of ustekinumab"))

    class Meta:
        default_related_name = "adverse_events"
        ordering = ["patient", "onset_date", "id"]
        constraints = [
            not_before("onset_date", STUDY_START, prefix="adverseevent"),
            one_of("category", AECategory, prefix="adverseevent"),
            one_of("serious", YesNo, prefix="adverseevent"),
            one_of("causality", Causality, prefix="adverseevent"),
            one_of("outcome", AEOutcome, prefix="adverseevent"),
            one_of("led_to_discontinuation", YesNo, prefix="adverseevent"),
        ]

    def __str__(self) -> str:
        when = formats.date_format(self.onset_date) if self.onset_date else ""
        return f"{when} {self.get_category_display()}"


@audited()
class FlagConfirmation(models.Model):
    """Someone checked a flagged value (SPEC section 3: 'saved with a visible flag that someone can
    confirm') and it stands. Tied to the values the flag was raised on (`basis`): when they change,
    the flag is raised anew and needs confirming again."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="flag_confirmations")
    form = models.CharField(max_length=32, help_text=_("the flagged row's model, e.g. assessment"))
    row_id = models.PositiveBigIntegerField()
    field = models.CharField(max_length=64)
    basis = models.CharField(max_length=200, help_text=_("the values the flag was raised on"))
    comment = models.CharField(_("Comment"), max_length=200, blank=True)
    confirmed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    confirmed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["form", "row_id", "field", "basis"], name="flag_confirmed_once"),
        ]

    def __str__(self) -> str:
        return f"{self.patient} {self.form} {self.row_id} {self.field}"

    @property
    def key(self) -> tuple[str, int, str, str]:
        return (self.form, self.row_id, self.field, self.basis)


@audited()
class Verification(models.Model):
    """Source data verification (SPEC section 10): a coordinator checked a form row against the
    source documents, at the row's version then. A later change raises the row's version, so the
    mark reads "changed since verified" until the row is verified again."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="verifications")
    form = models.CharField(max_length=32, help_text=_("the row's data dictionary form"))
    row_id = models.PositiveBigIntegerField()
    row_version = models.PositiveIntegerField()
    verified_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    verified_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["form", "row_id"], name="verification_one_per_row")]

    def __str__(self) -> str:
        return f"{self.patient} {self.form} {self.row_id} v{self.row_version}"


class LockKind(models.TextChoices):
    STUDY = "study", _("study")
    CENTRE = "centre", _("centre")
    PATIENT = "patient", _("casebook")
    ROW = "row", _("form")


@audited()
class Lock(models.Model):
    """A lock (SPEC section 10): the whole study (a database freeze before analysis), a centre, a
    patient's casebook or one form row. While active it refuses every write of what it covers,
    through every path: database triggers (cohort/migrations/0005) enforce it, raw SQL included;
    cohort/locks.py gives the message before the database has to. Unlocking keeps the row: the
    lock's history is its own audit trail."""

    Kind = LockKind

    kind = models.CharField(_("What is locked"), max_length=8, choices=LockKind.choices)
    centre = models.ForeignKey(Centre, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="locks")
    form = models.CharField(max_length=32, blank=True, help_text=_("a form row's data dictionary form"))
    row_id = models.PositiveBigIntegerField(null=True, blank=True)
    reason = models.CharField(_("Reason"), max_length=REASON_MAX_LENGTH)
    locked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    locked_at = models.DateTimeField(auto_now_add=True)
    unlock_reason = models.CharField(_("Reason for unlocking"), max_length=REASON_MAX_LENGTH, blank=True)
    unlocked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    unlocked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-locked_at", "-id"]
        constraints = [
            one_of("kind", LockKind, prefix="lock"),
            models.CheckConstraint(
                condition=(Q(kind="study") & Q(centre__isnull=True, patient__isnull=True, row_id__isnull=True))
                | (Q(kind="centre") & Q(centre__isnull=False, patient__isnull=True, row_id__isnull=True))
                | (Q(kind="patient") & Q(patient__isnull=False, row_id__isnull=True))
                | (Q(kind="row") & Q(patient__isnull=False, row_id__isnull=False) & ~Q(form="")),
                name="lock_target_matches_kind",
            ),
            models.CheckConstraint(
                condition=Q(unlocked_at__isnull=True) | ~Q(unlock_reason=""),
                name="lock_unlock_needs_reason",
            ),
            # One active lock per target: locking what is locked already is a no-op, not a second lock.
            models.UniqueConstraint(
                fields=["kind", "centre", "patient", "form", "row_id"],
                condition=Q(unlocked_at__isnull=True),
                nulls_distinct=False,
                name="lock_one_active_per_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} lock"

    @property
    def active(self) -> bool:
        return self.unlocked_at is None


class QueryState(models.TextChoices):
    OPEN = "open", _("open")
    ANSWERED = "answered", _("answered")
    CLOSED = "closed", _("closed")
    REOPENED = "reopened", _("re-opened")


# A query waits for the site while open or re-opened.
QUERY_WAITING_FOR_SITE = (QueryState.OPEN, QueryState.REOPENED)


class QueryCheck(models.TextChoices):
    """What raised a query: a coordinator, or one of the automatic checks (SPEC section 10)."""

    MANUAL = "", _("raised by a coordinator")
    FLAG = "flag", _("flagged value not confirmed")
    OVERDUE_VISIT = "overdue_visit", _("visit overdue")
    INCOMPLETE_FORM = "incomplete_form", _("form incomplete after its window")


@audited()
class Query(models.Model):
    """A data query (SPEC section 10) on a field of a form row, or on a form (row) as a whole.

    `form` is the casebook form's key (crf.FORMS: "week_8", "doses", ...), `row_id` the row's id
    (empty for a form not started, such as an overdue visit), `field` the variable (empty: the form
    as a whole). Its conversation is its messages, append-only. An automatic query names its rule
    (the check that raised it) and its cause: at most one query per cause is not closed, so a
    check never opens a duplicate."""

    State = QueryState
    Check = QueryCheck

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="queries")
    form = models.CharField(_("Form"), max_length=32)
    row_id = models.PositiveBigIntegerField(null=True, blank=True)
    field = models.CharField(_("Field"), max_length=64, blank=True)
    state = models.CharField(_("State"), max_length=10, choices=QueryState.choices, default=QueryState.OPEN)
    rule = models.CharField(_("Raised by"), max_length=20, choices=QueryCheck.choices, blank=True, default="")
    cause = models.CharField(max_length=200, blank=True, help_text=_("an automatic query's cause, e.g. its flag"))
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    raised_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-raised_at", "-id"]
        verbose_name_plural = "queries"
        constraints = [
            one_of("state", QueryState, prefix="query"),
            models.CheckConstraint(
                condition=Q(rule="") | Q(rule__in=[c.value for c in QueryCheck if c.value]),
                name="query_rule_valid",
            ),
            # A coordinator's query has an author; an automatic one has its check's cause instead.
            models.CheckConstraint(
                condition=(Q(rule="") & Q(raised_by__isnull=False)) | (~Q(rule="") & ~Q(cause="")),
                name="query_author_or_cause",
            ),
            models.UniqueConstraint(
                fields=["cause"],
                condition=~Q(cause="") & ~Q(state="closed"),
                name="query_one_not_closed_per_cause",
            ),
        ]
        indexes = [
            models.Index(fields=["patient", "state"], name="query_patient_state"),
            # The query list's default page, oldest first: read in order, not all sorted.
            models.Index(fields=["raised_at", "id"], condition=~Q(state="closed"), name="query_not_closed_by_age"),
        ]

    def __str__(self) -> str:
        return f"query #{self.pk} on {self.patient} {self.form} {self.field}".rstrip()

    @property
    def waiting_for_site(self) -> bool:
        return self.state in QUERY_WAITING_FOR_SITE


class QueryAction(models.TextChoices):
    RAISE = "raise", _("raised")
    ANSWER = "answer", _("answered")
    CLOSE = "close", _("closed")
    REOPEN = "reopen", _("re-opened")
    NOTE = "note", _("note")


@audited()
class QueryMessage(models.Model):
    """One message of a query's conversation: append-only (a database trigger refuses updates and
    deletes), time-stamped in UTC, with its author (none: the automatic checks)."""

    Action = QueryAction

    query = models.ForeignKey(Query, on_delete=models.PROTECT, related_name="messages")
    action = models.CharField(max_length=8, choices=QueryAction.choices)
    text = models.TextField(_("Message"), max_length=2000)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=QueryState.choices, help_text=_("the query's state after it"))
    # An automatic check's message is kept as its wording and values too, so each reader sees it
    # in their own language (cohort.queries.message_text); `text` is it in English.
    template = models.CharField(max_length=300, blank=True)
    values = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            one_of("action", QueryAction, prefix="query_message"),
            one_of("state", QueryState, prefix="query_message"),
        ]
        triggers = [
            pgtrigger.Protect(
                name="query_message_append_only",
                operation=pgtrigger.Update | pgtrigger.Delete,
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.at:%Y-%m-%d %H:%M}"


# What an investigator attests by signing a casebook (21 CFR 11.50: the meaning of the signature).
SIGNATURE_MEANING = "I confirm that the data in this casebook are complete and accurate."


@audited()
class Signature(models.Model):
    """An investigator's electronic signature of a patient's casebook (SPEC section 10; 21 CFR
    11.50, 11.70, 11.200): signer, UTC time, meaning and a hash of the signed data. A later change
    to the casebook makes it no longer valid (`invalidated_at`, with why); the row stays, so the
    signature history is kept and the casebook needs signing again."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="signatures")
    signed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    signed_at = models.DateTimeField()
    meaning = models.CharField(_("Meaning"), max_length=200)
    data_hash = models.CharField(max_length=64, help_text=_("SHA-256 of the signed casebook data"))
    invalidated_at = models.DateTimeField(null=True, blank=True)
    invalidated_because = models.CharField(max_length=REASON_MAX_LENGTH, blank=True)

    class Meta:
        ordering = ["-signed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient"], condition=Q(invalidated_at__isnull=True), name="signature_one_valid_per_patient"
            ),
            models.CheckConstraint(
                condition=Q(invalidated_at__isnull=True) | ~Q(invalidated_because=""),
                name="signature_invalidated_says_why",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.patient} signed by {self.signed_by} at {self.signed_at:%Y-%m-%d %H:%M}"

    @property
    def valid(self) -> bool:
        return self.invalidated_at is None


class DataCheckRequest(models.Model):
    """A patient whose automatic data queries (cohort/data_checks.py) are due because their record
    changed. Written in the changing transaction under the patient's row lock (by the save's own
    locking statement, services.locked_record), so, as with the recompute requests (SPEC section 6),
    the row is the work and the broker message only a wake-up: a burst of saves sends one message,
    not one per save. A check of the patient, run under the same lock, removes it."""

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, primary_key=True, related_name="+")
    requested_at = models.DateTimeField(db_default=Now())

    def __str__(self) -> str:
        return f"checks of patient {self.patient_id} due since {self.requested_at:%Y-%m-%d %H:%M:%S}"


class UserProfile(models.Model):
    """Per-user preferences: the interface language (English or Dutch)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    language = models.CharField(_("Language"), max_length=8, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE)

    def __str__(self) -> str:
        return f"{self.user} ({self.language})"


class AuditedUser(User):
    """The accounts table, seen from this app so that its audit triggers live in our migrations.
    Role and account changes are audited too (SPEC section 4). The password hash and the login
    timestamp are left out: they are not study data and would flood the trail."""

    class Meta:
        proxy = True
        verbose_name = "user"


audited(exclude=["password", "last_login"], model_name="UserEvent")(AuditedUser)


class ApiToken(models.Model):
    """A personal API token (SPEC section 11). Only the SHA-256 of the token is stored: the token
    itself is shown once, when it is made (cohort/api_auth.py), and a stolen table gives nobody
    access. `prefix` is its visible start, so a user can tell their tokens apart."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(_("Name"), max_length=100, help_text=_("What the token is for, e.g. the analysis laptop."))
    prefix = models.CharField(_("Token starts with"), max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(_("Created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("Expires"))
    last_used_at = models.DateTimeField(_("Last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("Revoked"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    def is_usable(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


class ApiAccess(models.Model):
    """One read of patient data, export request or download, or import through the API (SPEC
    section 11): who, when, which endpoint, and which scope or patient. Append-only; read in the admin."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # Tokens are revoked, never deleted, while their uses are on record.
    token = models.ForeignKey(ApiToken, null=True, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    method = models.CharField(max_length=8)
    endpoint = models.CharField(max_length=200)
    scope = models.CharField(max_length=16, blank=True, default="", help_text="'all', a centre code, or empty")
    study_id = models.CharField(max_length=16, blank=True, default="")
    detail = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "API access"
        verbose_name_plural = "API access log"
        triggers = [pgtrigger.Protect(name="api_access_append_only", operation=pgtrigger.Update | pgtrigger.Delete)]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.user} {self.method} {self.endpoint}"
