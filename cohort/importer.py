"""CSV import of the whole cohort (SPEC section 8, binding); the files' format is cohort/csvformat.py.

Import is all-or-nothing: every error is collected as `file:row: variable: message` and nothing is
written unless there are none. The files are the truth for the patients they name; rows that did not
change are left alone, so importing the same files twice writes nothing (and no audit events).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.contrib.auth.models import User
from django.db import models, transaction
from django.utils.translation import gettext as _

from cohort import crf, csvformat, locks, odm, signals, validators
from cohort.audit import audit_context
from cohort.choices import FormStatus
from cohort.crf import PatientRecord
from cohort.csvformat import SourceRow, shown
from cohort.models import (
    Assessment,
    Centre,
    Patient,
)
from cohort.services import patient_record, request_data_checks, with_forms


class ImportFailed(Exception):
    def __init__(self, errors: list[str]):
        super().__init__(f"{len(errors)} error(s); nothing was imported.")
        self.errors = errors


@dataclass
class ImportSummary:
    """What an import writes (or, previewed, would write): the rows per form and bucket, and when
    recorded (`import_rows(record=True)`) every patient created or changed with each row's change,
    field by field, as the import files write the values (`changes`)."""

    created: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    updated: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    deleted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unchanged: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    recording: bool = False
    # study ID -> {"study_id", "centre", "new", "rows": [{"form", "action", "row", "fields": [[variable, old, new]]}]}
    patients: dict[str, dict] = field(default_factory=dict)

    def record(self, patient: Patient, form: str, action: str, row: str, fields: list[list[str]]) -> None:
        if not self.recording:
            return
        entry = self.patients.get(patient.study_id)
        if entry is None:
            entry = self.patients[patient.study_id] = {
                "study_id": patient.study_id,
                "centre": patient.centre.code,
                # A new patient's patients.csv row is always the first recorded of it.
                "new": form == "patients" and action == "created",
                "rows": [],
            }
        entry["rows"].append({"form": form, "action": action, "row": row, "fields": fields})

    def as_json(self) -> dict:
        """The change set as plain JSON: what a preview shows and what an apply must write again."""
        return {
            "counts": {
                bucket: {form: n for form, n in getattr(self, bucket).items() if n}
                for bucket in ("created", "updated", "deleted", "unchanged")
            },
            "patients": [self.patients[study_id] for study_id in sorted(self.patients)],
        }

    @property
    def changes(self) -> int:
        return sum(self.created.values()) + sum(self.updated.values()) + sum(self.deleted.values())

    def lines(self) -> list[str]:
        lines = []
        for form in crf.FILES:
            counts = [
                f"{label} {bucket[form]}"
                for label, bucket in (
                    ("created", self.created),
                    ("updated", self.updated),
                    ("deleted", self.deleted),
                    ("unchanged", self.unchanged),
                )
                if bucket.get(form)
            ]
            if counts:
                lines.append(f"{form}: {', '.join(counts)}")
        return lines


def preview_lines(change_set: dict) -> list[str]:
    """A change set (ImportSummary.as_json) as `import_cohort --dry-run` prints it: each patient to
    be created or changed, each row's change, each field old -> new (values as the files write them)."""
    lines = []
    for patient in change_set["patients"]:
        verb = "create" if patient["new"] else "change"
        lines.append(f"{verb} {patient['study_id']} (centre {patient['centre']})")
        for row in patient["rows"]:
            where = f"{row['form']} {row['row']}".strip()
            lines.append(f"  {where}: {row['action']}")
            lines.extend(f"    {variable}: {old or '-'} -> {new or '-'}" for variable, old, new in row["fields"])
    return lines


# --- import --------------------------------------------------------------------------------------


