"""CSV import and export of the whole cohort (SPEC section 8, binding).

`DIR/<form>.csv` per form of the data dictionary; header = variable names; empty = missing.
Import is all-or-nothing: every error is collected as `file:row: variable: message` and nothing is
written unless there are none. The files are the truth for the patients they name; rows that did not
change are left alone, so importing the same files twice writes nothing (and no audit events).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.contrib.auth.models import User
from django.db import models, transaction

from cohort import crf, dictionary, signals, validators
from cohort.choices import FormStatus, Visit
from cohort.crf import PatientRecord
from cohort.models import (
    Assessment,
    Centre,
    Patient,
)
from cohort.services import audit_context, patient_record, with_forms

VISIT_ORDER = {visit: index for index, visit in enumerate(Visit.values)}
PHASE_ORDER = {"initial_induction": 0, "maintenance": 1, "reinduction": 2}
# ASCII digits only: `\d` would also take other scripts' digits, which export could not write back.
DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
INTEGER_PATTERN = re.compile(r"[+-]?[0-9]+")
DECIMAL_PATTERN = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")
# A header cell that can be reported as the variable of a `file:row: variable: message` line.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")
# Codes, dates and numbers are short: a longer cell is none of them (and is not echoed in full).
MAX_CODE_LENGTH = 64
# Longer than any text variable takes (their max_length): refused before the rules and the database.
MAX_TEXT_LENGTH = 1000
# Every variable is one line of text: the control characters (Unicode Cc) are refused, but for a tab
# (which can be pasted into a web form, so export can write it); the lone surrogates are the bytes
# that were not UTF-8.
UNREADABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\udc80-\udcff]")
KIND = {"integer": "whole number", "decimal": "number", "date": "date"}


class ImportFailed(Exception):
    def __init__(self, errors: list[str]):
        super().__init__(f"{len(errors)} error(s); nothing was imported.")
        self.errors = errors


@dataclass
class ImportSummary:
    created: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    updated: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    deleted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unchanged: dict[str, int] = field(default_factory=lambda: defaultdict(int))

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


@dataclass
class SourceRow:
    """One data row of one file: where it came from and its parsed values."""

    form: str
    line: int
    study_id: str
    values: dict[str, object]
    # Variables whose cell could not be read (already reported): the row's other checks are moot.
    failed: set[str] = field(default_factory=set)


# --- reading -------------------------------------------------------------------------------------


def _shown(text: str, limit: int = 40) -> str:
    """A cell as an error message may quote it: on one line, printable, and not too long."""
    short = text if len(text) <= limit else text[:limit] + "…"
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in short)


def _unreadable(raw: str) -> str | None:
    """Why a cell cannot be taken as text at all, or None. The file is decoded with surrogateescape,
    so a byte that is not UTF-8 is a lone surrogate here, in its own cell."""
    found = UNREADABLE.search(raw)
    if found is None:
        return None
    ch, position = found.group(), found.start() + 1
    if ch >= "\udc80":
        return f"not UTF-8 text (byte 0x{ord(ch) - 0xDC00:02X} at character {position}); save the file as UTF-8."
    name = "NUL" if ch == "\0" else f"U+{ord(ch):04X}"
    return f"contains a control character ({name}, at character {position}); only printable text is allowed."


def _parse(variable: dictionary.Variable, raw: str) -> object:
    """The value of one cell, or ValueError with what is allowed. Ranges and codes are the model's
    (constraints and choices), checked later by the validation layer. Whatever is returned has the
    field's type (or is None), so the rules never compare a string with a date."""
    problem = _unreadable(raw)
    if problem:
        raise ValueError(problem)
    text = raw.strip()
    field = crf.FILES[variable.form].model._meta.get_field(_field_name(variable))
    if text == "":
        return "" if isinstance(field, models.CharField) and not field.null else None
    if variable.type == "text":
        if len(text) > MAX_TEXT_LENGTH:
            raise ValueError(f"is {len(text):,} characters long; {variable.name} takes at most {field.max_length}.")
        return text
    if len(text) > MAX_CODE_LENGTH:
        what = KIND.get(variable.type, "code")
        raise ValueError(f"'{_shown(text)}' ({len(text):,} characters) is too long to be a {what}.")
    if variable.type == "integer":
        if not INTEGER_PATTERN.fullmatch(text):
            raise ValueError(f"'{_shown(text)}' is not a whole number.")
        return int(text)
    if variable.type == "decimal":
        if not DECIMAL_PATTERN.fullmatch(text):
            raise ValueError(f"'{_shown(text)}' is not a number (digits, with a dot for decimals).")
        return Decimal(text)
    if variable.type == "date":
        try:
            if not DATE_PATTERN.fullmatch(text):
                raise ValueError
            return dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"'{_shown(text)}' is not a valid date (YYYY-MM-DD).") from None
    return text


