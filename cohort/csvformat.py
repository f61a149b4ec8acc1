"""The import format on disk (SPEC section 8, binding): reading a form's CSV file into typed rows,
every problem located as `file:row: variable: message`, and writing the forms' files back.

`DIR/<form>.csv` per form of the data dictionary; header = variable names in the dictionary's
order; UTF-8; empty = missing; dates YYYY-MM-DD; decimals with a dot. What the values mean (codes,
ranges, rules) is the validation layer's; this module only turns text into values and back.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.db import models
from django.utils import formats
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from cohort import crf, dictionary
from cohort.choices import Visit
from cohort.models import Patient

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
# The messages below are made in the language active where the import runs: the uploader's on the
# import page's worker (reports.imports), English on the command line.
TOO_LONG = {
    "integer": gettext_noop("'%(text)s' (%(length)s characters) is too long to be a whole number."),
    "decimal": gettext_noop("'%(text)s' (%(length)s characters) is too long to be a number."),
    "date": gettext_noop("'%(text)s' (%(length)s characters) is too long to be a date."),
    "": gettext_noop("'%(text)s' (%(length)s characters) is too long to be a code."),
}


# An error line `file:row: variable: message`, as every problem of an import is reported.
ERROR_PATTERN = re.compile(r"^(?P<file>[^:]*):(?P<row>[0-9]+): (?P<variable>[^:]*): (?P<message>.*)$", re.DOTALL)


def error_parts(error: str) -> dict[str, object]:
    """An error line's file, row, variable and message (the API's JSON object of an import error);
    a line of another shape is all message."""
    found = ERROR_PATTERN.match(error)
    if found is None:
        return {"file": "", "row": 0, "variable": "", "message": error}
    return {**found.groupdict(), "row": int(found["row"])}


@dataclass
class SourceRow:
    """One data row of one file: where it came from and its parsed values."""

    form: str
    line: int
    study_id: str
    values: dict[str, object]
    # Variables whose cell could not be read (already reported): the row's other checks are moot.
    failed: set[str] = field(default_factory=set)
    # The file it came from, when not the form's CSV file (an ODM file: cohort/odm.py).
    file: str = ""

    @property
    def where(self) -> str:
        """`file:row` of an error message."""
        return f"{self.file or self.form + '.csv'}:{self.line}"


# --- reading -------------------------------------------------------------------------------------


def shown(text: str, limit: int = 40) -> str:
    """A cell as an error message may quote it: on one line, printable, and not too long."""
    short = text if len(text) <= limit else text[:limit] + "…"
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in short)


def _count(number: int) -> str:
    """A count in a message, grouped as the active language writes thousands."""
    return formats.number_format(number, force_grouping=True)


def _unreadable(raw: str) -> str | None:
    """Why a cell cannot be taken as text at all, or None. The file is decoded with surrogateescape,
    so a byte that is not UTF-8 is a lone surrogate here, in its own cell."""
    found = UNREADABLE.search(raw)
    if found is None:
        return None
    ch, position = found.group(), found.start() + 1
    if ch >= "\udc80":
        message = _("not UTF-8 text (byte %(byte)s at character %(position)d); save the file as UTF-8.")
        return message % {"byte": f"0x{ord(ch) - 0xDC00:02X}", "position": position}
    name = "NUL" if ch == "\0" else f"U+{ord(ch):04X}"
    message = _("contains a control character (%(name)s, at character %(position)d); only printable text is allowed.")
    return message % {"name": name, "position": position}


def parse_cell(variable: dictionary.Variable, raw: str) -> object:
    """The value of one cell, or ValueError with what is allowed. Ranges and codes are the model's
    (constraints and choices), checked later by the validation layer. Whatever is returned has the
    field's type (or is None), so the rules never compare a string with a date."""
    problem = _unreadable(raw)
    if problem:
        raise ValueError(problem)
    text = raw.strip()
    field = crf.FILES[variable.form].model._meta.get_field(field_name(variable))
    if text == "":
        return "" if isinstance(field, models.CharField) and not field.null else None
    if variable.type == "text":
        if len(text) > MAX_TEXT_LENGTH:
            message = _("is %(length)s characters long; %(variable)s takes at most %(most)d.")
            raise ValueError(
                message
                % {"length": _count(len(text)), "variable": variable.name, "most": field.max_length or MAX_TEXT_LENGTH}
            )
        return text
    if len(text) > MAX_CODE_LENGTH:
        message = _(TOO_LONG.get(variable.type, TOO_LONG[""]))
        raise ValueError(message % {"text": shown(text), "length": _count(len(text))})
    if variable.type == "integer":
        if not INTEGER_PATTERN.fullmatch(text):
            raise ValueError(_("'%(text)s' is not a whole number.") % {"text": shown(text)})
        return int(text)
    if variable.type == "decimal":
        if not DECIMAL_PATTERN.fullmatch(text):
            raise ValueError(_("'%(text)s' is not a number (digits, with a dot for decimals).") % {"text": shown(text)})
        return Decimal(text)
    if variable.type == "date":
        try:
            if not DATE_PATTERN.fullmatch(text):
                raise ValueError
            return dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError(_("'%(text)s' is not a valid date (YYYY-MM-DD).") % {"text": shown(text)}) from None
    return text


