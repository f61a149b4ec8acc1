"""Data exports (SPEC section 7): every kind is written for the 31-patient cohort and read back with
the readers analysts use (csv, openpyxl, pyreadstat); the values equal the database, the derived
variables add up to the outcome tables, and a centre's queryset exports only that centre."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import zipfile
from decimal import Decimal
from io import StringIO
from pathlib import Path

import openpyxl
import pyreadstat
import pytest
from django.core.management import call_command

from cohort import dictionary
from cohort.access import patients_for_user
from cohort.audit import audit_context
from cohort.choices import Role
from cohort.models import AdverseEvent, Assessment, Centre, FollowUp, Patient, UstekinumabDose
from cohort.services import centre_create, patient_audit_trail, patient_soft_delete
from reports.dataset import wide_dataset
from reports.exports import (
    AUDIT_SKIPPED,
    EXPORT_KINDS,
    _write_csv,
    audit_rows,
    write_export,
)
from reports.loaders import load_patients
from reports.outcomes import compute
from reports.services import thresholds
from tests.base import make_patient, make_record, make_user

pytestmark = pytest.mark.django_db

COHORT31 = Path(__file__).parent / "data" / "cohort31"
FORMS = list(dictionary.forms())


@pytest.fixture
def cohort31():
    for code in ("AMC", "UMCU", "RUMC"):
        centre_create(code=code, name=f"Synthetic centre {code}")
    call_command("import_cohort", str(COHORT31), stdout=StringIO())


@pytest.fixture
def outcomes(cohort31) -> dict:
    return compute(load_patients(), thresholds=thresholds())


def export(tmp_path: Path, kind: str, patients=None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / f"export{EXPORT_KINDS[kind][0]}"
    write_export(kind, out, patients=Patient.objects.all() if patients is None else patients)
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def database_truth() -> dict[str, dict]:
    """Per study ID, values read straight from the ORM (independently of the export code)."""
    truth = {}
    for patient in Patient.objects.select_related("centre"):
        doses = {d.phase: d.dose_date for d in UstekinumabDose.objects.filter(patient=patient)}
        week8 = Assessment.objects.filter(patient=patient, visit="week_8").first()
        follow_up = FollowUp.objects.get(patient=patient)
        truth[patient.study_id] = {
            "centre": patient.centre.code,
            "sex": patient.sex,
            "sex_label": patient.get_sex_display(),
            "birth_year": patient.birth_year,
            "enrolment_date": patient.enrolment_date,
            "montreal_location": patient.montreal_location,
            "upper_gi": patient.upper_gi,
            "montreal_age": patient.montreal_age,
            "anti_tnf_count": patient.anti_tnf_count(),
            "t0_date": doses["reinduction"],
            "age_at_reinduction": doses["reinduction"].year - patient.birth_year,
            "w8_date": week8.assessment_date if week8 else None,
            "w8_hbi": week8.hbi_total if week8 else None,
            "w8_crp": week8.crp_mg_l if week8 else None,
            "status": follow_up.status,
            "discontinuation_date": follow_up.discontinuation_date,
            "ae_n": AdverseEvent.objects.filter(patient=patient).count(),
        }
    return truth


def test_it_zips_the_import_files_byte_identical_to_the_source(cohort31, tmp_path):
    with zipfile.ZipFile(export(tmp_path, "import_csv_zip")) as archive:
        names = set(archive.namelist())
        assert names == {f"{form}.csv" for form in FORMS} | {"data_dictionary.csv", "README.txt"}
        for form in FORMS:
            assert archive.read(f"{form}.csv") == (COHORT31 / f"{form}.csv").read_bytes(), form
        dictionary_rows = list(csv.reader(io.StringIO(archive.read("data_dictionary.csv").decode())))
        assert "31 patient(s)" in archive.read("README.txt").decode()
    # The dictionary's own columns and rows come first, unchanged.
    with dictionary.PATH.open(newline="", encoding="utf-8") as fh:
        source = list(csv.reader(fh))
    assert [row[:9] for row in dictionary_rows[: len(source)]] == source


def test_it_writes_the_wide_csv_with_the_dictionary_codes(cohort31, outcomes, tmp_path):
    rows = read_csv(export(tmp_path, "wide_csv"))
    truth = database_truth()

    assert [row["study_id"] for row in rows] == sorted(truth)
    for row in rows:
        expected = truth[row["study_id"]]
        assert row["centre"] == expected["centre"]
        assert row["sex"] == expected["sex"]  # string codes, as in the dictionary
        assert row["upper_gi"] == expected["upper_gi"]
        assert row["enrolment_date"] == expected["enrolment_date"].isoformat()
        assert row["t0_date"] == expected["t0_date"].isoformat()
        assert row["w8_hbi"] == ("" if expected["w8_hbi"] is None else str(expected["w8_hbi"]))
        assert (Decimal(row["w8_crp"]) if row["w8_crp"] else None) == expected["w8_crp"]
        assert row["montreal_age"] == expected["montreal_age"]
    assert sum(row["anti_tnf_2plus"] == "yes" for row in rows) == outcomes["baseline"]["anti_tnf_2plus"]["n"] == 24
    assert sum(row["nonresponse"] == "yes" for row in rows) == outcomes["nonresponse"]["n"] == 5


def xlsx_records(path: Path) -> tuple[list[dict], openpyxl.Workbook]:
    workbook = openpyxl.load_workbook(path, read_only=True)
    values = list(workbook["data"].iter_rows(values_only=True))
    header = values[0]
    return [dict(zip(header, row, strict=True)) for row in values[1:]], workbook


def as_date(value) -> dt.date | None:
    return value.date() if isinstance(value, dt.datetime) else value


def test_the_xlsx_equals_the_database(cohort31, outcomes, tmp_path):
    records, workbook = xlsx_records(export(tmp_path, "wide_xlsx"))
    truth = database_truth()

    assert len(records) == 31
    for record in records:
        expected = truth[record["study_id"]]
        assert record["sex"] == expected["sex"]
        assert record["birth_year"] == expected["birth_year"]
        assert as_date(record["enrolment_date"]) == expected["enrolment_date"]
        assert as_date(record["t0_date"]) == expected["t0_date"]
        assert as_date(record["w8_date"]) == expected["w8_date"]
        assert record["w8_hbi"] == expected["w8_hbi"]
        assert record["w8_crp"] == (None if expected["w8_crp"] is None else float(expected["w8_crp"]))
        assert record["anti_tnf_count"] == expected["anti_tnf_count"]
        assert record["age_at_reinduction"] == expected["age_at_reinduction"]
        assert record["status"] == expected["status"]
        assert record["ae_n"] == expected["ae_n"]
    assert_totals_match_outcomes(records, outcomes, yes="yes", no="no")
    variables = list(workbook["variables"].iter_rows(values_only=True))
    assert ("sex", "Sex", "choice", "F=female|M=male", None) in variables


def assert_totals_match_outcomes(records: list[dict], outcomes: dict, *, yes, no) -> None:
    """The derived flags add up to the outcome tables (reports.outcomes.compute)."""

    def count(name: str, value) -> int:
        return sum(1 for record in records if record[name] == value)

    def given(name: str) -> int:
        return sum(1 for record in records if record[name] in (yes, no))

    assert count("included", yes) == outcomes["n_patients"]
    assert count("anti_tnf_2plus", yes) == outcomes["baseline"]["anti_tnf_2plus"]["n"] == 24
    assert count("vedolizumab", yes) == outcomes["baseline"]["vedolizumab"]["n"]
    assert count("nonresponse", yes) == outcomes["nonresponse"]["n"] == 5
    assert count("survival_event", yes) == outcomes["drug_survival"]["events"]
    for week in ("8", "20", "52"):
        remission = outcomes["clinical_remission"][f"week_{week}"]
        assert count(f"w{week}_remission", yes) == remission["observed"]["n"]
        assert given(f"w{week}_remission") == remission["observed"]["N"]
        assert count(f"w{week}_sf_remission", yes) == remission["steroid_free"]["n"]
        assert given(f"w{week}_sf_remission") == remission["steroid_free"]["N"]
        nri = remission["nri"]
        assert given(f"w{week}_nri_remission") == nri["N"]
        assert count(f"w{week}_nri_remission", yes) == nri["n"]  # (no one seen early and lost later here)
        for table in ("biochemical", "endoscopic"):
            expected = outcomes[f"{table}_remission"][f"week_{week}"]
            assert count(f"w{week}_{table}_remission", yes) == expected["n"], (table, week)
            assert given(f"w{week}_{table}_remission") == expected["N"], (table, week)
    assert count("w8_remission", yes) == 10
    assert count("corticosteroids_at_reinduction", yes) == outcomes["baseline"]["corticosteroids_at_reinduction"]["n"]
    events = outcomes["adverse_events"]
    assert sum(record["ae_n"] for record in records) == events["events"]
    assert sum(record["ae_led_to_discontinuation_n"] for record in records) == events["led_to_discontinuation"]
    for category, n in events["by_category"].items():
        assert sum(record[f"ae_{category}_n"] for record in records) == n, category


@pytest.mark.parametrize(("kind", "reader"), [("wide_sav", pyreadstat.read_sav), ("wide_dta", pyreadstat.read_dta)])
def test_the_spss_and_stata_files_equal_the_database(cohort31, outcomes, tmp_path, kind, reader):
    frame, meta = reader(str(export(tmp_path, kind)))
    truth = database_truth()
    columns, _ = wide_dataset(Patient.objects.all())

    assert len(frame) == 31
    assert list(frame.columns) == [column.name for column in columns]
    # Variable labels and numeric value labels on every coded variable.
    assert meta.column_names_to_labels["w8_remission"] == "Week 8: clinical remission (HBI <= 4)"
    assert meta.column_names_to_labels["sex"] == "Sex"
    assert meta.variable_value_labels["sex"] == {1: "female", 2: "male"}
    assert meta.variable_value_labels["upper_gi"] == {1: "yes", 0: "no"}
    assert meta.variable_value_labels["montreal_location"] == {1: "ileal", 2: "colonic", 3: "ileocolonic"}
    assert {c.name for c in columns if c.value_labels} <= set(meta.variable_value_labels)

    def missing(value) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    for record in frame.to_dict("records"):
        expected = truth[record["study_id"]]
        assert record["centre"] == expected["centre"]
        assert meta.variable_value_labels["sex"][record["sex"]] == expected["sex_label"]
        assert record["birth_year"] == expected["birth_year"]
        assert record["enrolment_date"] == expected["enrolment_date"]
        assert record["t0_date"] == expected["t0_date"]
        assert (None if missing(record["w8_date"]) else record["w8_date"]) == expected["w8_date"]
        assert (None if missing(record["w8_hbi"]) else record["w8_hbi"]) == expected["w8_hbi"]
        crp = None if missing(record["w8_crp"]) else record["w8_crp"]
        assert crp == (None if expected["w8_crp"] is None else float(expected["w8_crp"]))
        assert (None if missing(record["discontinuation_date"]) else record["discontinuation_date"]) == expected[
            "discontinuation_date"
        ]
        assert record["anti_tnf_count"] == expected["anti_tnf_count"]
        assert record["ae_n"] == expected["ae_n"]
    assert_totals_match_outcomes(frame.to_dict("records"), outcomes, yes=1, no=0)


def test_the_dictionary_documents_the_numeric_codes(cohort31, tmp_path):
    rows = read_csv(export(tmp_path, "dictionary_csv"))
    by_name = {(row["form"], row["variable"]): row for row in rows}
    columns, _ = wide_dataset(Patient.objects.none())

    assert by_name[("patients", "sex")]["numeric_codes"] == "1=F|2=M"
    assert by_name[("patients", "upper_gi")]["numeric_codes"] == "1=yes|0=no"
    assert by_name[("patients", "birth_year")]["numeric_codes"] == ""
    assert by_name[("wide", "montreal_age")]["numeric_codes"] == "1=A1|2=A2|3=A3"
    assert by_name[("wide", "w52_remission")]["label"] == "Week 52: clinical remission (HBI <= 4)"
    # Every wide column is documented: the patients form's variables and the derived ones.
    assert {c.name for c in columns} == {v for form, v in by_name if form in ("patients", "wide")}
    assert all(len(c.name) <= 32 and c.name.isidentifier() and c.name == c.name.lower() for c in columns)


def test_a_centre_queryset_exports_only_that_centre(cohort31, tmp_path):
    nurse = make_user("nurse_umcu", centre=Centre.objects.get(code="UMCU"), role=Role.NURSE)
    patients = patients_for_user(nurse)

    rows = read_csv(export(tmp_path, "wide_csv", patients))
    assert len(rows) == 10 and {row["centre"] for row in rows} == {"UMCU"}
    frame, _ = pyreadstat.read_dta(str(export(tmp_path, "wide_dta", patients)))
    assert set(frame["study_id"]) == {row["study_id"] for row in rows}
    with zipfile.ZipFile(export(tmp_path, "import_csv_zip", patients)) as archive:
        for form in FORMS:
            study_ids = {row["study_id"] for row in csv.DictReader(io.StringIO(archive.read(f"{form}.csv").decode()))}
            assert study_ids <= {row["study_id"] for row in rows}, form
    audit = read_csv(export(tmp_path, "audit_csv", patients))
    assert audit and {row["study_id"].split("-")[0] for row in audit} == {"UMCU"}


def test_the_audit_csv_has_the_change_with_its_reason(cohort31, tmp_path):
    monitor = make_user("monitor")
    assessment = Assessment.objects.get(patient__study_id="AMC-001", visit="week_8")
    with audit_context(user=monitor, reason="Transcription error corrected", source="web"):
        assessment.crp_mg_l = Decimal("5.2")
        assessment.save()

    rows = read_csv(export(tmp_path, "audit_csv"))
    change = [row for row in rows if row["reason"] == "Transcription error corrected"]
    assert len(change) == 1
    assert change[0] | {"when_utc": "", "record_id": ""} == {
        "when_utc": "",
        "user": "monitor",
        "reason": "Transcription error corrected",
        "source": "web",
        "study_id": "AMC-001",
        "form": "assessments",
        "record_id": "",
        "action": "update",
        "field": "crp_mg_l",
        "old": "4.7",
        "new": "5.2",
    }
    assert change[0]["record_id"] == str(assessment.pk)
    assert dt.datetime.fromisoformat(change[0]["when_utc"]).utcoffset() == dt.timedelta(0)
    # The import that created the cohort is there too, one row per field given.
    imported = [row for row in rows if row["source"] == "import_cohort" and row["action"] == "insert"]
    assert {row["form"] for row in imported} == set(FORMS)
    assert {"study_id": "AMC-001", "field": "sex", "old": "", "new": "M"}.items() <= next(
        row for row in imported if row["study_id"] == "AMC-001" and row["field"] == "sex"
    ).items()
    assert rows == sorted(rows, key=lambda row: row["when_utc"])


def test_the_audit_csv_agrees_with_the_casebook_trail(cohort31, tmp_path):
    """The export reads the event tables in one query; the casebook reads them through pghistory."""
    patient = Patient.objects.get(study_id="AMC-001")
    with audit_context(user=make_user("monitor"), reason="Re-measured"):
        Assessment.objects.filter(patient=patient, visit="week_0").update(fcal_ug_g=Decimal("425.5"), hbi=None)
        AdverseEvent.objects.filter(patient=patient).delete()

    def text(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return format(Decimal(str(value)).normalize(), "f")
        return str(value)

    expected = {
        (event["action"], str(event["record"]), name, text(old), text(new), event["reason"])
        for event in patient_audit_trail(patient)
        for name, (old, new) in event["changes"].items()
        if name not in AUDIT_SKIPPED | {"centre_id"} and (text(old), text(new)) != ("", "")
    }
    rows = read_csv(export(tmp_path, "audit_csv", Patient.objects.filter(pk=patient.pk)))
    actual = {
        (row["action"], row["record_id"], row["field"], row["old"], row["new"], row["reason"])
        for row in rows
        if row["field"] != "centre"
    }
    assert actual == expected
    assert ("update", "fcal_ug_g", "420", "425.5") in {(a, f, o, n) for a, _, f, o, n, _ in actual}
    assert {row["study_id"] for row in rows} == {"AMC-001"}


def test_removed_patients_leave_the_datasets_but_not_the_audit_trail(cohort31, tmp_path):
    patient = Patient.objects.get(study_id="AMC-001")
    nurse = make_user("nurse_amc", centre=patient.centre, role=Role.NURSE)
    patient_soft_delete(patient=patient, by=nurse, reason="withdrew consent")

    rows = read_csv(export(tmp_path, "wide_csv", Patient.all_objects.all()))
    assert len(rows) == 30 and "AMC-001" not in {row["study_id"] for row in rows}
    audit = read_csv(export(tmp_path, "audit_csv", Patient.all_objects.all()))
    removal = [row for row in audit if row["study_id"] == "AMC-001" and row["field"] == "deleted_at"]
    assert len(removal) == 1
    assert (removal[0]["user"], removal[0]["reason"], removal[0]["old"]) == ("nurse_amc", "withdrew consent", "")
    # No patients: no rows, and never "no filter" (pghistory's references() of nothing is everything).
    assert audit_rows(Patient.objects.none()) == []
    for kind in EXPORT_KINDS:
        assert export(tmp_path / kind, kind, Patient.objects.none()).stat().st_size > 0
    assert read_csv(tmp_path / "audit_csv" / "export.csv") == []
    assert read_csv(tmp_path / "wide_csv" / "export.csv") == []
    assert len(pyreadstat.read_sav(str(tmp_path / "wide_sav" / "export.sav"))[0]) == 0


def test_it_reports_progress_and_refuses_unknown_kinds(cohort31, tmp_path):
    seen = []
    write_export("wide_csv", tmp_path / "x.csv", patients=Patient.objects.all(), progress=lambda p, m: seen.append(p))
    assert seen[-1] == 100 and seen == sorted(seen)
    with pytest.raises(ValueError, match="Unknown export kind"):
        write_export("wide_json", tmp_path / "x.json", patients=Patient.objects.all())


def test_a_fixed_number_of_queries_whatever_the_number_of_patients(people, django_assert_max_num_queries):
    make_record(make_patient(people["centre_a"], people["nurse_a"]))
    with django_assert_max_num_queries(7):
        assert len(wide_dataset(Patient.objects.all())[1]) == 1
    with django_assert_max_num_queries(3):
        few = len(audit_rows(Patient.objects.all()))
    for _ in range(15):
        make_record(make_patient(people["centre_a"], people["nurse_a"]))
    with django_assert_max_num_queries(7):
        assert len(wide_dataset(Patient.objects.all())[1]) == 16
    with django_assert_max_num_queries(3):
        assert len(audit_rows(Patient.objects.all())) == 16 * few


def test_the_wide_remission_flags_add_up_to_the_outcome_tables(tmp_path):
    """Both read reports.outcomes.visit_outcome: yes = the table's n, a non-empty cell = its N."""
    logins = str(tmp_path / "logins.txt")
    call_command("seed_demo", patients=150, centres=3, seed=11, logins_file=logins, stdout=StringIO())
    result = compute(load_patients(), thresholds=thresholds())
    rows = read_csv(export(tmp_path, "wide_csv"))
    for visit in ("week_8", "week_20", "week_52"):
        w = f"w{visit.removeprefix('week_')}"
        clinical = result["clinical_remission"][visit]
        for column, table in (
            (f"{w}_remission", clinical["observed"]),
            (f"{w}_nri_remission", clinical["nri"]),
            (f"{w}_sf_remission", clinical["steroid_free"]),
            (f"{w}_biochemical_remission", result["biochemical_remission"][visit]),
            (f"{w}_endoscopic_remission", result["endoscopic_remission"][visit]),
        ):
            values = [row[column] for row in rows]
            yes = values.count("yes")
            if column.endswith("nri_remission"):
                # The NRI numerator is the observed one (SPEC 5, to the letter): it also counts a
                # patient in remission at the visit but followed up for less than the nominal day.
                yes += sum(1 for row in rows if row[f"{w}_remission"] == "yes" and not row[column])
            assert (yes, sum(1 for v in values if v)) == (table["n"], table["N"]), column
        assert clinical["observed"]["N"] > 0


