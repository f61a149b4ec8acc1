"""import_cohort / export_cohort (SPEC section 8): all-or-nothing, every error located as
file:row: variable: message, idempotent, and export -> import -> export byte-identical."""

from __future__ import annotations

import filecmp
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from cohort import crf
from cohort.models import AdverseEvent, Assessment, Patient, UstekinumabDose
from cohort.services import centre_create, patient_audit_trail
from tests.base import make_user

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data"
COHORT = DATA / "cohort31"
CORRUPT = DATA / "cohort31_corrupt"


@pytest.fixture
def centres():
    for code in ("AMC", "UMCU", "RUMC"):
        centre_create(code=code, name=f"Synthetic centre {code}")


def run_import(directory: Path, *extra: str) -> tuple[str, str, int]:
    out, err = StringIO(), StringIO()
    try:
        call_command("import_cohort", str(directory), *extra, stdout=out, stderr=err)
        code = 0
    except CommandError as error:
        err.write(str(error))
        code = error.returncode
    return out.getvalue(), err.getvalue(), code


def counts() -> dict[str, int]:
    return {form: model._default_manager.count() for form, model in ((name, f.model) for name, f in crf.FILES.items())}


def audit_count() -> int:
    return sum(apps.get_model("cohort", f"{model.__name__}Event").objects.count() for model in crf.MODELS)


def copy_cohort(tmp_path: Path) -> Path:
    target = tmp_path / "cohort"
    shutil.copytree(COHORT, target)
    return target


def edit(path: Path, line: int, column: str, value: str) -> None:
    """Set one cell (line numbers as in error messages: header = 1)."""
    import csv

    rows = list(csv.reader(path.open(newline="", encoding="utf-8")))
    rows[line - 1][rows[0].index(column)] = value
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def test_it_imports_the_hand_written_31_patient_cohort(centres):
    out, err, code = run_import(COHORT)
    assert code == 0, err
    assert counts() == {
        "patients": 31,
        "prior_biologics": 86,
        "ustekinumab_doses": 173,
        "reinduction": 31,
        "assessments": 124,
        "follow_up": 31,
        "adverse_events": 5,
    }
    assert "patients: created 31" in out
    assert Patient.objects.filter(centre__code="AMC").count() == 12


def test_the_corrupted_copy_is_refused_with_five_located_errors_and_nothing_written(centres):
    out, err, code = run_import(CORRUPT)
    assert code == 1
    expected = (CORRUPT / "EXPECTED_ERRORS.txt").read_text().split("\n")
    expected = [line.split("(")[0].strip() for line in expected if line.strip()]
    error_lines = [line for line in err.splitlines() if line.count(":") >= 3]
    assert [":".join(line.split(":")[:3]) for line in error_lines] == expected
    assert error_lines == [
        "patients.csv:5: birth_year: must be 1920 or later.",
        "patients.csv:18: montreal_location: 'L5' is not an allowed code; allowed: L1, L2, L3.",
        "ustekinumab_doses.csv:137: dose_date: '2021-13-45' is not a valid date (YYYY-MM-DD).",
        "assessments.csv:91: hbi: must equal the sum of its five components when all are given.",
        "follow_up.csv:10: discontinuation_date: is required when the status is discontinued.",
    ]
    assert set(counts().values()) == {0}
    assert audit_count() == 0


def test_importing_the_same_files_twice_changes_nothing(centres):
    run_import(COHORT)
    events = audit_count()
    versions = list(Assessment.objects.order_by("id").values_list("id", "version"))
    out, err, code = run_import(COHORT)
    assert code == 0, err
    assert "0 change(s)" in out
    assert audit_count() == events
    assert list(Assessment.objects.order_by("id").values_list("id", "version")) == versions


def test_export_import_export_is_byte_identical(centres, tmp_path):
    run_import(COHORT)
    first = tmp_path / "first"
    call_command("export_cohort", str(first), stdout=StringIO())
    # The hand-written files are already in export order and format.
    for form in crf.FILES:
        assert (first / f"{form}.csv").read_bytes() == (COHORT / f"{form}.csv").read_bytes(), form

    for model in reversed(crf.MODELS):
        model._base_manager.all().delete()
    out, err, code = run_import(first)
    assert code == 0, err
    second = tmp_path / "second"
    call_command("export_cohort", str(second), stdout=StringIO())
    match, mismatch, errors = filecmp.cmpfiles(first, second, [f"{form}.csv" for form in crf.FILES], shallow=False)
    assert mismatch == [] and errors == []