def field_name(variable: dictionary.Variable) -> str:
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
            message = _("not readable as CSV (%(error)s); the rest of the file was not read.") % {"error": error}
            errors.append(f"{name}:{last + 1}: row: {message}")
            return
        yield _Record(line=last + 1, last_line=reader.line_num, cells=cells)
        last = reader.line_num


def read_file(path: Path, form: str, errors: list[str], unread: set[str]) -> list[SourceRow]:
    """The rows of one file. Every problem is located at its line (and variable); a row that could
    not be read at all is left out, and its patient (if known) added to `unread`."""
    variables = {v.name: v for v in dictionary.forms()[form]}
    name = path.name
    try:
        data = path.read_bytes()
    except OSError as error:
        errors.append(f"{name}:1: file: " + _("cannot be read (%(error)s).") % {"error": error.strerror})
        return []
    # Decoding byte by byte, not the file at once: a byte that is not UTF-8 is reported in its cell.
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    # csv refuses cells over 128 KiB with an exception; a long cell is reported by parse_cell instead.
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
        if first is None:
            message = _("the file is empty; the first line must name the variables.")
        else:
            message = _("line 1 is empty; the first line must name the variables.")
        errors.append(f"{name}:1: header: {message}")
        return []
    header = [column.strip() for column in first.cells]
    problem = next(filter(None, map(_unreadable, header)), None)
    if problem:
        message = _("line 1 is not a header of variable names (is this a CSV file?): %(problem)s")
        errors.append(f"{name}:1: header: " + message % {"problem": problem})
        return []
    header_ok = True
    for number, column in enumerate(header, 1):
        if column in variables:
            continue
        header_ok = False
        if not column:
            errors.append(f"{name}:1: header: " + _("column %(number)d has no name.") % {"number": number})
        elif NAME_PATTERN.fullmatch(column):
            errors.append(f"{name}:1: {column}: " + _("unknown variable for form %(form)s.") % {"form": form})
        else:
            message = _("column %(number)d ('%(column)s') is not a variable of form %(form)s.")
            errors.append(f"{name}:1: header: " + message % {"number": number, "column": shown(column), "form": form})
    for column in sorted({c for c in header if c in variables and header.count(c) > 1}):
        errors.append(f"{name}:1: {column}: " + _("column given twice."))
        header_ok = False
    for variable in variables:
        if variable not in header:
            errors.append(f"{name}:1: {variable}: " + _("column missing (every variable of the form must be present)."))
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
            counts = {"values": len(cells), "columns": len(header), "last": record.last_line}
            if record.last_line > line:
                count = _(
                    "%(values)d values for %(columns)d columns; the row runs on to line %(last)d (a quote not closed?)"
                )
            else:
                count = _("%(values)d values for %(columns)d columns")
            count %= counts
            if len(cells) < len(header):
                message = _("missing: the row has %(count)s.") % {"count": count}
                errors.append(f"{name}:{line}: {header[len(cells)]}: {message}")
            else:
                errors.append(f"{name}:{line}: row: {count}.")
            continue
        source = source_row(form, name, line, zip(header, cells, strict=True), errors)
        if source is not None:
            rows.append(source)
    return rows


def source_row(
    form: str,
    name: str,
    line: int,
    cells: Iterable[tuple[str, str]],
    errors: list[str],
    *,
    lines: dict[str, int] | None = None,
    file: str = "",
) -> SourceRow | None:
    """One row from its (variable, text) cells, every cell parsed, each problem reported at
    `name:line` (or at the cell's own line in `lines`); None when whose row it is cannot be known.
    The CSV reader and the ODM reader (cohort/odm.py) both build their rows here."""
    variables = {v.name: v for v in dictionary.forms()[form]}
    source = SourceRow(form=form, line=line, study_id="", values={}, file=file)
    for column, raw in cells:
        try:
            source.values[column] = parse_cell(variables[column], raw)
        except ValueError as error:
            errors.append(f"{name}:{(lines or {}).get(column, line)}: {column}: {error}")
            source.values[column] = None
            source.failed.add(column)
    if "study_id" in source.failed:
        return None  # reported; whose row it is cannot be known
    source.study_id = str(source.values.get("study_id") or "")
    if not source.study_id:
        errors.append(f"{name}:{line}: study_id: " + _("is required."))
        return None
    return source


