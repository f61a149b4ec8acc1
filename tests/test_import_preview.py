"""The import preview (issue 15 item 4): the change set an import would write, field by field, from
the importer's own write step with the statements skipped; `import_cohort --dry-run` prints it."""

from __future__ import annotations

import csv
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from cohort.importer import ImportFailed, import_cohort
from cohort.models import Assessment, Patient
from tests.test_import import COHORT, CORRUPT, audit_count, copy_cohort, counts, edit, run_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def centres():
    from cohort.services import centre_create

    for code in ("AMC", "UMCU", "RUMC"):
        centre_create(code=code, name=f"Synthetic centre {code}")


def data_version() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT CASE WHEN is_called THEN last_value END FROM reports_data_version")
        return cursor.fetchone()[0]


def export(directory: Path) -> dict[str, list[list[str]]]:
    call_command("export_cohort", str(directory), stdout=StringIO())
    return {path.stem: list(csv.reader(path.open(encoding="utf-8"))) for path in sorted(directory.glob("*.csv"))}


def changed_copy(tmp_path: Path) -> Path:
    """The cohort with one value changed, one assessment changed, a dose removed and a patient added."""
    directory = copy_cohort(tmp_path)
    edit(directory / "assessments.csv", 2, "crp_mg_l", "77.5")
    edit(directory / "patients.csv", 2, "birth_year", "1971")
    lines = (directory / "ustekinumab_doses.csv").read_text().splitlines()
    lines.remove("AMC-002,2022-04-18,maintenance,sc,90,")
    (directory / "ustekinumab_doses.csv").write_text("\n".join(lines) + "\n")
    patients = (directory / "patients.csv").read_text().splitlines()
    new = patients[1].split(",")
    new[0] = "AMC-900"
    (directory / "patients.csv").write_text("\n".join([*patients, ",".join(new)]) + "\n")
    return directory


def test_the_dry_run_prints_every_change_and_writes_nothing(centres, tmp_path):
    run_import(COHORT)
    directory = changed_copy(tmp_path)
    before, events, version = counts(), audit_count(), data_version()
    stored = export(tmp_path / "before")

    out, err, code = run_import(directory, "--dry-run")

    assert code == 0, err
    assert "create AMC-900 (centre AMC)" in out
    assert "change AMC-001 (centre AMC)" in out
    assert "  assessments week_0: changed\n    crp_mg_l: " in out and " -> 77.5\n" in out
    assert "  patients: changed\n    birth_year: " in out and " -> 1971\n" in out
    assert "change AMC-002 (centre AMC)" in out and "ustekinumab_doses" in out and ": deleted" in out
    assert "patients: created 1, updated 1, unchanged 30" in out
    assert "nothing written" in out
    # Nothing written: no row, no audit event, not even the data version (a sequence).
    assert counts() == before and audit_count() == events and data_version() == version
    assert export(tmp_path / "after") == stored


def test_the_change_set_is_exactly_what_the_import_writes(centres, tmp_path):
    run_import(COHORT)
    directory = changed_copy(tmp_path)
    preview = import_cohort(directory, user=None, write=False, record=True).as_json()
    before = export(tmp_path / "before")

    applied = import_cohort(directory, user=None, record=True).as_json()

    assert applied == preview
    after = export(tmp_path / "after")
    # Every row that differs between the exports before and after is in the change set, and only those.
    changed = {
        (form, tuple(row)) for form in after for row in set(map(tuple, after[form])) ^ set(map(tuple, before[form]))
    }
    shown = {patient["study_id"] for patient in preview["patients"]}
    assert {row[0] for _, row in changed} == shown == {"AMC-001", "AMC-002", "AMC-900"}
    new = next(p for p in preview["patients"] if p["study_id"] == "AMC-900")
    created_forms = {row["form"] for row in new["rows"]}
    assert created_forms == {form for form, row in changed if row[0] == "AMC-900"}
    week_0 = Assessment.objects.get(patient__study_id="AMC-001", visit="week_0")
    assert str(week_0.crp_mg_l) == "77.5"
    amc1 = next(p for p in preview["patients"] if p["study_id"] == "AMC-001")
    assert {
        "form": "patients",
        "action": "changed",
        "row": "",
        "fields": [["birth_year", before["patients"][1][before["patients"][0].index("birth_year")], "1971"]],
    } in amc1["rows"]


def test_a_dry_run_with_errors_prints_them_and_exits_1(centres):
    out, err, code = run_import(CORRUPT, "--dry-run")
    assert code == 1
    assert "patients.csv:5: birth_year: must be 1920 or later." in err
    assert Patient.all_objects.count() == 0 and audit_count() == 0


def test_the_preview_of_files_already_stored_is_empty(centres, tmp_path):
    run_import(COHORT)
    preview = import_cohort(COHORT, user=None, write=False, record=True).as_json()
    assert preview["patients"] == [] and preview["counts"]["created"] == {}
    with pytest.raises(ImportFailed):
        shutil.rmtree(tmp_path, ignore_errors=True)
        import_cohort(tmp_path, user=None, write=False, record=True)