def test_a_changed_row_is_updated_and_audited_as_the_importing_user(centres, tmp_path):
    run_import(COHORT)
    make_user("monitor")
    directory = copy_cohort(tmp_path)
    edit(directory / "assessments.csv", 2, "crp_mg_l", "77.5")
    out, err, code = run_import(directory, "--user", "monitor")
    assert code == 0, err
    assert "assessments: updated 1" in out
    patient = Patient.objects.get(study_id="AMC-001")
    week_0 = Assessment.objects.get(patient=patient, visit="week_0")
    assert str(week_0.crp_mg_l) == "77.5" and week_0.version == 2
    last = patient_audit_trail(patient)[-1]
    assert last["action"] == "update" and last["user"] == "monitor" and last["source"] == "import_cohort"
    assert last["changes"]["crp_mg_l"][1] == 77.5


def test_a_repeating_form_is_replaced_for_the_patients_it_names(centres, tmp_path):
    run_import(COHORT)
    directory = tmp_path / "only_doses"
    directory.mkdir()
    lines = (COHORT / "ustekinumab_doses.csv").read_text().splitlines()
    amc1 = [line for line in lines[1:] if line.startswith("AMC-001,")]
    maintenance = [line for line in amc1 if ",maintenance," in line]
    kept = [line for line in amc1 if line not in maintenance[:1]]
    (directory / "ustekinumab_doses.csv").write_text("\n".join([lines[0], *kept]) + "\n")
    before = UstekinumabDose.objects.count()
    out, err, code = run_import(directory)
    assert code == 0, err
    assert f"ustekinumab_doses: deleted 1, unchanged {len(kept)}" in out
    assert UstekinumabDose.objects.count() == before - 1


def test_files_whose_patient_is_unknown_are_refused(centres, tmp_path):
    directory = tmp_path / "orphans"
    directory.mkdir()
    shutil.copy(COHORT / "follow_up.csv", directory)
    out, err, code = run_import(directory)
    assert code == 1
    assert "follow_up.csv:2: study_id: unknown patient AMC-001; new patients must be in patients.csv." in err


@pytest.mark.parametrize(
    "file, line, column, value, message",
    [
        ("patients.csv", 2, "centre", "XYZ", "patients.csv:2: centre: no centre with code 'XYZ'"),
        ("patients.csv", 2, "sex", "", "patients.csv:2: sex: is required."),
        (
            "patients.csv",
            2,
            "birth_year",
            "nineteen",
            "patients.csv:2: birth_year: 'nineteen' is not a whole number.",
        ),
        ("patients.csv", 2, "birth_year", "2999", "patients.csv:2: birth_year: must not be after this year"),
        ("patients.csv", 2, "consent", "no", "patients.csv:2: consent: must be yes"),
        ("patients.csv", 3, "study_id", "AMC-001", "patients.csv:3: study_id: AMC-001 is given twice"),
        (
            "patients.csv",
            2,
            "study_id",
            "UMCU-999",
            "patients.csv:2: study_id: must start with the centre code",
        ),
        (
            "ustekinumab_doses.csv",
            2,
            "weight_kg",
            "7o",
            "ustekinumab_doses.csv:2: weight_kg: '7o' is not a number",
        ),
        ("ustekinumab_doses.csv", 2, "route", "sc", "ustekinumab_doses.csv:2: route: must be intravenous"),
        (
            "ustekinumab_doses.csv",
            2,
            "phase",
            "reinduction",
            "phase: a patient has exactly one re-induction dose; this is a second.",
        ),
        ("reinduction.csv", 2, "lor_date", "2015-01-01", "reinduction.csv:2: lor_date: must lie between"),
        (
            "assessments.csv",
            2,
            "assessment_date",
            "2020-01-01",
            "assessments.csv:2: assessment_date: the week 0",
        ),
        (
            "assessments.csv",
            3,
            "visit",
            "week_0",
            "assessments.csv:3: visit: this patient already has a week 0",
        ),
        (
            "assessments.csv",
            3,
            "ses_cd",
            "3",
            "assessments.csv:3: ses_cd: may only be given when an endoscopy was done.",
        ),
        (
            "follow_up.csv",
            2,
            "last_follow_up_date",
            "2016-02-01",
            "follow_up.csv:2: last_follow_up_date: must be on",
        ),
        (
            "adverse_events.csv",
            2,
            "description",
            "x" * 501,
            "adverse_events.csv:2: description: must be at most 500",
        ),
        (
            "prior_biologics.csv",
            2,
            "agent",
            "etanercept",
            "prior_biologics.csv:2: agent: 'etanercept' is not an",
        ),
    ],
)
def test_each_kind_of_invalid_row_is_located_and_nothing_is_written(
    centres, tmp_path, file, line, column, value, message
):
    directory = copy_cohort(tmp_path)
    edit(directory / file, line, column, value)
    out, err, code = run_import(directory)
    assert code == 1
    assert message in err, err
    assert set(counts().values()) == {0}