# --- writing -------------------------------------------------------------------------------------


def cell_text(value: object) -> str:
    """A value as the import format writes it: empty for missing, YYYY-MM-DD, decimals with a dot
    and no trailing zeros (4.7, never 4.70 or 4,7), codes and text as they are. The exports' CSV
    files (wide dataset, audit trail) write their cells with it too."""
    if value is None:
        return ""
    if type(value) is str:  # most cells, and the wide export writes millions: no isinstance chain
        return value
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _sort_key(form: str, raw: dict[str, object], values: list[str]) -> tuple:
    study_id = values[0]
    if form == "assessments":
        return (study_id, VISIT_ORDER[raw["visit"]], values)
    if form == "ustekinumab_doses":
        return (study_id, values[1], PHASE_ORDER[raw["phase"]], values)
    date = {"prior_biologics": "start_date", "adverse_events": "onset_date"}.get(form)
    if date:
        return (study_id, cell_text(raw[date]) or "9999", values)
    return (study_id, values)


# Patients per chunk of an export: the rows of 5,000 patients in memory at a time.
EXPORT_CHUNK = 5000


def export_rows(form: str, patients: models.QuerySet | None = None) -> tuple[list[str], list[list[str]]]:
    """The header and rows of one form file, sorted as SPEC section 8 says."""
    header = [v.name for v in crf.FILES[form].variables]
    patients = Patient.objects.all() if patients is None else patients
    return header, [row for chunk in patient_chunks(patients) for row in _chunk_rows(form, chunk)]


def patient_chunks(patients: models.QuerySet, size: int = EXPORT_CHUNK) -> list[list[int]]:
    """The patients' keys in study ID order (Python's, as the rows are sorted), `size` at a time:
    every file is sorted by study ID first, so sorting chunk by chunk gives the whole file's order."""
    keys = [pk for _, pk in sorted(patients.values_list("study_id", "pk"))]
    return [keys[start : start + size] for start in range(0, len(keys), size)]


def _chunk_rows(form: str, patient_keys: list[int]) -> list[list[str]]:
    """One chunk of patients' rows of a form, sorted; plain values in one query, no model instances."""
    return [values for _, values in chunk_records(form, patient_keys)]


def chunk_records(form: str, patient_keys: list[int]) -> list[tuple[int, list[str]]]:
    """`_chunk_rows` with each row's id (the ODM export attaches the row's audit trail by it)."""
    model = crf.FILES[form].model
    names = [v.name for v in crf.FILES[form].variables]
    if model is Patient:
        queryset = Patient.all_objects.filter(pk__in=patient_keys)
        lookups = ["centre__code" if name == "centre" else name for name in names]
    else:
        queryset = model.objects.filter(patient_id__in=patient_keys)
        lookups = ["patient__study_id" if name == "study_id" else name for name in names]
    rows = []
    for pk, *raw_values in queryset.values_list("pk", *lookups):
        raw = dict(zip(names, raw_values, strict=True))
        values = [cell_text(value) for value in raw_values]
        rows.append((_sort_key(form, raw, values), pk, values))
    rows.sort(key=lambda item: item[0])
    return [(pk, values) for _, pk, values in rows]


def patient_files(patient_key: int) -> dict[str, list[dict[str, str]]]:
    """One patient's rows of every form file, as the files would have them (variable name -> cell
    text, in the dictionary's order, rows in the files' order): what the API shows of a patient.
    One query per form."""
    result = {}
    for form, spec in crf.FILES.items():
        names = [v.name for v in spec.variables]
        result[form] = [dict(zip(names, values, strict=True)) for values in _chunk_rows(form, [patient_key])]
    return result


def export_cohort(directory: Path, patients: models.QuerySet | None = None) -> dict[str, int]:
    """Write one CSV per form into `directory`; returns the row count per file. Written chunk by
    chunk of patients (EXPORT_CHUNK): 100,000 patients' two million rows are never held at once."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    patients = Patient.objects.all() if patients is None else patients
    chunks = patient_chunks(patients)
    counts = {}
    for form, spec in crf.FILES.items():
        with (directory / f"{form}.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow([v.name for v in spec.variables])
            counts[form] = 0
            for chunk in chunks:
                rows = _chunk_rows(form, chunk)
                writer.writerows(rows)
                counts[form] += len(rows)
    return counts
