"""Data exports (SPEC section 7): the import-format CSVs, the wide analysis dataset (CSV, XLSX, SPSS,
Stata; its rows and columns come from reports/dataset.py), the data dictionary and the audit trail
(from cohort/audit.py).

Every function takes the queryset of patients the user may see (cohort.access.patients_for_user):
nothing here decides access. Soft-deleted patients are left out, as in every analysis; their audit
trail stays.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tempfile
import zipfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path

from django.db.models import QuerySet
from django.utils import timezone
from xlsxwriter.utility import xl_col_to_name

from cohort import audit, crf, odm
from cohort.csvformat import cell_text, export_cohort
from cohort.models import Centre
from reports.dataset import DICTIONARY_HEADER, Column, dictionary_rows, wide_stream

Progress = Callable[[int, str], None] | None

EXPORT_KINDS: dict[str, tuple[str, str]] = {
    "import_csv_zip": (".zip", "Import-format CSV files (zip, with the data dictionary)"),
    "wide_csv": (".csv", "Analysis dataset, one row per patient (CSV)"),
    "wide_xlsx": (".xlsx", "Analysis dataset, one row per patient (Excel)"),
    "wide_sav": (".sav", "Analysis dataset, one row per patient (SPSS)"),
    "wide_dta": (".dta", "Analysis dataset, one row per patient (Stata)"),
    "dictionary_csv": (".csv", "Data dictionary with the SPSS/Stata codes (CSV)"),
    "audit_csv": (".csv", "Audit trail, one row per changed field (CSV)"),
    "odm_xml": (".xml", "CDISC ODM 1.3.2: metadata, clinical data and audit records (XML)"),
}
# `export_dataset --format` (SPEC section 8): the command's name of each export kind.
FORMATS: dict[str, str] = {
    "csv": "wide_csv",
    "xlsx": "wide_xlsx",
    "sav": "wide_sav",
    "dta": "wide_dta",
    "odm": "odm_xml",
    "audit": "audit_csv",
    "dictionary": "dictionary_csv",
    "import_zip": "import_csv_zip",
}

# Audit columns that say again what the study_id and record_id columns say (cohort.audit leaves out
# the bookkeeping); the centre is kept, as its code.
AUDIT_SKIPPED = frozenset().union(*(crf.attnames(model, set(crf.KEYS) - {"centre"}) for model in audit.PATIENT_MODELS))
AUDIT_HEADER = [
    "when_utc",
    "user",
    "reason",
    "source",
    "study_id",
    "form",
    "record_id",
    "action",
    "field",
    "old",
    "new",
]


# ---------------------------------------------------------------------------------------------
# Writers


def _write_csv(out: Path, header: list[str], rows: Iterable[Iterable[object]], *, text: bool = False) -> None:
    """Cells as the import format writes them (cell_text); `text`: the rows are strings already
    (the audit trail's), written as they come: 25 million cells at 100,000 patients."""
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows if text else ([cell_text(value) for value in row] for row in rows))


def _write_wide_csv(out: Path, columns: list[Column], rows: Iterable[list]) -> None:
    """The wide dataset as `_write_csv` writes it, with the formatting chosen per column once: the
    csv module writes None (as empty), text, integers and floats as cell_text does, a date column's
    cell is its isoformat() (cell_text's date), and only the decimal columns' cells go through
    cell_text: 12 million cells at 100,000 patients. tests/test_exports.py holds the file equal to
    `_write_csv`'s."""
    dates = [index for index, column in enumerate(columns) if column.type == "date"]
    decimals = [index for index, column in enumerate(columns) if column.type == "decimal"]
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([column.name for column in columns])
        for row in rows:
            for index in dates:
                if row[index] is not None:
                    row[index] = row[index].isoformat()
            for index in decimals:
                row[index] = cell_text(row[index])
            writer.writerow(row)