def import_cohort(
    directory: Path,
    *,
    user: User | None,
    centres: set[int] | None = None,
    source: str = "import_cohort",
    write: bool = True,
    record: bool = False,
    progress=None,
) -> ImportSummary:
    """Validate every file, then write everything or nothing. Raises ImportFailed.

    `centres`: the only centres whose patients the files may write (a nurse's, through the API);
    None: any (the command, run by whoever runs the server). A patient of another centre reads as
    one that does not exist, as everywhere (cohort.access). `source` goes into the audit context.
    `write`, `record` and `progress` as for `import_rows`."""
    directory = Path(directory)
    errors: list[str] = []
    sources: dict[str, list[SourceRow]] = {}
    unread: set[str] = set()  # patients with a row that could not be read
    present = [form for form in crf.FILES if (directory / f"{form}.csv").exists()]
    for done, form in enumerate(present):
        if progress:
            progress(40 * done // len(present), f"{form}.csv")
        sources[form] = csvformat.read_file(directory / f"{form}.csv", form, errors, unread)
    if not (directory.is_dir() and present):
        raise ImportFailed([f"{directory}:0: directory: " + _("no form files found (expected e.g. patients.csv).")])
    return import_rows(
        sources,
        errors=errors,
        unread=unread,
        user=user,
        centres=centres,
        source=source,
        write=write,
        record=record,
        progress=progress,
    )


def import_odm(path: Path, *, user: User | None, write: bool = True, record: bool = False) -> ImportSummary:
    """An ODM 1.3.2 file of our export (cohort/odm.py) with the same semantics as the CSV files:
    its subjects' item groups become the forms' rows, every error is `file.xml:line: variable:
    message` (the line of the XML element), and everything or nothing is written."""
    errors: list[str] = []
    unread: set[str] = set()
    sources = odm.read_file(Path(path), errors, unread)
    return import_rows(sources, errors=errors, unread=unread, user=user, write=write, record=record)


def import_rows(
    sources: dict[str, list[SourceRow]],
    *,
    errors: list[str],
    unread: set[str],
    user: User | None,
    centres: set[int] | None = None,
    source: str = "import_cohort",
    write: bool = True,
    record: bool = False,
    progress=None,
) -> ImportSummary:
    """Validate the rows read from the files (with the errors found reading them), then write
    everything or nothing. Raises ImportFailed. `centres` and `source` as for `import_cohort`.

    The preview (`write=False, record=True`) is this same function up to the last step: the write
    step decides row by row what to create, change or delete and records it (old -> new), then
    skips the statements. Nothing is written, not even the data version (a sequence: a rolled-back
    write would still advance it). `progress(percent, message)` is told how far it got."""
    with transaction.atomic():
        if progress:
            progress(45, "checking")
        records, origin = _build_records(sources, errors, unread, centres)
        errors.extend(_locked(records, origin))
        if progress:
            progress(60, "validating")
        for study_id, patient_record_ in records.items():
            problems = _problems(patient_record_, origin, complete=study_id not in unread)
            errors.extend(_locate(problem, origin) for problem in problems)
        if errors:
            raise ImportFailed(_sorted(errors))
        if progress:
            progress(80, "writing" if write else "comparing")
        summary = ImportSummary(recording=record)
        with audit_context(user=user, source=source):
            _write(records, sources, origin, summary, write=write)
        if write and summary.changes:
            patients = [record.patient.pk for record in records.values()]
            request_data_checks(patients)
            signals.outcomes_changed(patients=patients)
        return summary


def _problems(record: PatientRecord, origin: dict[int, SourceRow], *, complete: bool) -> list[validators.Problem]:
    """The validation layer's verdict on the imported rows, so that one run reports every error.
    An unreadable cell is reported once (by the reader): its row's other cells are still checked,
    leaving out the rules that read that cell; the patient's cross-form rules are not run, since
    they would only repeat the error in other words (a missing date seen as 'no re-induction
    dose'). Nor are they when one of the patient's rows could not be read at all (not `complete`)."""
    rows = [row for row in record.rows() if id(row) in origin]
    return validators.check(record, rows, skip=lambda row: origin[id(row)].failed, cross_form=complete)


def _locked(records: dict[str, PatientRecord], origin: dict[int, SourceRow]) -> list[str]:
    """Every file row that would write a locked record (SPEC section 10): the database would refuse
    it anyway; said here at its line, and nothing is written. One query, whatever the patients."""
    active = locks.active_for(record.patient for record in records.values())
    if not active:
        return []
    refused = []
    for record in records.values():
        for row in record.rows():
            source = origin.get(id(row))
            if source is None:
                continue
            stored = getattr(row, "_original", None)
            lock = locks.covering(record.patient, stored, among=active, form=source.form)
            if lock is not None:
                refused.append(f"{source.where}: study_id: {locks.message(lock)}")
    return refused


def _sorted(errors: list[str]) -> list[str]:
    order = {f"{form}.csv": index for index, form in enumerate(crf.FILES)}

    def key(error: str):
        name, line, _ = error.split(":", 2)
        return (order.get(name, -1), int(line) if line.isdigit() else 0)

    return sorted(dict.fromkeys(errors), key=key)


def _locate(problem: validators.Problem, origin: dict[int, SourceRow]) -> str:
    source = origin.get(id(problem.row))
    if source is not None:
        variable = "study_id" if problem.field == "patient" else problem.field
        return f"{source.where}: {variable}: {problem.message}"
    # A row already in the database that the imported rows would make invalid.
    form = crf.file_of(type(problem.row)).name
    owner = getattr(problem.row, "patient", problem.row)
    stored = _("(stored row %(row)s of %(patient)s)") % {"row": problem.row, "patient": owner}
    return f"{form}.csv:0: {problem.field}: {problem.message} {stored}"


def _existing_patients(study_ids: Iterable[str]) -> dict[str, Patient]:
    """The named patients with their whole CRF, in a fixed number of queries."""
    patients = with_forms(Patient.all_objects.filter(study_id__in=list(study_ids)), by_id=True, confirmations=False)
    return {patient.study_id: patient for patient in patients}


def _build_records(
    sources: dict[str, list[SourceRow]], errors: list[str], unread: set[str], writable: set[int] | None = None
) -> tuple[dict[str, PatientRecord], dict[int, SourceRow]]:
    """The records as they will be after the import, and where each new row came from. A patient
    whose patients.csv row could not be read (`unread`) is not reported again on every other row."""
    named = {row.study_id for rows in sources.values() for row in rows}
    existing = _existing_patients(named)
    if writable is not None:  # another centre's patients are not there for this user
        existing = {study_id: p for study_id, p in existing.items() if p.centre_id in writable}
        taken = named - existing.keys()
        taken = set(Patient.all_objects.filter(study_id__in=taken).values_list("study_id", flat=True))
    else:
        taken = set()
    centres = {centre.code: centre for centre in Centre.objects.all()}
    plan = _Plan(existing, centres, errors, unread, writable=writable, taken=taken)
    for source in sources.get("patients", []):
        plan.add_patient(source)
    for form, rows in sources.items():
        if form != "patients":
            plan.add_rows(crf.FILES[form], rows)
    return plan.records, plan.origin


@dataclass
class _Plan:
    """The records being built from the files: the stored patients they start from, and for each
    new or changed row the file row it came from (`origin`, by the row object's id)."""

    existing: dict[str, Patient]
    centres: dict[str, Centre]
    errors: list[str]
    unread: set[str]
    # The centres the user may write (None: any), and the study IDs their other centres' patients hold.
    writable: set[int] | None = None
    taken: set[str] = field(default_factory=set)
    records: dict[str, PatientRecord] = field(default_factory=dict)
    origin: dict[int, SourceRow] = field(default_factory=dict)
    seen: dict[str, SourceRow] = field(default_factory=dict)

    def add_patient(self, source: SourceRow) -> None:
        """A patients.csv row: a new patient, or the changed values of a stored one."""
        if source.study_id in self.seen:
            message = _("%(study_id)s is given twice (also on line %(line)d).")
            values = {"study_id": shown(source.study_id), "line": self.seen[source.study_id].line}
            self.errors.append(f"{source.where}: study_id: " + message % values)
            return
        self.seen[source.study_id] = source
        centre = self._centre(source)
        if centre is not None and self.writable is not None and centre.pk not in self.writable:
            message = _("you cannot enter data at centre %(centre)s.") % {"centre": centre.code}
            self.errors.append(f"patients.csv:{source.line}: centre: {message}")
            return
        if source.study_id in self.taken:
            # Held by a patient this user cannot see: said without telling whose it is.
            message = _("%(study_id)s cannot be used.") % {"study_id": shown(source.study_id)}
            self.errors.append(f"patients.csv:{source.line}: study_id: {message}")
            return
        stored = self.existing.get(source.study_id)
        if stored is not None and centre is not None:
            if stored.is_removed:
                message = _("%(study_id)s was deleted.") % {"study_id": shown(source.study_id)}
                self.errors.append(f"{source.where}: study_id: {message}")
                return
            if stored.centre_id != centre.pk:
                message = _("%(study_id)s belongs to %(centre)s; a patient never moves between centres.")
                values = {"study_id": shown(source.study_id), "centre": stored.centre.code}
                self.errors.append(f"{source.where}: centre: " + message % values)
                return
            patient = _copy(stored)
        else:
            patient = Patient(centre=centre, form_status=FormStatus.COMPLETE)
            stored = None
        for name, value in source.values.items():
            if name != "centre":
                setattr(patient, name, value)
        self.origin[id(patient)] = source
        record = patient_record(stored, confirmations=False) if stored is not None else PatientRecord(patient)
        record.patient = patient
        self.records[source.study_id] = record

    def _centre(self, source: SourceRow) -> Centre | None:
        code = str(source.values["centre"] or "")
        centre = self.centres.get(code)
        if centre is None:
            if not code:
                message = _("is required.")
            else:
                message = _("no centre with code '%(code)s'; create it first with `%(command)s`.") % {
                    "code": shown(code),
                    "command": f'manage.py create_centre {shown(code)} "Name"',
                }
            self.errors.append(f"{source.where}: centre: {message}")
            source.failed.add("centre")
        return centre

    def add_rows(self, form: crf.CaseForm, rows: list[SourceRow]) -> None:
        """The rows of another form's file: a repeating form's rows replace the patient's stored
        ones; a one-per-patient form's row changes the stored row (or is new)."""
        replaced: set[str] = set()
        single_seen: dict[str, int] = {}
        for source in rows:
            record = self._record_of(form, source)
            if record is None:
                continue
            values = {k: v for k, v in source.values.items() if k != "study_id"}
            if form.many:
                if source.study_id not in replaced:
                    setattr(record, form.attribute, [])
                    replaced.add(source.study_id)
                row = form.model(patient=record.patient, form_status=FormStatus.COMPLETE, **values)
                getattr(record, form.attribute).append(row)
            else:
                if source.study_id in single_seen:
                    message = _("%(study_id)s is given twice (one row per patient; also on line %(line)d).")
                    values = {"study_id": shown(source.study_id), "line": single_seen[source.study_id]}
                    self.errors.append(f"{source.where}: study_id: " + message % values)
                    continue
                single_seen[source.study_id] = source.line
                current = getattr(record, form.attribute)
                row = _copy(current) if current is not None else form.model(form_status=FormStatus.COMPLETE)
                row.patient = record.patient
                for name, value in values.items():
                    setattr(row, name, value)
                setattr(record, form.attribute, row)
            self.origin[id(row)] = source

    def _record_of(self, form: crf.CaseForm, source: SourceRow) -> PatientRecord | None:
        """The record a row belongs to: built from patients.csv, or the stored patient's."""
        record = self.records.get(source.study_id)
        if record is not None:
            return record
        stored = self.existing.get(source.study_id)
        if stored is None and source.study_id in self.unread:
            return None
        if stored is None or stored.is_removed:
            message = _("unknown patient %(study_id)s; new patients must be in patients.csv.")
            self.errors.append(f"{source.where}: study_id: " + message % {"study_id": shown(source.study_id)})
            return None
        record = self.records[source.study_id] = patient_record(stored, confirmations=False)
        return record


def _copy(row: models.Model) -> models.Model:
    """A detached copy of a stored row, so the stored values stay available for comparison."""
    clone = type(row)()
    for f in row._meta.concrete_fields:
        setattr(clone, f.attname, getattr(row, f.attname))
    clone._state.adding = False
    clone._state.db = row._state.db
    # What was read with it (the centre, the prefetched forms) comes along: no query per patient.
    clone._state.fields_cache = dict(row._state.fields_cache)
    if hasattr(row, "_prefetched_objects_cache"):
        clone._prefetched_objects_cache = row._prefetched_objects_cache  # type: ignore[attr-defined]
    clone._original = row  # type: ignore[attr-defined]
    return clone


def _data_fields(model: type[models.Model]) -> list[str]:
    return [_attname(model, csvformat.field_name(v)) for v in crf.file_of(model).variables if v.name != "study_id"]


def _attname(model: type[models.Model], name: str) -> str:
    return model._meta.get_field(name).attname


def _write(
    records: dict[str, PatientRecord],
    sources: dict[str, list[SourceRow]],
    origin: dict[int, SourceRow],
    summary: ImportSummary,
    *,
    write: bool,
) -> None:
    """Row by row: what to create, change or delete, recorded in `summary`; written when `write`."""
    named = {form: {source.study_id for source in rows} for form, rows in sources.items()}
    for record in records.values():
        patient = record.patient
        if id(patient) in origin:
            _save_single(patient, patient, "patients", summary, write=write)
        for form, case_form in crf.FILES.items():
            if form == "patients" or form not in sources:
                continue
            attribute = case_form.attribute
            if case_form.many:
                if patient.study_id in named[form]:
                    _replace_rows(patient, form, getattr(record, attribute), summary, write=write)
            else:
                row = getattr(record, attribute)
                if row is not None and id(row) in origin:
                    row.patient = patient
                    _save_single(row, patient, form, summary, write=write)


def _variables(model: type[models.Model]) -> list[tuple[str, str]]:
    """(variable, column) of the model's data variables, in the dictionary's order."""
    return [
        (v.name, _attname(model, csvformat.field_name(v))) for v in crf.file_of(model).variables if v.name != "study_id"
    ]


def _text(row: models.Model | None, variable: str, attname: str) -> str:
    """A row's value as the import files write it (the centre by its code)."""
    if row is None:
        return ""
    if variable == "centre":
        return row.centre.code if row.centre_id else ""
    return csvformat.cell_text(getattr(row, attname))


def _fields(
    model: type[models.Model], old: models.Model | None, new: models.Model | None, columns=None
) -> list[list[str]]:
    """[variable, old, new] of the given columns (all: of those with a value on either side)."""
    fields = []
    for variable, attname in _variables(model):
        if columns is not None and attname not in columns:
            continue
        before, after = _text(old, variable, attname), _text(new, variable, attname)
        if columns is not None or before or after:
            fields.append([variable, before, after])
    return fields


def _row_name(row: models.Model, form: str) -> str:
    """Which row of a repeating form a change is on: the assessment's visit, else the row's first
    two values (a dose's date and phase, a biologic and its start)."""
    if not crf.FILES[form].many:
        return ""
    if isinstance(row, Assessment):
        return row.visit
    return " ".join(text for text in (_text(row, v, a) for v, a in _variables(type(row))[:2]) if text)


def _save_single(row: models.Model, patient: Patient, form: str, summary: ImportSummary, *, write: bool) -> None:
    original = getattr(row, "_original", None)
    if original is None:
        summary.record(patient, form, "created", "", _fields(type(row), None, row))
        if write:
            row.save()
        summary.created[form] += 1
        return
    changed = [name for name in _data_fields(type(row)) if getattr(row, name) != getattr(original, name)]
    if not changed:
        summary.unchanged[form] += 1
        return
    summary.record(patient, form, "changed", "", _fields(type(row), original, row, changed))
    if write:
        row.version = original.version + 1
        row.save(update_fields=[*changed, "version", "updated_at"])
    summary.updated[form] += 1


def _row_key(row: models.Model) -> tuple:
    return tuple(_normalise(getattr(row, name)) for name in _data_fields(type(row)))


def _normalise(value: object) -> object:
    return value.normalize() if isinstance(value, Decimal) else value


def _replace_rows(
    patient: Patient, form: str, rows: list[models.Model], summary: ImportSummary, *, write: bool
) -> None:
    """A patient's rows of a repeating form become the file's rows; identical rows stay as they are."""
    model = crf.FILES[form].model
    # The stored rows as _existing_patients read them (prefetched, in id order).
    stored = list(getattr(patient, model._meta.default_related_name).all()) if patient.pk else []
    unmatched = defaultdict(list)
    for row in stored:
        unmatched[_row_key(row)].append(row)
    to_create = []
    for row in rows:
        same = unmatched.get(_row_key(row))
        if same:
            same.pop()
            summary.unchanged[form] += 1
        else:
            to_create.append(row)
    leftovers = [row for group in unmatched.values() for row in group]
    # An assessment keeps its identity per visit: update it in place, so its history reads as changes.
    if model is Assessment:
        by_visit = {row.visit: row for row in leftovers}
        for row in list(to_create):
            old = by_visit.pop(row.visit, None)
            if old is None:
                continue
            changed = [name for name in _data_fields(model) if getattr(row, name) != getattr(old, name)]
            summary.record(patient, form, "changed", _row_name(old, form), _fields(model, old, row, changed))
            if write:
                for name in changed:
                    setattr(old, name, getattr(row, name))
                old.version += 1
                old.save(update_fields=[*changed, "version", "updated_at"])
            summary.updated[form] += 1
            to_create.remove(row)
            leftovers.remove(old)
    for row in leftovers:
        summary.record(patient, form, "deleted", _row_name(row, form), _fields(model, row, None))
    if leftovers and write:
        model.objects.filter(pk__in=[row.pk for row in leftovers]).delete()
    summary.deleted[form] += len(leftovers)
    for row in to_create:
        row.patient = patient
        summary.record(patient, form, "created", _row_name(row, form), _fields(model, None, row))
    if write:
        model.objects.bulk_create(to_create)
    summary.created[form] += len(to_create)