def test_a_bad_header_is_reported_on_line_1(centres, tmp_path):
    directory = copy_cohort(tmp_path)
    text = (directory / "follow_up.csv").read_text().replace("next_therapy", "next_drug", 1)
    (directory / "follow_up.csv").write_text(text)
    out, err, code = run_import(directory)
    assert code == 1
    assert "follow_up.csv:1: next_drug: unknown variable for form follow_up." in err
    assert "follow_up.csv:1: next_therapy: column missing" in err


@pytest.mark.django_db(transaction=True)
def test_the_command_exits_with_status_1_and_prints_each_error(centres, test_database_url):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": test_database_url, "DEBUG": "1"}
    manage = Path(__file__).resolve().parent.parent / "manage.py"
    result = subprocess.run(
        [sys.executable, str(manage), "import_cohort", str(CORRUPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.count(".csv:") == 5
    assert "patients.csv:5: birth_year: must be 1920 or later." in result.stderr
    assert Patient.objects.count() == 0


def test_an_unreadable_cell_does_not_hide_the_rows_other_errors(centres, tmp_path):
    """One run reports every error: a row with a cell that cannot be read still has its other cells
    checked (the reader's message is not repeated by the rules that read that cell)."""
    directory = copy_cohort(tmp_path)
    edit(directory / "patients.csv", 2, "birth_year", "nineteen")
    edit(directory / "patients.csv", 2, "sex", "X")
    edit(directory / "ustekinumab_doses.csv", 2, "dose_date", "2021-13-45")
    edit(directory / "ustekinumab_doses.csv", 2, "dose_mg", "100")
    out, err, code = run_import(directory)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith(("patients.csv", "ustekinumab_doses.csv"))]
    assert lines == [
        "patients.csv:2: birth_year: 'nineteen' is not a whole number.",
        "patients.csv:2: sex: 'X' is not an allowed code; allowed: F, M.",
        "ustekinumab_doses.csv:2: dose_date: '2021-13-45' is not a valid date (YYYY-MM-DD).",
        "ustekinumab_doses.csv:2: dose_mg: an intravenous dose must be between 130 and 1040 mg.",
    ], err
    assert set(counts().values()) == {0}


def test_importing_into_existing_patients_takes_the_same_queries_for_few_and_many(centres, tmp_path):
    """The importer reads the named patients' records in a fixed number of queries (no query per
    patient), whether the files name 4 patients or 31."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    run_import(COHORT)
    few = copy_cohort(tmp_path)
    for path in few.glob("*.csv"):  # only the patients of centre RUMC-00[1-4]
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join([lines[0], *(line for line in lines[1:] if line.startswith("RUMC-00"))]), "utf-8")
    queries = {}
    for name, directory in (("few", few), ("all", COHORT)):
        with CaptureQueriesContext(connection) as captured:
            assert run_import(directory)[2] == 0
        queries[name] = len(captured.captured_queries)
    assert queries["few"] == queries["all"], queries


# --- malformed input: every problem at its own row and variable, never a traceback (SPEC 8, 9) ---


def replace_bytes(path: Path, line: int, old: bytes, new: bytes) -> None:
    """Replace bytes within one physical line (header = 1), for what `edit` cannot write."""
    lines = path.read_bytes().split(b"\n")
    assert old in lines[line - 1], lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_bytes(b"\n".join(lines))


def import_errors(directory: Path) -> list[str]:
    """The error lines of a refused import, after checking that it was refused and wrote nothing."""
    out, err, code = run_import(directory)
    assert code == 1, out
    assert set(counts().values()) == {0} and audit_count() == 0
    lines = err.splitlines()
    assert lines[-1].endswith("nothing was imported."), err
    return lines[:-1]


def test_a_nul_character_in_a_text_cell_is_reported_at_its_cell(centres, tmp_path):
    directory = copy_cohort(tmp_path)
    edit(directory / "follow_up.csv", 5, "next_therapy", "vedo\x00lizumab")
    assert import_errors(directory) == [
        "follow_up.csv:5: next_therapy: contains a control character (NUL, at character 5); "
        "only printable text is allowed."
    ]


def test_a_nul_character_in_a_study_id_is_reported_once_at_its_cell(centres, tmp_path):
    directory = copy_cohort(tmp_path)
    edit(directory / "reinduction.csv", 3, "study_id", "AMC-\x00002")
    assert import_errors(directory) == [
        "reinduction.csv:3: study_id: contains a control character (NUL, at character 5); "
        "only printable text is allowed."
    ]


@pytest.mark.parametrize("character, name", [("\x1b", "U+001B"), ("\x7f", "U+007F"), ("\x85", "U+0085")])
def test_other_control_characters_are_refused_at_their_cell(centres, tmp_path, character, name):
    directory = copy_cohort(tmp_path)
    edit(directory / "adverse_events.csv", 3, "description", f"Headache{character}")
    assert import_errors(directory) == [
        f"adverse_events.csv:3: description: contains a control character ({name}, at character 9); "
        "only printable text is allowed."
    ]


def test_a_tab_in_free_text_is_kept(centres, tmp_path):
    """The one control character a single-line web field can hold (pasted), so export can write it."""
    directory = copy_cohort(tmp_path)
    edit(directory / "adverse_events.csv", 3, "description", "Headache\tafter the infusion")
    assert run_import(directory)[2] == 0
    assert AdverseEvent.objects.filter(description="Headache\tafter the infusion").count() == 1


def test_a_line_break_in_a_quoted_cell_is_refused_at_the_line_the_row_starts_on(centres, tmp_path):
    directory = copy_cohort(tmp_path)
    edit(directory / "adverse_events.csv", 3, "description", "Headache\nafter the infusion")
    edit(directory / "adverse_events.csv", 4, "serious", "maybe")  # now on physical line 5
    assert import_errors(directory) == [
        "adverse_events.csv:3: description: contains a control character (U+000A, at character 9); "
        "only printable text is allowed.",
        "adverse_events.csv:5: serious: 'maybe' is not an allowed code; allowed: yes, no.",
    ]


def test_a_latin_1_byte_is_reported_at_its_row_and_variable_not_at_line_1(centres, tmp_path):
    directory = copy_cohort(tmp_path)
    replace_bytes(directory / "adverse_events.csv", 3, b"Headache", b"H\xe9adache")
    replace_bytes(directory / "assessments.csv", 3, b"week_8", b"week_\xa08")
    assert import_errors(directory) == [
        "assessments.csv:3: visit: not UTF-8 text (byte 0xA0 at character 6); save the file as UTF-8.",
        "adverse_events.csv:3: description: not UTF-8 text (byte 0xE9 at character 2); save the file as UTF-8.",
    ]


@pytest.mark.parametrize(
    "file, line, column",
    [
        ("adverse_events.csv", 2, "onset_date"),
        ("follow_up.csv", 2, "last_follow_up_date"),
        ("ustekinumab_doses.csv", 3, "dose_date"),
        ("reinduction.csv", 2, "lor_date"),
    ],
)
def test_an_empty_required_date_is_reported_not_compared_with_dates(centres, tmp_path, file, line, column):
    """An empty required date reached the cross-form rules as '' ('<' between str and date)."""
    directory = copy_cohort(tmp_path)
    edit(directory / file, line, column, "")
    assert f"{file}:{line}: {column}: is required." in import_errors(directory)


def test_a_huge_cell_is_reported_at_its_cell(centres, tmp_path):
    """Larger than the csv module's field limit (128 KiB), which used to end the import with csv.Error."""
    directory = copy_cohort(tmp_path)
    edit(directory / "adverse_events.csv", 3, "description", "x" * 200_000)
    edit(directory / "ustekinumab_doses.csv", 3, "dose_mg", "9" * 200_000)
    assert import_errors(directory) == [
        f"ustekinumab_doses.csv:3: dose_mg: '{'9' * 40}…' (200,000 characters) is too long to be a whole number.",
        "adverse_events.csv:3: description: is 200,000 characters long; description takes at most 500.",
    ]


@pytest.mark.parametrize(
    "file, column, value, message",
    [
        ("patients.csv", "birth_year", "\u0661\u0669\u0667\u0663", "is not a whole number."),
        ("ustekinumab_doses.csv", "weight_kg", "6e1", "is not a number (digits, with a dot for decimals)."),
        ("ustekinumab_doses.csv", "weight_kg", "\u0666\u0660.6", "is not a number (digits, with a dot for decimals)."),
        ("ustekinumab_doses.csv", "dose_date", "\u0662\u0660\u0662\u0660-05-04", "is not a valid date (YYYY-MM-DD)."),
    ],
)
def test_numbers_and_dates_are_plain_ascii_digits(centres, tmp_path, file, column, value, message):
    """Export writes ASCII digits and no exponent; anything else would not survive a round trip."""
    directory = copy_cohort(tmp_path)
    edit(directory / file, 2, column, value)
    assert import_errors(directory) == [f"{file}:2: {column}: '{value}' {message}"]


def test_a_row_cut_short_or_too_long_is_reported_at_its_row_and_nothing_else_of_its_patient(centres, tmp_path):
    """Without the row the patient's record is incomplete: its cross-form rules would only report
    the missing row again, elsewhere (no re-induction dose, so every date after it 'too early')."""
    directory = copy_cohort(tmp_path)
    replace_bytes(directory / "ustekinumab_doses.csv", 7, b",iv,390,56.7", b"")
    replace_bytes(directory / "ustekinumab_doses.csv", 13, b",93", b",93,,")
    assert import_errors(directory) == [
        "ustekinumab_doses.csv:7: route: missing: the row has 3 values for 6 columns.",
        "ustekinumab_doses.csv:13: row: 8 values for 6 columns.",
    ]


def test_a_patient_row_that_cannot_be_read_is_not_reported_again_on_the_patients_other_rows(centres, tmp_path):
    directory = copy_cohort(tmp_path)
    replace_bytes(directory / "patients.csv", 2, b",never", b"")
    assert import_errors(directory) == ["patients.csv:2: smoking: missing: the row has 12 values for 13 columns."]


def test_a_quote_that_is_never_closed_is_reported_where_it_opens(centres, tmp_path):
    directory = copy_cohort(tmp_path)
    replace_bytes(directory / "adverse_events.csv", 4, b",Psoriasiform", b',"Psoriasiform')
    assert import_errors(directory) == [
        # The quote closes where the next row's quoted description opens.
        "adverse_events.csv:4: row: 9 values for 8 columns; the row runs on to line 5 (a quote not closed?)."
    ]


@pytest.mark.parametrize(
    "header, errors",
    [
        (
            b"study_id,onset_date,category,,serious,causality,outcome,led_to_discontinuation",
            [
                "adverse_events.csv:1: header: column 4 has no name.",
                "adverse_events.csv:1: description: column missing (every variable of the form must be present).",
            ],
        ),
        (
            b"study_id,onset_date,category,serious,serious,causality,outcome,led_to_discontinuation",
            [
                "adverse_events.csv:1: serious: column given twice.",
                "adverse_events.csv:1: description: column missing (every variable of the form must be present).",
            ],
        ),
        (
            b"study_id,onset_date,category,desc: ription,serious,causality,outcome,led_to_discontinuation",
            [
                "adverse_events.csv:1: header: column 4 ('desc: ription') is not a variable of form adverse_events.",
                "adverse_events.csv:1: description: column missing (every variable of the form must be present).",
            ],
        ),
        (
            b"study_id,onset_date,category,descr\xefption,serious,causality,outcome,led_to_discontinuation",
            [
                "adverse_events.csv:1: header: line 1 is not a header of variable names (is this a CSV file?): "
                "not UTF-8 text (byte 0xEF at character 6); save the file as UTF-8."
            ],
        ),
    ],
)
def test_a_broken_header_is_reported_on_line_1_with_a_variable_or_header(centres, tmp_path, header, errors):
    directory = copy_cohort(tmp_path)
    path = directory / "adverse_events.csv"
    path.write_bytes(header + b"\n" + path.read_bytes().split(b"\n", 1)[1])
    assert import_errors(directory) == errors


@pytest.mark.parametrize(
    "content, error",
    [
        (b"", "patients.csv:1: header: the file is empty; the first line must name the variables."),
        (b"\n\n", "patients.csv:1: header: line 1 is empty; the first line must name the variables."),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "patients.csv:1: header: line 1 is not a header of variable names (is this a CSV file?): "
            "not UTF-8 text (byte 0x89 at character 1); save the file as UTF-8.",
        ),
    ],
)
def test_an_empty_or_binary_file_is_reported_on_line_1(centres, tmp_path, content, error):
    directory = copy_cohort(tmp_path)
    (directory / "patients.csv").write_bytes(content)
    assert error in import_errors(directory)


def test_a_byte_order_mark_crlf_and_blank_lines_are_accepted(centres, tmp_path):
    directory = copy_cohort(tmp_path)
    for path in directory.glob("*.csv"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n\r\n"))
    out, err, code = run_import(directory)
    assert code == 0, err
    assert counts()["assessments"] == 124