def _write_xlsx(out: Path, columns: list[Column], rows: Iterable[list]) -> None:
    """XlsxWriter makes the workbook (styles, the frozen header, the variables sheet); the data
    rows are written here, in the very XML its constant-memory mode writes for them (`_sheet_rows`),
    because its cost per cell was most of the export (10 million cells at 100,000 patients). On the
    same 3,000 patients' rows, back to back: `write_row` 1.04-1.10 s CPU, typed
    `write_number`/`write_string` calls 0.91-0.94 s, this 0.24 s (the same compression included).
    tests/test_exports.py holds every part of the file byte-equal to XlsxWriter's own."""
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as sheet_rows:
        count, dated = _sheet_rows(sheet_rows, columns, rows)
        template = _xlsx_workbook(columns, dated)
        last = f"{xl_col_to_name(len(columns) - 1)}{count + 1}"
        with zipfile.ZipFile(template) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for info in source.infolist():
                part = source.read(info)
                if info.filename != "xl/worksheets/sheet1.xml":
                    archive.writestr(info, part)
                    continue
                # The template's sheet: its header row, then (only to give the date format its
                # style) a row 2 that is dropped; the data rows go in their place.
                text = part.decode("utf-8")
                head = text[: text.index("</row>") + len("</row>")]
                head = re.sub(r'<dimension ref="[^"]*"/>', f'<dimension ref="A1:{last}"/>', head, count=1)
                tail = text[text.index("</sheetData>") :]
                sheet_rows.seek(0, io.SEEK_END)
                size = sheet_rows.tell() + len(head) + len(tail)
                sheet_rows.seek(0)
                with archive.open(info, "w", force_zip64=size > 2**31) as sheet:
                    sheet.write(head.encode("utf-8"))
                    while block := sheet_rows.read(2**20):
                        sheet.write(block.encode("utf-8"))
                    sheet.write(tail.encode("utf-8"))


def _xlsx_workbook(columns: list[Column], dated: bool) -> io.BytesIO:
    """The workbook as XlsxWriter writes it with the data sheet's header row only (and, when the
    rows have a date, one date cell in row 2, so that styles.xml has the date format at the index
    `_sheet_rows` refers to: XlsxWriter numbers a style when a cell first uses it)."""
    import xlsxwriter

    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(
        buffer,
        {
            "constant_memory": True,
            "default_date_format": "yyyy-mm-dd",
            # Cells hold the data as entered: never a formula or a link made from a value.
            "strings_to_formulas": False,
            "strings_to_urls": False,
        },
    )
    bold = workbook.add_format({"bold": True})
    sheet = workbook.add_worksheet("data")
    sheet.freeze_panes(1, 1)
    sheet.write_row(0, 0, [c.name for c in columns], bold)
    if dated:
        sheet.write_datetime(1, 0, dt.date(2000, 1, 1))
    variables = workbook.add_worksheet("variables")
    variables.write_row(0, 0, ("variable", "label", "type", "codes", "notes"), bold)
    for number, column in enumerate(columns, start=1):
        codes = "|".join(f"{code}={label}" for code, label in (column.value_labels or {}).items())
        variables.write_row(number, 0, [column.name, column.label, column.type, codes, column.notes])
    workbook.close()
    buffer.seek(0)
    return buffer


# The style index XlsxWriter gives the workbook's date format (`_xlsx_workbook`: the header's bold
# is 1, the date format 2).
XLSX_DATE_STYLE = 2
# XlsxWriter's text escapes (xmlwriter.py): its own _xHHHH_ escapes are escaped first, then control
# characters become _xHHHH_; leading or trailing white space is kept with xml:space.
_XLSX_ESCAPED = re.compile("(_x[0-9a-fA-F]{4}_)")
_XLSX_CONTROL = re.compile(r"([\x00-\x08\x0b-\x1f])")
_XLSX_EDGE_SPACE = re.compile(r"^\s|\s$")
XLSX_MAX_TEXT = 32767  # UTF-16 units a cell holds; XlsxWriter cuts longer text there


