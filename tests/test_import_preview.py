"""The import preview (issue 15 item 4): the change set an import would write, field by field, from
the importer's own write step with the statements skipped; `import_cohort --dry-run` prints it."""

from __future__ import annotations

import csv
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from cohort import uploads as upload_check
from cohort.choices import Role
from cohort.importer import ImportFailed, import_cohort
from cohort.models import Assessment, Membership, Patient
from cohort.services import patient_audit_trail
from reports import imports as import_jobs
from reports.models import ImportJob
from tests.base import login_as, make_user
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


# --- the web page --------------------------------------------------------------------------------


@pytest.fixture
def people(centres):
    from cohort.models import Centre

    amc, umcu = Centre.objects.get(code="AMC"), Centre.objects.get(code="UMCU")
    coordinator = make_user("coordinator", centre=amc, role=Role.COORDINATOR)
    return {
        "nurse_a": make_user("nurse_a", centre=amc),
        "nurse_b": make_user("nurse_b", centre=umcu),
        "investigator": make_user("investigator", centre=amc, role=Role.INVESTIGATOR),
        "coordinator": coordinator,
    }


def uploads(directory: Path, names=None) -> list[SimpleUploadedFile]:
    return [
        SimpleUploadedFile(path.name, path.read_bytes(), content_type="text/csv")
        for path in sorted(directory.glob("*.csv"))
        if names is None or path.name in names
    ]


def zipped(members: dict[str, bytes], name: str = "cohort.zip") -> SimpleUploadedFile:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/zip")


def upload(client, files) -> ImportJob | None:
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):  # the wake-up, once the job row commits
        response = client.post(reverse("reports:import-upload"), {"files": files})
    if response.status_code != 302:
        return None
    return ImportJob.objects.get(pk=int(response["Location"].rstrip("/").split("/")[-1]))


def apply(client, job, reason: str):
    """Post Apply; without a broker the apply job runs in-process once the request commits."""
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(reverse("reports:import-apply", args=[job.pk]), {"reason": reason})