def _field_name(variable: dictionary.Variable) -> str:
    if variable.name == "study_id" and variable.form != "patients":
        return "patient"
    return variable.name


@dataclass
class _Record:
    """One CSV record: the line it starts on (a quoted value may run on over several lines)."""

    line: int
    last_line: int
    cells: list[str]


def _records(text: str, name: str, errors: list[str]) -> Iterator[_Record]:
    reader = csv.reader(io.StringIO(text, newline=""))
    last = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # not expected with the default dialect; the rest cannot be trusted
            errors.append(f"{name}:{last + 1}: row: not readable as CSV ({error}); the rest of the file was not read.")
            return
        yield _Record(line=last + 1, last_line=reader.line_num, cells=cells)
        last = reader.line_num


def _read_file(path: Path, form: str, errors: list[str], unread: set[str]) -> list[SourceRow]:
    """The rows of one file. Every problem is located at its line (and variable); a row that could
    not be read at all is left out, and its patient (if known) added to `unread`."""
    variables = {v.name: v for v in dictionary.forms()[form]}
    name = path.name
    try:
        data = path.read_bytes()
    except OSError as error:
        errors.append(f"{name}:1: file: cannot be read ({error.strerror}).")
        return []
    # Decoding byte by byte, not the file at once: a byte that is not UTF-8 is reported in its cell.
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    # csv refuses cells over 128 KiB with an exception; a long cell is reported by _parse instead.
    field_size_limit = csv.field_size_limit()
    csv.field_size_limit(max(field_size_limit, len(text) + 1))
    try:
        return _read_rows(_records(text, name, errors), name, form, variables, errors, unread)
    finally:
        csv.field_size_limit(field_size_limit)


def _read_rows(
    records: Iterator[_Record],
    name: str,
    form: str,
    variables: dict[str, dictionary.Variable],
    errors: list[str],
    unread: set[str],
) -> list[SourceRow]:
    first = next(records, None)
    if first is None or not any(cell.strip() for cell in first.cells):
        what = "the file is empty" if first is None else "line 1 is empty"
        errors.append(f"{name}:1: header: {what}; the first line must name the variables.")
        return []
    header = [column.strip() for column in first.cells]
    problem = next(filter(None, map(_unreadable, header)), None)
    if problem:
        errors.append(f"{name}:1: header: line 1 is not a header of variable names (is this a CSV file?): {problem}")
        return []
    header_ok = True
    for number, column in enumerate(header, 1):
        if column in variables:
            continue
        header_ok = False
        if not column:
            errors.append(f"{name}:1: header: column {number} has no name.")
        elif NAME_PATTERN.fullmatch(column):
            errors.append(f"{name}:1: {column}: unknown variable for form {form}.")
        else:
            errors.append(f"{name}:1: header: column {number} ('{_shown(column)}') is not a variable of form {form}.")
    for column in sorted({c for c in header if c in variables and header.count(c) > 1}):
        errors.append(f"{name}:1: {column}: column given twice.")
        header_ok = False
    for variable in variables:
        if variable not in header:
            errors.append(f"{name}:1: {variable}: column missing (every variable of the form must be present).")
            header_ok = False
    if not header_ok:
        return []

    key = header.index("study_id")
    rows = []
    for record in records:
        cells, line = record.cells, record.line
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            # The patient's other rows are still read, but not judged against each other without it.
            unread.add(cells[key].strip() if key < len(cells) else "")
            count = f"{len(cells)} values for {len(header)} columns"
            if record.last_line > line:
                count += f"; the row runs on to line {record.last_line} (a quote not closed?)"
            if len(cells) < len(header):
                errors.append(f"{name}:{line}: {header[len(cells)]}: missing: the row has {count}.")
            else:
                errors.append(f"{name}:{line}: row: {count}.")
            continue
        source = SourceRow(form=form, line=line, study_id="", values={})
        for column, raw in zip(header, cells, strict=True):
            try:
                source.values[column] = _parse(variables[column], raw)
            except ValueError as error:
                errors.append(f"{name}:{line}: {column}: {error}")
                source.values[column] = None
                source.failed.add(column)
        if "study_id" in source.failed:
            continue  # reported; whose row it is cannot be known
        source.study_id = str(source.values.get("study_id") or "")
        if not source.study_id:
            errors.append(f"{name}:{line}: study_id: is required.")
            continue
        rows.append(source)
    return rows