def _xlsx_text(value: str) -> str:
    """A text cell's value (after `t="inlineStr"`) as XlsxWriter writes it."""
    if len(value) > XLSX_MAX_TEXT // 2 and len(value.encode("utf-16-le", "surrogatepass")) // 2 > XLSX_MAX_TEXT:
        units = 0
        for index, char in enumerate(value):
            units += 2 if ord(char) > 0xFFFF else 1
            if units > XLSX_MAX_TEXT:
                value = value[:index]
                break
    text = _XLSX_ESCAPED.sub(r"_x005F\1", value)
    text = _XLSX_CONTROL.sub(lambda match: f"_x{ord(match.group(1)):04X}_", text)
    text = text.replace("\ufffe", "_xFFFE_").replace("\uffff", "_xFFFF_")
    preserve = ' xml:space="preserve"' if _XLSX_EDGE_SPACE.search(text) else ""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<is><t{preserve}>{text}</t></is>"


def excel_day(date: dt.date) -> int:
    """The Excel serial number of a date (1900 date system), as XlsxWriter converts it: days since
    1899-12-31, plus one from 1900-03-01 on (Excel counts a 29 February 1900)."""
    days = (date - EXCEL_EPOCH).days
    return days + 1 if days > 59 else days


EXCEL_EPOCH = dt.date(1899, 12, 31)
# Distinct texts and dates `_sheet_rows` keeps converted: memory bounded whatever the rows.
XLSX_CACHED = 4096


def _sheet_rows(fh, columns: list[Column], rows: Iterable[list]) -> tuple[int, bool]:
    """The data rows (from row 2) as XlsxWriter's constant-memory mode writes `write_row`'s cells:
    None leaves the cell out, text is an inline string, a number its %.16G, a date its Excel serial
    day (XlsxWriter's conversion) in the date style, a boolean t="b". A decimal column's values are
    written as the floats they are stored as (301, not 301.000000000000 from the Decimal), as the
    integer and float columns are. Each distinct text and date is converted once (codes repeat
    millions of times), in caches emptied when full, as study IDs and free text never repeat.
    Returns the number of rows and whether any date was written."""
    letters = [xl_col_to_name(index) for index in range(len(columns))]
    decimals = {index for index, column in enumerate(columns) if column.type == "decimal"}
    texts: dict[str, str] = {}
    days: dict[dt.date, str] = {}
    dated = False
    count = 0
    for count, row in enumerate(rows, start=1):
        r = str(count + 1)
        cells = [f'<row r="{r}">']
        add = cells.append
        for index, value in enumerate(row):
            if value is None:
                continue
            kind = value.__class__
            if kind is str:
                text = texts.get(value)
                if text is None:
                    if len(texts) >= XLSX_CACHED:
                        texts.clear()
                    text = texts[value] = _xlsx_text(value)
                add(f'<c r="{letters[index]}{r}" t="inlineStr">{text}</c>')
            elif kind is int or kind is float:
                add(f'<c r="{letters[index]}{r}"><v>{value:.16G}</v></c>')
            elif kind is Decimal:
                number = float(value) if index in decimals else value
                add(f'<c r="{letters[index]}{r}"><v>{number:.16G}</v></c>')
            elif kind is dt.date:
                day = days.get(value)
                if day is None:
                    if len(days) >= XLSX_CACHED:
                        days.clear()
                        dated = True
                    day = days[value] = f"{excel_day(value):.16G}"
                add(f'<c r="{letters[index]}{r}" s="{XLSX_DATE_STYLE}"><v>{day}</v></c>')
            elif kind is bool:
                add(f'<c r="{letters[index]}{r}" t="b"><v>{int(value)}</v></c>')
            else:
                raise TypeError(f"{columns[index].name}: no XLSX cell for {kind.__name__}")
        add("</row>")
        fh.write("".join(cells))
    return count, dated or bool(days)