def test_a_coordinator_previews_then_applies_with_a_reason_exactly_what_was_shown(client, people, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    run_import(COHORT)
    directory = changed_copy(tmp_path)
    login_as(client, people["coordinator"])
    events, version = audit_count(), data_version()

    job = upload(client, uploads(directory))

    job.refresh_from_db()  # no broker in this test: the preview ran in-process
    assert job.status == ImportJob.Status.READY
    assert audit_count() == events and data_version() == version
    page = client.get(reverse("reports:import-detail", args=[job.pk])).content.decode()
    assert "AMC-900" in page and "AMC-001" in page and "AMC-002" in page
    assert "C-reactive protein" in page or "CRP" in page
    assert "77,5" not in page and "77.5" in page  # English user: a decimal point
    # Without a reason nothing is written.
    response = client.post(reverse("reports:import-apply", args=[job.pk]), {"reason": ""})
    assert response.status_code == 400 and audit_count() == events
    preview = job.preview

    response = apply(client, job, "Lab results from the CRO")

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == ImportJob.Status.APPLIED and job.reason == "Lab results from the CRO"
    assert Patient.objects.filter(study_id="AMC-900").exists()
    last = patient_audit_trail(Patient.objects.get(study_id="AMC-001"))[-1]
    assert (
        last["user"] == "coordinator"
        and last["reason"] == "Lab results from the CRO"
        and last["source"] == "web_import"
    )
    # What was written is what was shown: the same import again previews as nothing to do.
    assert import_cohort(directory, user=None, write=False, record=True).as_json()["patients"] == []
    assert preview["patients"] and {p["study_id"] for p in preview["patients"]} == {"AMC-001", "AMC-002", "AMC-900"}
    # A second click (or the back button) writes nothing more.
    events = audit_count()
    apply(client, job, "again")
    assert audit_count() == events
    job.refresh_from_db()
    assert job.reason == "Lab results from the CRO"


def test_a_stale_preview_is_refused_and_the_new_one_shown(client, people, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    run_import(COHORT)
    directory = changed_copy(tmp_path)
    login_as(client, people["coordinator"])
    job = upload(client, uploads(directory))
    job.refresh_from_db()
    # Meanwhile someone changes AMC-001's birth year to what the files say.
    Patient.objects.filter(study_id="AMC-001").update(birth_year=1971)
    events = audit_count()

    apply(client, job, "Lab results")

    page = client.get(reverse("reports:import-detail", args=[job.pk])).content.decode()
    assert "The data changed since this preview" in page and 'id="import-apply"' in page
    assert audit_count() == events and not Patient.objects.filter(study_id="AMC-900").exists()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.READY
    amc1 = next(p for p in job.preview["patients"] if p["study_id"] == "AMC-001")
    assert "birth_year" not in {field[0] for row in amc1["rows"] for field in row["fields"]}
    assert job.stale
    # The new preview applies.
    apply(client, job, "Lab results")
    assert Patient.objects.filter(study_id="AMC-900").exists()


def test_errors_are_listed_at_file_row_variable(client, people, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    login_as(client, people["coordinator"])
    job = upload(client, uploads(CORRUPT))
    job.refresh_from_db()
    assert job.status == ImportJob.Status.INVALID
    page = client.get(reverse("reports:import-detail", args=[job.pk])).content.decode()
    assert "patients.csv:5: birth_year: must be 1920 or later." in page
    assert 'id="import-apply"' not in page
    assert Patient.all_objects.count() == 0


def test_who_may_import_and_see_an_upload(client, people, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    run_import(COHORT)
    login_as(client, people["investigator"])
    assert client.get(reverse("reports:import-upload")).status_code == 403
    assert reverse("reports:import-upload").encode() not in client.get(reverse("cohort:patient-list")).content
    login_as(client, people["nurse_a"])
    job = upload(client, uploads(COHORT, {"patients.csv"}))
    assert reverse("reports:import-upload").encode() in client.get(reverse("cohort:patient-list")).content
    # Another user's upload is not there for her, nor for a coordinator.
    for other in ("nurse_b", "coordinator"):
        login_as(client, people[other])
        assert client.get(reverse("reports:import-detail", args=[job.pk])).status_code == 404
        assert client.get(reverse("reports:import-status", args=[job.pk])).status_code == 404
        assert client.post(reverse("reports:import-apply", args=[job.pk]), {"reason": "x"}).status_code == 404
    # The nurse of centre B sees nothing of centre A's patients: their rows are refused unnamed.
    login_as(client, people["nurse_b"])
    other = upload(client, uploads(COHORT, {"patients.csv"}))
    other.refresh_from_db()
    assert other.status == ImportJob.Status.INVALID and other.preview is None
    assert "patients.csv:2: centre: you cannot enter data at centre AMC." in other.errors
    assert not any("UMCU" in error and "belongs" in error for error in other.errors)


@pytest.mark.parametrize(
    "files, message",
    [
        (lambda: [zipped({"../patients.csv": b"x"})], "points outside the zip"),
        (lambda: [zipped({"/etc/patients.csv": b"x"})], "points outside the zip"),
        (lambda: [zipped({"patients.csv": b"0" * (upload_check.MAX_UNZIPPED_BYTES + 1)})], "unpacks to more than"),
        (lambda: [SimpleUploadedFile("patients.csv", "study_id\nAMC-001 café\n".encode("latin-1"))], "not UTF-8"),
        (lambda: [SimpleUploadedFile("notes.txt", b"hello")], "is not a form file"),
        (lambda: [SimpleUploadedFile("cohort.zip", b"PK\x03\x04 not really")], "not a readable zip"),
        (lambda: [zipped({"readme.txt": b"x"})], "holds no form files"),
    ],
)
def test_unsafe_or_unreadable_uploads_are_refused_at_the_field(client, people, settings, tmp_path, files, message):
    settings.MEDIA_ROOT = tmp_path / "media"
    login_as(client, people["nurse_a"])
    response = client.post(reverse("reports:import-upload"), {"files": files()})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'id="id_files_errors"' in response.content.decode()
    assert ImportJob.objects.count() == 0 and not (tmp_path / "media").exists()


def test_an_oversize_file_is_refused(client, people, settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setattr(upload_check, "MAX_FILE_BYTES", 1000)
    login_as(client, people["nurse_a"])
    response = client.post(reverse("reports:import-upload"), {"files": uploads(COHORT, {"assessments.csv"})})
    assert response.status_code == 400 and "is larger than" in response.content.decode()


def test_the_dutch_page_names_fields_and_codes_in_dutch(client, people, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    from cohort.accounts import language_remember

    run_import(COHORT)
    directory = changed_copy(tmp_path)
    language_remember(people["coordinator"], "nl")
    login_as(client, people["coordinator"])
    job = upload(client, uploads(directory))
    page = client.get(reverse("reports:import-detail", args=[job.pk]), HTTP_ACCEPT_LANGUAGE="nl").content.decode()
    assert "Geboortejaar" in page or "geboortejaar" in page
    assert "77,5" in page
    assert "Toepassen" in page and "Reden van wijziging" in page


@pytest.mark.django_db(transaction=True)
def test_the_preview_runs_in_a_real_worker_with_the_files_from_the_shared_volume(
    client, centres, celery_worker, celery_on_redis
):
    from tests.conftest import wait_for

    run_import(COHORT)
    coordinator = make_user("coordinator_w", centre=None)
    from cohort.models import Centre

    Membership.objects.create(user=coordinator, centre=Centre.objects.get(code="AMC"), role=Role.COORDINATOR)
    login_as(client, coordinator)
    job = upload(client, uploads(COHORT, {"patients.csv"}))
    try:
        assert ImportJob.objects.get(pk=job.pk).status in (
            ImportJob.Status.QUEUED,
            ImportJob.Status.RUNNING,
            ImportJob.Status.READY,
        )
        wait_for(
            lambda: ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.READY, timeout=60, what="the preview"
        )
        job.refresh_from_db()
        assert job.progress == 100 and job.preview["counts"]["unchanged"] == {"patients": 31}
    finally:
        shutil.rmtree(import_jobs.job_dir(job), ignore_errors=True)


@pytest.mark.django_db(transaction=True)
def test_a_worker_writes_a_dutch_uploaders_errors_in_dutch_at_file_row_variable(
    client, centres, celery_worker, celery_on_redis, tmp_path
):
    """The page was Dutch, so the errors the worker writes are: the message in Dutch, its place in
    the format's `file:row: variable`. The command line's stay English (the test above)."""
    from django.conf import settings

    from cohort.models import Centre
    from tests.conftest import wait_for
    from tests.test_import import copy_cohort, edit

    directory = copy_cohort(tmp_path)
    edit(directory / "patients.csv", 3, "birth_year", "negentien")
    edit(directory / "patients.csv", 4, "birth_year", "1900")
    edit(directory / "patients.csv", 5, "centre", "XYZ")
    nurse = make_user("nurse_nl", centre=Centre.objects.get(code="AMC"))
    login_as(client, nurse)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "nl"
    job = upload(client, uploads(directory, {"patients.csv"}))
    try:
        wait_for(
            lambda: ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.INVALID, timeout=60, what="the preview"
        )
        job.refresh_from_db()
        assert job.language == "nl"
        assert "patients.csv:3: birth_year: 'negentien' is geen geheel getal." in job.errors
        assert "patients.csv:4: birth_year: moet 1920 of later zijn." in job.errors
        assert any(error.startswith("patients.csv:5: centre: geen centrum met code 'XYZ'") for error in job.errors)
        page = client.get(reverse("reports:import-detail", args=[job.pk])).content.decode()
        assert (
            '<span class="font-monospace">patients.csv:3: birth_year: &#x27;negentien&#x27; is geen geheel getal.'
            '</span> <span class="text-body-secondary">(Geboortejaar)</span>'
        ) in page  # the variable's label beside the line
        assert "whole number" not in page and "or later" not in page
    finally:
        shutil.rmtree(import_jobs.job_dir(job), ignore_errors=True)


def test_a_large_preview_is_read_a_page_of_patients_at_a_time(client, people, settings, tmp_path, monkeypatch):
    from reports import import_views

    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setattr(import_views, "PATIENTS_PER_PAGE", 20)
    login_as(client, people["coordinator"])
    job = upload(client, uploads(COHORT))  # 31 new patients
    url = reverse("reports:import-detail", args=[job.pk])
    first, second = client.get(url).content.decode(), client.get(url + "?page=2").content.decode()
    assert "31 patients to create" in first and "31 patients to create" in second
    assert 'id="patient-AMC-001"' in first and 'id="patient-AMC-001"' not in second
    shown = [page.count('class="bg-body rounded shadow-sm p-3 mb-3 import-patient"') for page in (first, second)]
    assert shown == [20, 11]


def test_a_preview_job_runs_once_and_the_sweep_takes_back_a_lost_one(people, settings, tmp_path):
    import datetime as dt

    from django.utils import timezone

    settings.MEDIA_ROOT = tmp_path / "media"
    job = import_jobs.import_upload(
        by=people["coordinator"], files={"patients.csv": (COHORT / "patients.csv").read_bytes()}
    )
    assert import_jobs.preview_run(job.pk).status == ImportJob.Status.READY
    assert import_jobs.preview_run(job.pk) is None  # delivered twice: nothing more to do
    # A worker that died mid-preview: its heartbeat stopped, the sweep queues the job again.
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.RUNNING, heartbeat_at=timezone.now() - dt.timedelta(minutes=1), attempts=1
    )
    import_jobs.sweep()  # without a broker the wake-up runs it here
    job.refresh_from_db()
    assert job.status == ImportJob.Status.READY and job.attempts == 2


def test_the_files_of_an_upload_with_errors_are_not_kept(people, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    job = import_jobs.import_upload(
        by=people["coordinator"], files={"patients.csv": (CORRUPT / "patients.csv").read_bytes()}
    )
    assert import_jobs.preview_run(job.pk).status == ImportJob.Status.INVALID
    assert not import_jobs.job_dir(job).exists()


# --- apply as a worker job ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_apply_runs_in_a_real_worker_with_the_reason_in_the_audit_trail(
    client, centres, celery_worker, celery_on_redis
):
    from cohort.models import Centre
    from tests.conftest import wait_for

    run_import(COHORT)
    coordinator = make_user("coordinator_w", centre=None)
    Membership.objects.create(user=coordinator, centre=Centre.objects.get(code="AMC"), role=Role.COORDINATOR)
    login_as(client, coordinator)
    header, *rows = (COHORT / "patients.csv").read_text().splitlines()
    birth = header.split(",").index("birth_year")
    first = rows[0].split(",")
    first[birth] = "1966"
    job = upload(client, [SimpleUploadedFile("patients.csv", "\n".join([header, ",".join(first)]).encode() + b"\n")])
    try:
        wait_for(lambda: ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.READY, timeout=60, what="preview")
        response = client.post(reverse("reports:import-apply", args=[job.pk]), {"reason": "Source data check"})
        # The request only queues it: the worker writes.
        assert response.status_code == 302
        assert ImportJob.objects.get(pk=job.pk).status in (
            ImportJob.Status.APPLY_QUEUED,
            ImportJob.Status.APPLYING,
            ImportJob.Status.APPLIED,
        )
        page = client.get(reverse("reports:import-detail", args=[job.pk])).content.decode()
        assert 'id="import-progress"' in page or 'id="import-applied"' in page
        wait_for(
            lambda: ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.APPLIED, timeout=60, what="the apply"
        )
        patient = Patient.objects.get(study_id=first[0])
        assert patient.birth_year == 1966
        last = patient_audit_trail(patient)[-1]
        assert last["user"] == "coordinator_w" and last["reason"] == "Source data check"
        assert last["source"] == "web_import"
        page = client.get(reverse("reports:import-detail", args=[job.pk])).content.decode()
        assert 'id="import-applied"' in page and "Source data check" in page
        assert not import_jobs.job_dir(job).exists()
        status = client.get(reverse("reports:import-status", args=[job.pk])).json()
        assert status == {"status": "applied", "working": False, "progress": 100, "message": ""}
    finally:
        shutil.rmtree(import_jobs.job_dir(job), ignore_errors=True)


def test_an_apply_is_written_once_and_the_sweep_takes_back_a_lost_one(people, settings, tmp_path):
    import datetime as dt

    from django.utils import timezone

    settings.MEDIA_ROOT = tmp_path / "media"
    run_import(COHORT)
    directory = changed_copy(tmp_path)
    by = people["coordinator"]
    job = import_jobs.import_upload(by=by, files={"patients.csv": (directory / "patients.csv").read_bytes()})
    job = import_jobs.preview_run(job.pk)
    assert import_jobs.import_apply(job, by=by, reason="Batch 2") is True
    assert import_jobs.import_apply(job, by=by, reason="twice") is False  # a double click queues nothing
    # A worker that died mid-apply: its transaction rolled back, its heartbeat stopped.
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.APPLYING, heartbeat_at=timezone.now() - dt.timedelta(minutes=1), attempts=1
    )
    assert not Patient.objects.filter(study_id="AMC-900").exists()
    import_jobs.sweep()  # back in the queue; without a broker the wake-up runs it here
    job.refresh_from_db()
    assert job.status == ImportJob.Status.APPLIED and job.reason == "Batch 2" and job.attempts == 2
    assert Patient.objects.filter(study_id="AMC-900").exists()
    events = audit_count()
    assert import_jobs.apply_run(job.pk) is None  # delivered again: nothing more is written
    assert audit_count() == events


def test_an_apply_whose_claim_was_taken_over_writes_nothing(people, settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = tmp_path / "media"
    run_import(COHORT)
    directory = changed_copy(tmp_path)
    by = people["coordinator"]
    job = import_jobs.preview_run(
        import_jobs.import_upload(by=by, files={"patients.csv": (directory / "patients.csv").read_bytes()}).pk
    )
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.APPLY_QUEUED, reason="Batch 2")
    # The first worker claims it, then (its heartbeat lost) the sweep gives it to a second one,
    # which holds the claim while the first finishes writing: the first rolls back.
    from cohort import importer

    original = importer.import_cohort

    def taken_over_meanwhile(*args, **kwargs):
        summary = original(*args, **kwargs)
        ImportJob.objects.filter(pk=job.pk).update(claimed_by="second-worker")
        return summary

    monkeypatch.setattr(import_jobs, "import_cohort", taken_over_meanwhile)
    assert import_jobs.apply_run(job.pk, claim="first-worker") is None
    monkeypatch.undo()
    assert not Patient.objects.filter(study_id="AMC-900").exists()
    # (The takeover, made inside the first's transaction here, rolled back with it; the sweep's is
    # its own and stays.) The job back in the queue, the second worker's delivery writes it.
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.APPLY_QUEUED)
    assert import_jobs.apply_run(job.pk, claim="second-worker").status == ImportJob.Status.APPLIED
    assert Patient.objects.filter(study_id="AMC-900").exists()


# --- expiry ------------------------------------------------------------------------------------


def test_uploads_not_applied_in_time_expire_and_their_files_go(client, people, settings, tmp_path):
    import datetime as dt

    from django.utils import timezone

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMPORT_UPLOAD_EXPIRY_HOURS = 24
    run_import(COHORT)
    directory = changed_copy(tmp_path)
    login_as(client, people["coordinator"])
    old, applying, fresh = (upload(client, uploads(directory, {"patients.csv"})) for _ in range(3))
    ImportJob.objects.filter(pk__in=[old.pk, applying.pk]).update(uploaded_at=timezone.now() - dt.timedelta(hours=25))
    ImportJob.objects.filter(pk=applying.pk).update(status=ImportJob.Status.APPLY_QUEUED, reason="Batch 2")
    assert all(import_jobs.job_dir(job).exists() for job in (old, applying, fresh))

    import_jobs.expire()

    statuses = dict(ImportJob.objects.values_list("pk", "status"))
    assert statuses == {
        old.pk: ImportJob.Status.EXPIRED,
        applying.pk: ImportJob.Status.APPLY_QUEUED,  # a decision taken in time is kept
        fresh.pk: ImportJob.Status.READY,
    }
    assert not import_jobs.job_dir(old).exists()
    assert import_jobs.job_dir(applying).exists() and import_jobs.job_dir(fresh).exists()
    page = client.get(reverse("reports:import-detail", args=[old.pk])).content.decode()
    assert "This upload expired: it was not applied within 24 hours" in page
    assert 'id="import-apply"' not in page
    # Apply on the expired page (an old tab) writes nothing.
    apply(client, old, "late")
    assert ImportJob.objects.get(pk=old.pk).status == ImportJob.Status.EXPIRED
    assert not Patient.objects.filter(study_id="AMC-900").exists()
    from cohort.accounts import language_remember

    language_remember(people["coordinator"], "nl")
    login_as(client, people["coordinator"])
    page = client.get(reverse("reports:import-detail", args=[old.pk]), HTTP_ACCEPT_LANGUAGE="nl").content.decode()
    assert "Deze upload is verlopen" in page and "verlopen" in page
    # The beat's sweep does it too.
    ImportJob.objects.filter(pk=fresh.pk).update(uploaded_at=timezone.now() - dt.timedelta(hours=25))
    import_jobs.sweep()
    assert ImportJob.objects.get(pk=fresh.pk).status == ImportJob.Status.EXPIRED
    assert not import_jobs.job_dir(fresh).exists()