# --- import --------------------------------------------------------------------------------------


def import_cohort(directory: Path, *, user: User | None) -> ImportSummary:
    """Validate every file, then write everything or nothing. Raises ImportFailed."""
    directory = Path(directory)
    errors: list[str] = []
    sources: dict[str, list[SourceRow]] = {}
    unread: set[str] = set()  # patients with a row that could not be read
    for form in crf.FILES:
        path = directory / f"{form}.csv"
        if path.exists():
            sources[form] = _read_file(path, form, errors, unread)
    if not (directory.is_dir() and any((directory / f"{form}.csv").exists() for form in crf.FILES)):
        raise ImportFailed([f"{directory}:0: directory: no form files found (expected e.g. patients.csv)."])

    with transaction.atomic():
        records, origin = _build_records(sources, errors, unread)
        for study_id, record in records.items():
            problems = _problems(record, origin, complete=study_id not in unread)
            errors.extend(_locate(problem, origin) for problem in problems)
        if errors:
            raise ImportFailed(_sorted(errors))
        with audit_context(user=user, source="import_cohort"):
            summary = _write(records, sources, origin)
        if summary.changes:
            signals.outcomes_changed()
        return summary


def _problems(record: PatientRecord, origin: dict[int, SourceRow], *, complete: bool) -> list[validators.Problem]:
    """The validation layer's verdict on the imported rows, so that one run reports every error.
    An unreadable cell is reported once (by the reader): its row's other cells are still checked,
    leaving out the rules that read that cell; the patient's cross-form rules are not run, since
    they would only repeat the error in other words (a missing date seen as 'no re-induction
    dose'). Nor are they when one of the patient's rows could not be read at all (not `complete`)."""
    rows = [row for row in record.rows() if id(row) in origin]
    problems = [problem for row in rows for problem in validators.row_problems(row, skip=origin[id(row)].failed)]
    if complete and not any(origin[id(row)].failed for row in rows):
        problems.extend(validators.cross_form_problems(record))
    return problems


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
        return f"{source.form}.csv:{source.line}: {variable}: {problem.message}"
    # A row already in the database that the imported rows would make invalid.
    form = crf.file_of(type(problem.row)).name
    owner = getattr(problem.row, "patient", problem.row)
    return f"{form}.csv:0: {problem.field}: {problem.message} (stored row {problem.row} of {owner})"


def _existing_patients(study_ids: Iterable[str]) -> dict[str, Patient]:
    """The named patients with their whole CRF, in a fixed number of queries."""
    patients = with_forms(Patient.all_objects.filter(study_id__in=list(study_ids)), by_id=True, confirmations=False)
    return {patient.study_id: patient for patient in patients}