def test_the_wide_csv_is_every_cell_written_as_cell_text_writes_it(tmp_path):
    """The wide CSV leaves None, text, integers and floats to the csv module and formats only its
    date and decimal columns (exports._write_wide_csv, for speed): the same bytes as cell_text on
    every cell (exports._write_csv)."""
    call_command("seed_demo", patients=60, centres=2, seed=5, logins_file=str(tmp_path / "l.txt"), stdout=StringIO())
    columns, rows = wide_dataset(Patient.objects.all())
    reference = tmp_path / "reference.csv"
    _write_csv(reference, [column.name for column in columns], rows)
    written = export(tmp_path, "wide_csv").read_bytes()
    assert written == reference.read_bytes()
    assert {column.type for column in columns} >= {"date", "decimal", "integer", "yesno", "text"}
    assert b"-" in written and b"." in written  # dates and decimals were there to format


def xlsxwriter_reference(out: Path, columns, rows) -> None:
    """The wide XLSX as XlsxWriter writes it cell by cell (write_row, constant-memory mode)."""
    import xlsxwriter

    workbook = xlsxwriter.Workbook(
        str(out),
        {"constant_memory": True, "default_date_format": "yyyy-mm-dd", "strings_to_formulas": False,
         "strings_to_urls": False},
    )  # fmt: skip
    bold = workbook.add_format({"bold": True})
    sheet = workbook.add_worksheet("data")
    sheet.freeze_panes(1, 1)
    sheet.write_row(0, 0, [c.name for c in columns], bold)
    decimals = [index for index, column in enumerate(columns) if column.type == "decimal"]
    for number, row in enumerate(rows, start=1):
        sheet.write_row(number, 0, [float(v) if i in decimals and v is not None else v for i, v in enumerate(row)])
    variables = workbook.add_worksheet("variables")
    variables.write_row(0, 0, ("variable", "label", "type", "codes", "notes"), bold)
    for number, column in enumerate(columns, start=1):
        codes = "|".join(f"{code}={label}" for code, label in (column.value_labels or {}).items())
        variables.write_row(number, 0, [column.name, column.label, column.type, codes, column.notes])
    workbook.close()