def _data_frame(columns: list[Column], rows: Iterable[list]):
    """A pandas DataFrame for pyreadstat: codes as numbers, missing numbers NaN, dates as dates.

    pyreadstat writes from a whole DataFrame, so the table is held once, column by column as the
    rows stream in: 8 bytes a value in a number column (codes, integers, decimals: array of
    doubles), a reference to a shared code string or a date object in the others. About 100 MiB at
    100,000 patients x 120 variables; the rows themselves are not kept."""
    import numpy as np
    import pandas as pd

    numeric = [column.coded or column.type in ("integer", "decimal") for column in columns]
    codes = [column.numeric_codes or {} for column in columns]
    values: list = [array("d") if number else [] for number in numeric]
    nan = float("nan")
    for row in rows:
        for index, value in enumerate(row):
            if not numeric[index]:
                values[index].append(value)
            elif value is None:
                values[index].append(nan)
            else:
                values[index].append(codes[index][value] if columns[index].coded else float(value))
    data = {}
    for index, column in enumerate(columns):
        if numeric[index]:
            data[column.name] = pd.Series(np.frombuffer(values[index], dtype="float64"), dtype="float64")
        elif column.type == "date":
            # Dates as dates; a column without any date would be taken for text, so it is an empty
            # number column instead, which the date format set by the writer makes a date variable.
            if any(v is not None for v in values[index]):
                data[column.name] = pd.Series(values[index], dtype=object)
            else:
                data[column.name] = pd.Series([None] * len(values[index]), dtype="float64")
        else:
            data[column.name] = pd.Series(["" if v is None else str(v) for v in values[index]], dtype=object)
        values[index] = None  # each column held once: as the series, not also as the list
    return pd.DataFrame(data, columns=[c.name for c in columns])


def _write_statistics_file(kind: str, out: Path, columns: list[Column], rows: Iterable[list]) -> None:
    import pyreadstat

    frame = _data_frame(columns, rows)
    labels = {c.name: c.label for c in columns}
    value_labels = {c.name: c.numeric_value_labels for c in columns if c.coded}
    title = "Ustekinumab re-induction cohort: analysis dataset"
    if kind == "wide_sav":
        formats = {"integer": "F8.0", "yesno": "F1.0", "choice": "F2.0", "decimal": "F10.2", "date": "DATE11"}
        measures = {"integer": "scale", "decimal": "scale", "date": "scale", "yesno": "nominal", "choice": "nominal"}
        pyreadstat.write_sav(
            frame,
            str(out),
            file_label=title,
            column_labels=labels,
            variable_value_labels=value_labels,
            variable_format={c.name: formats[c.type] for c in columns if c.type in formats},
            variable_measure={c.name: measures.get(c.type, "nominal") for c in columns},
        )
    else:
        # Stata limits variable labels to 80 characters.
        pyreadstat.write_dta(
            frame,
            str(out),
            file_label=title[:80],
            column_labels={name: label[:80] for name, label in labels.items()},
            variable_value_labels=value_labels,
            variable_format={c.name: "%td" for c in columns if c.type == "date"},
        )


README = """Ustekinumab re-induction cohort: data export in the import format (SPEC section 8)
Exported {when} (UTC) by the eCRF; {patients} patient(s).

One CSV file per form of the data dictionary: UTF-8, comma separated, header = variable names,
choice codes as in the dictionary, empty = missing; rows sorted by study_id, then by date (visit for
assessments). `python manage.py import_cohort DIR` reads these files back unchanged.

data_dictionary.csv: every variable with its label, type, codes and rules; the rows with form = wide
are the derived variables of the analysis dataset, and `numeric_codes` gives the numbers the SPSS and
Stata files store for a code (yes/no: 1 = yes, 0 = no; a choice: its position in the list).
"""


