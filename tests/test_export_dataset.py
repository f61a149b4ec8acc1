"""`manage.py export_dataset` (SPEC section 8): the file the browser's export job writes, by the
same code, for every format, for all centres or one; an unknown format or centre is a clear error
with exit status 1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from io import StringIO
from pathlib import Path

import openpyxl
import pyreadstat
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from cohort.access import ALL_SCOPE
from cohort.models import Patient
from cohort.services import patient_soft_delete
from reports import jobs
from reports.exports import EXPORT_KINDS, FORMATS
from reports.models import ReportJob
from tests.base import login_as
from tests.test_report_jobs import import_cohort31, media  # noqa: F401 - the media fixture


def job_file(kind: str, scope: str, by) -> Path:
    job = jobs.job_request(kind=kind, scope=scope, by=by)
    job.refresh_from_db()  # no broker configured: the job ran in-process once it was committed
    assert job.status == ReportJob.Status.DONE, job.error
    return jobs.job_file(job)


def command_file(tmp_path: Path, export_format: str, centre: str | None = None) -> Path:
    out = tmp_path / f"{export_format}-{centre or 'all'}{EXPORT_KINDS[FORMATS[export_format]][0]}"
    options = {"centre": centre} if centre else {}
    call_command("export_dataset", format=export_format, out=str(out), stdout=StringIO(), **options)
    return out


def assert_same_export(kind: str, command: Path, job: Path) -> None:
    """Byte for byte, but for what says when the file was written: XLSX's and SPSS/Stata's
    creation time, the ODM file's identity and time, the zip's README stamp."""
    if kind in ("wide_csv", "audit_csv", "dictionary_csv"):
        assert command.read_bytes() == job.read_bytes()
    elif kind == "import_csv_zip":
        with zipfile.ZipFile(command) as mine, zipfile.ZipFile(job) as theirs:
            assert mine.namelist() == theirs.namelist()
            for name in mine.namelist():
                ours, its = mine.read(name), theirs.read(name)
                if name == "README.txt":
                    ours, its = (re.sub(rb"Exported .*? \(UTC\)", b"", text) for text in (ours, its))
                assert ours == its, name
    elif kind == "wide_xlsx":
        books = [openpyxl.load_workbook(path, read_only=True) for path in (command, job)]
        for sheet in books[0].sheetnames:
            assert [list(r) for r in books[0][sheet].values] == [list(r) for r in books[1][sheet].values]
    elif kind in ("wide_sav", "wide_dta"):
        read = pyreadstat.read_sav if kind == "wide_sav" else pyreadstat.read_dta
        (frame, meta), (other, other_meta) = read(str(command)), read(str(job))
        assert frame.equals(other)
        assert (meta.column_labels, meta.variable_value_labels) == (
            other_meta.column_labels,
            other_meta.variable_value_labels,
        )
    elif kind == "odm_xml":
        stamp = rb' (FileOID|CreationDateTime|EffectiveDate)="[^"]*"'
        assert re.sub(stamp, b"", command.read_bytes()) == re.sub(stamp, b"", job.read_bytes())
    else:
        raise AssertionError(f"no comparison for {kind}")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("media")
def test_every_format_writes_the_browser_jobs_file(people, tmp_path):
    import_cohort31()
    patient_soft_delete(patient=Patient.objects.get(study_id="AMC-002"), by=people["nurse_a"], reason="withdrew")
    assert sorted(FORMATS.values()) == sorted(EXPORT_KINDS)  # every export kind has its format name
    for export_format, kind in FORMATS.items():
        assert_same_export(
            kind, command_file(tmp_path, export_format), job_file(kind, ALL_SCOPE, people["coordinator"])
        )
    # One centre: the nurse's job of her centre; a removed patient only in the audit trail.
    for export_format in ("csv", "audit", "odm"):
        kind = FORMATS[export_format]
        mine = command_file(tmp_path, export_format, centre="AMC")
        assert_same_export(kind, mine, job_file(kind, "AMC", people["nurse_a"]))
        text = mine.read_text(encoding="utf-8")
        assert "AMC-001" in text and "UMCU-" not in text
        assert ("AMC-002" in text) == (export_format == "audit")


@pytest.mark.django_db
def test_an_unknown_format_or_centre_is_a_clear_error(people, tmp_path):
    with pytest.raises(CommandError, match="--format: unknown format 'json'; expected one of csv, xlsx"):
        call_command("export_dataset", format="json", out=str(tmp_path / "x"))
    with pytest.raises(CommandError, match="--centre: no centre with code 'XYZ'"):
        call_command("export_dataset", format="csv", out=str(tmp_path / "x.csv"), centre="XYZ")
    assert not list(tmp_path.iterdir())


@pytest.mark.django_db(transaction=True)
def test_the_command_exits_with_status_1_and_no_traceback(people, tmp_path, test_database_url):
    env = {**os.environ, "DATABASE_URL": test_database_url, "DEBUG": "1"}
    manage = Path(__file__).resolve().parent.parent / "manage.py"
    for arguments, message in (
        (["--format", "pdf"], "--format: unknown format 'pdf'"),
        (["--format", "csv", "--centre", "XYZ"], "--centre: no centre with code 'XYZ'"),
    ):
        result = subprocess.run(
            [sys.executable, str(manage), "export_dataset", *arguments, "--out", str(tmp_path / "x")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1, result.stderr
        assert f"CommandError: {message}" in result.stderr
        assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.django_db
def test_the_export_form_offers_odm_in_english_and_dutch(client, people):
    login_as(client, people["coordinator"])
    page = client.get(reverse("reports:report-list")).content.decode()
    assert '<option value="odm_xml">CDISC ODM 1.3.2 (XML)</option>' in page
    client.post(reverse("language-set"), {"language": "nl", "next": "/"})
    page = client.get(reverse("reports:report-list")).content.decode()
    assert '<option value="odm_xml">CDISC ODM 1.3.2 (xml)</option>' in page