def xlsx_parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        # The creation time aside (docProps/core.xml), every part.
        return {name: archive.read(name) for name in archive.namelist() if name != "docProps/core.xml"}


def test_the_xlsx_is_every_part_xlsxwriter_writes_for_the_rows(tmp_path):
    """exports._write_xlsx writes the data rows' XML itself (XlsxWriter's cost per cell was most of
    the export): every part of the file is byte-equal to XlsxWriter's own, cell by cell, for the
    same rows, including text it must escape and a row without any date."""
    from reports.exports import _write_xlsx

    call_command("seed_demo", patients=60, centres=2, seed=5, logins_file=str(tmp_path / "l.txt"), stdout=StringIO())
    columns, rows = wide_dataset(Patient.objects.all())
    text = 1  # any column: a cell's XML follows its value's type
    odd = [" leading", "trailing\t", 'a & b < c > d "e"', "_x0041_ and \x01\x1f", "\ufffe", "x" * 40000, "é ü"]
    odd_rows = [[rows[0][0], *([None] * (len(columns) - 1))] for _ in odd]
    for row, value in zip(odd_rows, odd, strict=True):
        row[text] = value
    odd_rows[0][2] = Decimal("1.50")  # a Decimal outside a decimal column: XlsxWriter's %.16G of it
    odd_rows[1][2] = True
    # More distinct texts and dates than the writer keeps converted (exports.XLSX_CACHED).
    date = next(index for index, column in enumerate(columns) if column.type == "date")
    many = [[f"X{n:05d}", *row[1:date], dt.date(2000, 1, 1) + dt.timedelta(days=n), *row[date + 1 :]]
            for n, row in enumerate(rows * 70)]  # fmt: skip
    assert len(many) > 4096
    for every in (rows + odd_rows, odd_rows, [], many):
        ours, theirs = tmp_path / "ours.xlsx", tmp_path / "theirs.xlsx"
        _write_xlsx(ours, columns, [list(row) for row in every])
        xlsxwriter_reference(theirs, columns, [list(row) for row in every])
        assert xlsx_parts(ours) == xlsx_parts(theirs)
    # Text that looks like XlsxWriter's rich-string markup is text here (XlsxWriter would write it
    # into the file as XML).
    odd_rows[0][text] = "<r>x</r>"
    _write_xlsx(ours, columns, odd_rows[:1])
    assert openpyxl.load_workbook(ours, read_only=True)["data"]["B2"].value == "<r>x</r>"
    assert {column.type for column in columns} >= {"date", "decimal", "integer", "yesno", "text"}