def _build_records(
    sources: dict[str, list[SourceRow]], errors: list[str], unread: set[str]
) -> tuple[dict[str, PatientRecord], dict[int, SourceRow]]:
    """The records as they will be after the import, and where each new row came from. A patient
    whose patients.csv row could not be read (`unread`) is not reported again on every other row."""
    named = {row.study_id for rows in sources.values() for row in rows}
    existing = _existing_patients(named)
    centres = {centre.code: centre for centre in Centre.objects.all()}
    origin: dict[int, SourceRow] = {}
    records: dict[str, PatientRecord] = {}

    seen_patients: dict[str, SourceRow] = {}
    for source in sources.get("patients", []):
        if source.study_id in seen_patients:
            errors.append(
                f"patients.csv:{source.line}: study_id: {_shown(source.study_id)} is given twice "
                f"(also on line {seen_patients[source.study_id].line})."
            )
            continue
        seen_patients[source.study_id] = source
        code = str(source.values["centre"] or "")
        centre = centres.get(code)
        if centre is None:
            message = (
                "is required."
                if not code
                else (
                    f"no centre with code '{_shown(code)}'; "
                    f'create it first with `manage.py create_centre {_shown(code)} "Name"`.'
                )
            )
            errors.append(f"patients.csv:{source.line}: centre: {message}")
            source.failed.add("centre")
        values = {k: v for k, v in source.values.items() if k != "centre"}
        stored = existing.get(source.study_id)
        if stored is not None and centre is not None:
            if stored.deleted_at is not None:
                errors.append(f"patients.csv:{source.line}: study_id: {_shown(source.study_id)} was deleted.")
                continue
            if stored.centre_id != centre.pk:
                errors.append(
                    f"patients.csv:{source.line}: centre: {_shown(source.study_id)} belongs to {stored.centre.code}; "
                    "a patient never moves between centres."
                )
                continue
            patient = _copy(stored)
        else:
            patient = Patient(centre=centre, form_status=FormStatus.COMPLETE)
            stored = None
        for name, value in values.items():
            setattr(patient, name, value)
        origin[id(patient)] = source
        record = patient_record(stored, confirmations=False) if stored is not None else PatientRecord(patient)
        record.patient = patient
        records[source.study_id] = record

    for form, rows in sources.items():
        if form == "patients":
            continue
        attribute = crf.FILES[form].attribute
        model = crf.FILES[form].model
        replaced: set[str] = set()
        single_seen: dict[str, int] = {}
        for source in rows:
            record = records.get(source.study_id)
            if record is None:
                stored = existing.get(source.study_id)
                if stored is None and source.study_id in unread:
                    continue
                if stored is None or stored.deleted_at is not None:
                    errors.append(
                        f"{form}.csv:{source.line}: study_id: unknown patient {_shown(source.study_id)}; "
                        "new patients must be in patients.csv."
                    )
                    continue
                record = records[source.study_id] = patient_record(stored, confirmations=False)
            values = {k: v for k, v in source.values.items() if k != "study_id"}
            if crf.FILES[form].many:
                if source.study_id not in replaced:
                    setattr(record, attribute, [])
                    replaced.add(source.study_id)
                row = model(patient=record.patient, form_status=FormStatus.COMPLETE, **values)
                getattr(record, attribute).append(row)
            else:
                if source.study_id in single_seen:
                    errors.append(
                        f"{form}.csv:{source.line}: study_id: {_shown(source.study_id)} is given twice "
                        f"(one row per patient; also on line {single_seen[source.study_id]})."
                    )
                    continue
                single_seen[source.study_id] = source.line
                current = getattr(record, attribute)
                row = _copy(current) if current is not None else model(form_status=FormStatus.COMPLETE)
                row.patient = record.patient
                for name, value in values.items():
                    setattr(row, name, value)
                setattr(record, attribute, row)
            origin[id(row)] = source
    return records, origin


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
    return [_attname(model, _field_name(v)) for v in crf.file_of(model).variables if v.name != "study_id"]


def _attname(model: type[models.Model], name: str) -> str:
    return model._meta.get_field(name).attname


