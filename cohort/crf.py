"""The case report form's registry: every form once, in casebook order (docs/architecture.md).

Each entry says what the rest of the project needs to know of a form: its key (in URLs and the
casebook grid), its data dictionary name (the import/export file), its model, its input fields
(the dictionary's variables but the keys), its titles, its casebook column and whether it has
many rows per patient. URLs, views, forms, the casebook, the importer and exporter, the PDFs, the
validation layer and the tests read it; nothing else lists the forms.

Adding a field is a dictionary + model + migration change (the field lists follow the dictionary);
adding a form is one entry here, its model and its form class (cohort/forms.py).

`PatientRecord` is a patient's whole CRF as plain objects, one attribute per form; where each form
lives in it is the entry's `attribute`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from django.db import models
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from cohort import dictionary
from cohort.choices import Visit
from cohort.models import (
    AdverseEvent,
    Assessment,
    FollowUp,
    Patient,
    PriorBiologic,
    Reinduction,
    UstekinumabDose,
)

# Fields that say whose and which row it is: shown by the record's context, never entered.
KEYS = ("id", "patient", "centre")
# Fields the app writes itself: the audit trail's who and when says them again.
BOOKKEEPING = ("version", "created_at", "updated_at", "created_by")
# The soft-delete mark (SPEC section 4): set by removing a patient, never by a form.
REMOVED = "deleted_at"
# Everything a user never types: the validation layer leaves these to the services.
NOT_INPUT = frozenset((*KEYS, *BOOKKEEPING, REMOVED))
# Dictionary variables that identify a row rather than describe it (the file's keys).
KEY_VARIABLES = ("study_id", "centre", "visit")


def entered_fields(model: type[models.Model]) -> list[models.Field]:
    """The model's fields a user enters (its form's input fields and the form status), in the
    model's order: what a save writes and what an edit conflict compares."""
    names = {*file_of(model).fields, "form_status"}
    return [f for f in model._meta.concrete_fields if f.name in names]


def attnames(model: type[models.Model], names) -> frozenset[str]:
    """The database column names (patient -> patient_id) of the model's fields among `names`."""
    return frozenset(f.attname for f in model._meta.concrete_fields if f.name in names)


@dataclass(frozen=True)
class CaseForm:
    """One form of the casebook. The assessment is one form per visit (week_0 ... week_52) of one
    dictionary form (assessments)."""

    key: str
    name: str  # in the data dictionary and the import/export file name
    model: type[models.Model]
    label: Promise  # as the casebook grid shows it, under its column
    column: str  # the casebook grid's column: baseline, a visit, or end
    repeating: bool = False  # any number of rows per patient, added and removed on one page
    visit: str | None = None  # the visit of an assessment form

    @property
    def title(self) -> Promise:
        """The form's title on its page, in messages and in the PDF ("Assessment week 8")."""
        return format_lazy("{} {}", self.label, Visit(self.visit).label) if self.visit else self.label

    @property
    def variables(self) -> tuple[dictionary.Variable, ...]:
        return dictionary.forms()[self.name]

    @cached_property
    def fields(self) -> tuple[str, ...]:
        """The input fields, in the dictionary's order (the keys study_id, centre, visit left out)."""
        return tuple(v.name for v in self.variables if v.name not in KEY_VARIABLES)

    @property
    def attribute(self) -> str:
        """Where a PatientRecord keeps this form's rows."""
        return "patient" if self.model is Patient else self.model._meta.default_related_name

    @property
    def many(self) -> bool:
        """More than one row per patient in the form's file (repeating forms; one per visit)."""
        return self.repeating or self.visit is not None

    @property
    def row_match(self) -> dict[str, str]:
        """What tells a one-row form's row among the model's rows of one patient: its visit."""
        return {"visit": self.visit} if self.visit else {}

    def single_row(self, patient: Patient) -> models.Model:
        """The patient's row of a one-row form (the patient, a visit's assessment, ...): the stored
        one, or a new one to fill in. One query at most."""
        if self.model is Patient:
            return patient
        match = self.row_match
        return self.model.objects.filter(patient=patient, **match).first() or self.model(patient=patient, **match)

    def rows(self, record: PatientRecord) -> list[Any]:
        """This form's rows in a patient's record (an assessment form: its visit's row)."""
        held = getattr(record, self.attribute)
        rows = held if isinstance(held, list) else [] if held is None else [held]
        return [row for row in rows if row.visit == self.visit] if self.visit else rows