def _write_import_zip(out: Path, patients: QuerySet, progress: Callable[[int, str], None]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        progress(10, "Writing the form files")
        counts = export_cohort(Path(directory), patients)
        progress(70, "Compressing")
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for form in crf.FILES:
                archive.write(Path(directory) / f"{form}.csv", f"{form}.csv")
            archive.writestr("data_dictionary.csv", _csv_text(DICTIONARY_HEADER, dictionary_rows()))
            when = timezone.now().astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")
            archive.writestr("README.txt", README.format(when=when, patients=counts["patients"]))


def _csv_text(header: list[str], rows: Iterable[Iterable[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([cell_text(value) for value in row] for row in rows)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Audit trail


def _audit_value(value: object) -> str:
    """An audit value (JSON) as the import format writes it: a JSON number is a decimal column's."""
    return cell_text(Decimal(repr(value)) if isinstance(value, float) else value)


def _snake(name: str) -> str:
    """QueryMessage -> query_message: a model outside the dictionary, named like its forms."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def audit_rows(patients: QuerySet) -> list[list[str]]:
    """`iter_audit_rows` as a list."""
    return list(iter_audit_rows(patients))


def iter_audit_rows(patients: QuerySet) -> Iterator[list[str]]:
    """One row per changed field of every audit event of the patients, their forms' rows and the
    monitoring of their casebooks (flag confirmations, queries and their messages, source data
    verification, signatures: `form` names these by their model), oldest first (AUDIT_HEADER),
    from cohort.audit. Three queries whatever the number of patients or events.
    Soft-deleted patients passed in are included: their trail stays, ending with the removal and
    its reason. Read and yielded in chunks (cohort.audit.iter_entries): two million events at
    100,000 patients never sit in memory at once."""
    ids = list(patients.values_list("pk", flat=True))
    if not ids:  # never "no filter"
        return
    centres = dict(Centre.objects.values_list("pk", "code"))
    for entry in audit.iter_entries(ids):
        prefix = [
            entry["at"].isoformat(),
            entry["user"] or "",
            entry["reason"] or "",
            entry["source"] or "",
            entry["study_id"],
            entry["file"] or _snake(entry["model"]),
            entry["record"],
            entry["action"],
        ]
        for name, (old, new) in sorted(entry["changes"].items()):
            if name in AUDIT_SKIPPED or (old in (None, "") and new in (None, "")):
                continue
            if name == "centre_id":
                name, old, new = "centre", centres.get(old, old), centres.get(new, new)
            yield [*prefix, name, _audit_value(old), _audit_value(new)]


# ---------------------------------------------------------------------------------------------
# Entry point


def write_export(kind: str, out: Path, *, patients: QuerySet, progress: Progress = None) -> None:
    """Write the export `kind` (a key of EXPORT_KINDS) for these patients to `out`.

    The caller passes the patients the user may see and takes care of temporary names and moving
    the finished file into place. `progress(percent, message)` is called along the way."""
    if kind not in EXPORT_KINDS:
        raise ValueError(f"Unknown export kind {kind!r}; expected one of {', '.join(EXPORT_KINDS)}.")
    report = progress or (lambda percent, message: None)
    out = Path(out)
    if kind != "audit_csv":  # removed patients leave every dataset; their audit trail stays (SPEC 4)
        patients = patients.active()
    if kind == "import_csv_zip":
        _write_import_zip(out, patients, report)
    elif kind == "dictionary_csv":
        report(10, "Writing the data dictionary")
        _write_csv(out, DICTIONARY_HEADER, dictionary_rows())
    elif kind == "audit_csv":
        report(10, "Reading and writing the audit trail")
        _write_csv(out, AUDIT_HEADER, iter_audit_rows(patients), text=True)
    elif kind == "odm_xml":
        odm.write_odm(out, patients, report)
    else:
        report(10, "Reading and writing the analysis dataset")
        columns, rows = wide_stream(patients)
        if kind == "wide_csv":
            _write_wide_csv(out, columns, rows)
        elif kind == "wide_xlsx":
            _write_xlsx(out, columns, rows)
        else:
            _write_statistics_file(kind, out, columns, rows)
    report(100, "Done")