def _write(
    records: dict[str, PatientRecord], sources: dict[str, list[SourceRow]], origin: dict[int, SourceRow]
) -> ImportSummary:
    summary = ImportSummary()
    named = {form: {source.study_id for source in rows} for form, rows in sources.items()}
    for record in records.values():
        patient = record.patient
        if id(patient) in origin:
            _save_single(patient, "patients", summary)
        for form, case_form in crf.FILES.items():
            if form == "patients" or form not in sources:
                continue
            attribute = case_form.attribute
            if case_form.many:
                if patient.study_id in named[form]:
                    _replace_rows(patient, form, getattr(record, attribute), summary)
            else:
                row = getattr(record, attribute)
                if row is not None and id(row) in origin:
                    row.patient = patient
                    _save_single(row, form, summary)
    return summary


def _save_single(row: models.Model, form: str, summary: ImportSummary) -> None:
    original = getattr(row, "_original", None)
    if original is None:
        row.save()
        summary.created[form] += 1
        return
    changed = [name for name in _data_fields(type(row)) if getattr(row, name) != getattr(original, name)]
    if not changed:
        summary.unchanged[form] += 1
        return
    row.version = original.version + 1
    row.save(update_fields=[*changed, "version", "updated_at"])
    summary.updated[form] += 1


def _row_key(row: models.Model) -> tuple:
    return tuple(_normalise(getattr(row, name)) for name in _data_fields(type(row)))


def _normalise(value: object) -> object:
    return value.normalize() if isinstance(value, Decimal) else value


def _replace_rows(patient: Patient, form: str, rows: list[models.Model], summary: ImportSummary) -> None:
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
            for name in changed:
                setattr(old, name, getattr(row, name))
            old.version += 1
            old.save(update_fields=[*changed, "version", "updated_at"])
            summary.updated[form] += 1
            to_create.remove(row)
            leftovers.remove(old)
    if leftovers:
        model.objects.filter(pk__in=[row.pk for row in leftovers]).delete()
        summary.deleted[form] += len(leftovers)
    for row in to_create:
        row.patient = patient
    model.objects.bulk_create(to_create)
    summary.created[form] += len(to_create)


# --- export --------------------------------------------------------------------------------------


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text
    return str(value)


def _sort_key(form: str, row: models.Model, values: list[str]) -> tuple:
    study_id = values[0]
    if form == "assessments":
        return (study_id, VISIT_ORDER[row.visit], values)
    if form == "ustekinumab_doses":
        return (study_id, values[1], PHASE_ORDER[row.phase], values)
    date = {"prior_biologics": "start_date", "adverse_events": "onset_date"}.get(form)
    if date:
        return (study_id, _format(getattr(row, date)) or "9999", values)
    return (study_id, values)


def export_rows(form: str, patients: models.QuerySet | None = None) -> tuple[list[str], list[list[str]]]:
    """The header and rows of one form file, sorted as SPEC section 8 says."""
    model = crf.FILES[form].model
    variables = crf.FILES[form].variables
    header = [v.name for v in variables]
    patients = Patient.objects.all() if patients is None else patients
    if model is Patient:
        queryset = patients.select_related("centre")
    else:
        queryset = model.objects.filter(patient__in=patients).select_related("patient")
    rows = []
    for row in queryset:
        values = []
        for variable in variables:
            if variable.name == "study_id":
                values.append(row.study_id if model is Patient else row.patient.study_id)
            elif variable.name == "centre":
                values.append(row.centre.code)
            else:
                values.append(_format(getattr(row, variable.name)))
        rows.append((_sort_key(form, row, values), values))
    rows.sort(key=lambda item: item[0])
    return header, [values for _, values in rows]


def export_cohort(directory: Path, patients: models.QuerySet | None = None) -> dict[str, int]:
    """Write one CSV per form into `directory`; returns the row count per file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counts = {}
    for form in crf.FILES:
        header, rows = export_rows(form, patients)
        with (directory / f"{form}.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        counts[form] = len(rows)
    return counts