FORMS: tuple[CaseForm, ...] = (
    CaseForm("patient", "patients", Patient, _("Enrolment and demographics"), "baseline"),
    CaseForm("prior_biologics", "prior_biologics", PriorBiologic, _("Prior biologics"), "baseline", repeating=True),
    CaseForm("doses", "ustekinumab_doses", UstekinumabDose, _("Ustekinumab doses"), "baseline", repeating=True),
    CaseForm("reinduction", "reinduction", Reinduction, _("Loss of response and re-induction"), "baseline"),
    *(
        CaseForm(visit.value, "assessments", Assessment, _("Assessment"), visit.value, visit=visit.value)
        for visit in Visit
    ),
    CaseForm("follow_up", "follow_up", FollowUp, _("Ustekinumab status at last follow-up"), "end"),
    CaseForm("adverse_events", "adverse_events", AdverseEvent, _("Adverse events"), "end", repeating=True),
)
BY_KEY: dict[str, CaseForm] = {form.key: form for form in FORMS}
# The data dictionary's forms (one import/export file each), in the dictionary's order: the first
# casebook form of each (an assessment form stands for all four visits).
FILES: dict[str, CaseForm] = {}
for _form in FORMS:
    FILES.setdefault(_form.name, _form)
del _form
MODELS: tuple[type[models.Model], ...] = tuple(form.model for form in FILES.values())


def form(key: str) -> CaseForm:
    return BY_KEY[key]


def file_of(model: type[models.Model]) -> CaseForm:
    """The dictionary form (file) a model's rows belong to."""
    return next(form for form in FILES.values() if form.model is model)


def form_of(row: models.Model) -> CaseForm:
    """The casebook form a row is on: its file's, or for an assessment its visit's ("week_8")."""
    form = file_of(type(row))
    return BY_KEY[row.visit] if form.visit else form


def next_form(key: str) -> CaseForm | None:
    """The form a nurse fills in after this one ('save and go to the next form')."""
    index = FORMS.index(BY_KEY[key])
    return FORMS[index + 1] if index + 1 < len(FORMS) else None


def key_pattern(*, repeating: bool) -> str:
    """A regular expression of the keys of the repeating (or the other) forms, for the URLs."""
    return "|".join(form.key for form in FORMS if form.repeating is repeating)


@dataclass
class PatientRecord:
    """A patient's whole case report form as plain objects (saved or not yet saved rows)."""

    patient: Patient
    prior_biologics: list[PriorBiologic] = field(default_factory=list)
    doses: list[UstekinumabDose] = field(default_factory=list)
    reinduction: Reinduction | None = None
    assessments: list[Assessment] = field(default_factory=list)
    follow_up: FollowUp | None = None
    adverse_events: list[AdverseEvent] = field(default_factory=list)
    # Keys of the soft flags someone confirmed (FlagConfirmation.key).
    confirmed: frozenset = frozenset()

    def rows(self) -> list[Any]:
        """Every row, form by form in the dictionary's order."""
        return [row for form in FILES.values() for row in self.held(form)]

    def held(self, form: CaseForm) -> list[Any]:
        """The rows of a dictionary form (all visits of the assessments)."""
        held = getattr(self, form.attribute)
        return held if isinstance(held, list) else [] if held is None else [held]

    def with_row(self, row: Any) -> PatientRecord:
        """The record as it would be with `row` saved (replacing the stored row of the same id)."""
        attribute = file_of(type(row)).attribute
        current = getattr(self, attribute)
        if isinstance(current, list):
            rows = [row if (row.pk and other.pk == row.pk) else other for other in current]
            if not row.pk or all(other.pk != row.pk for other in current):
                rows.append(row)
            return replace(self, **{attribute: rows})
        return replace(self, **{attribute: row})

    def without_row(self, row: Any) -> PatientRecord:
        """The record as it would be with the stored `row` removed (a repeating form's row)."""
        attribute = file_of(type(row)).attribute
        current = getattr(self, attribute)
        if isinstance(current, list):
            return replace(self, **{attribute: [other for other in current if other.pk != row.pk]})
        return replace(self, **{attribute: None})

    def stored(self, row: Any) -> Any:
        """The stored row `row` is (same id) or would take the place of (a new one-per-patient or
        one-per-visit row); None for a new row of a repeating form."""
        form = file_of(type(row))
        held = self.held(form)
        if row.pk:
            return next((other for other in held if other.pk == row.pk), None)
        if form.repeating:
            return None
        if form.visit is not None:
            return next((other for other in held if other.visit == row.visit), None)
        return held[0] if held else None

    def dose_date(self, phase: str) -> dt.date | None:
        dates = [dose.dose_date for dose in self.doses if dose.phase == phase and dose.dose_date]
        return dates[0] if dates else None

    @property
    def reinduction_date(self) -> dt.date | None:
        """t0 (SPEC section 5): the date of the re-induction dose."""
        return self.dose_date("reinduction")
