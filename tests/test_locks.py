"""Locks (SPEC section 10): a locked record refuses every write through every path, raw SQL
included, with a message naming the lock; unlocking needs a reason; the commands lock and unlock.
Each test checks what the database holds afterwards."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from cohort import locks
from cohort.audit import entries
from cohort.csvformat import export_cohort
from cohort.models import Assessment, Lock, LockEvent, Patient
from cohort.services import patient_enrol, patient_soft_delete
from tests.base import PATIENT_DATA, login_as, make_patient, make_record

pytestmark = pytest.mark.django_db


def raw_update_crp(assessment_id: int, value: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE cohort_assessment SET crp_mg_l = %s WHERE id = %s", [value, assessment_id])


def week_8(patient) -> Assessment:
    return Assessment.objects.get(patient=patient, visit="week_8")


def test_raw_sql_cannot_change_a_locked_casebook_and_can_after_the_unlock(patient, people):
    lock, new = locks.lock(by=people["coordinator"], reason="monitoring visit", patient=patient)
    assert new
    with pytest.raises(DatabaseError, match=r"record is locked \(casebook lock of AMC-001 by coordinator on "):
        raw_update_crp(week_8(patient).pk, "99.0")
    assert week_8(patient).crp_mg_l != 99
    assert locks.unlock(lock=lock, by=people["coordinator"], reason="query resolved")
    raw_update_crp(week_8(patient).pk, "99.0")
    assert week_8(patient).crp_mg_l == 99


def test_a_study_lock_refuses_every_table_and_the_orm_and_the_services(patient, people):
    locks.lock(by=people["coordinator"], reason="database freeze")
    with pytest.raises(DatabaseError, match="study lock"), transaction.atomic():
        Patient.objects.filter(pk=patient.pk).update(smoking="never")
    with pytest.raises(DatabaseError, match="study lock"), transaction.atomic():
        Assessment.objects.filter(patient=patient).delete()
    with pytest.raises(locks.Locked, match=r"record is locked \(study lock by coordinator on .*: database freeze\)"):
        patient_enrol(centre=people["centre_b"], by=people["nurse_b"], **PATIENT_DATA)
    with pytest.raises(locks.Locked):
        patient_soft_delete(patient=patient, by=people["nurse_a"], reason="duplicate")
    assert Patient.objects.count() == 1 and Assessment.objects.filter(patient=patient).count() == 4


def test_a_centre_lock_covers_its_patients_only(people):
    mine = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    theirs = make_record(make_patient(people["centre_b"], people["nurse_b"]))
    locks.lock(by=people["coordinator"], reason="site closed", centre=people["centre_a"])
    with pytest.raises(DatabaseError, match="centre lock of AMC"):
        raw_update_crp(week_8(mine).pk, "7")
    raw_update_crp(week_8(theirs).pk, "7")
    assert (week_8(mine).crp_mg_l, week_8(theirs).crp_mg_l) != (7, 7) and week_8(theirs).crp_mg_l == 7


def test_a_row_lock_covers_that_row_only(patient, people):
    locked, other = week_8(patient), Assessment.objects.get(patient=patient, visit="week_20")
    locks.lock(by=people["coordinator"], reason="source checked", row=locked)
    with pytest.raises(DatabaseError, match="form lock of AMC-001 assessments #"):
        raw_update_crp(locked.pk, "8")
    raw_update_crp(other.pk, "8")
    assert Assessment.objects.get(pk=other.pk).crp_mg_l == 8


def test_the_nurse_is_told_which_lock_and_nothing_is_saved(client, patient, people):
    locks.lock(by=people["coordinator"], reason="monitoring visit", patient=patient)
    before = week_8(patient)
    client.force_login(people["nurse_a"])
    data = {
        name: "" if getattr(before, name) is None else str(getattr(before, name))
        for name in ("not_done", "not_done_reason", "assessment_date", "hbi_wellbeing", "hbi_pain", "hbi_stools")
    }
    data.update(
        hbi_mass=before.hbi_mass or 0,
        hbi_complications=before.hbi_complications or 0,
        crp_mg_l="12.5",
        form_status="complete",
        version=before.version,
        reason_for_change="corrected",
    )
    response = client.post(reverse("cohort:form", args=[patient.study_id, "week_8"]), data)
    assert response.status_code == 200
    assert "record is locked (casebook lock of AMC-001 by coordinator" in response.content.decode()
    after = week_8(patient)
    assert (after.version, after.crp_mg_l) == (before.version, before.crp_mg_l)


def test_the_import_names_each_locked_row_and_writes_nothing(patient, people, tmp_path):
    export_cohort(tmp_path)
    (tmp_path / "assessments.csv").write_text(
        (tmp_path / "assessments.csv").read_text().replace(",4.5,", ",5.5,", 1), encoding="utf-8"
    )
    locks.lock(by=people["coordinator"], reason="monitoring visit", patient=patient)
    events = len(entries([patient.pk]))
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError):
        call_command("import_cohort", str(tmp_path), stdout=out, stderr=err)
    printed = err.getvalue()
    assert "patients.csv:2: study_id: record is locked (casebook lock of AMC-001 by coordinator on " in printed
    assert "assessments.csv:2: study_id: record is locked (casebook lock of AMC-001" in printed
    assert len(entries([patient.pk])) == events


def test_the_commands_lock_and_unlock_with_a_reason_and_the_trail_keeps_both(patient, people):
    out = StringIO()
    call_command("lock", "--patient", "AMC-001", "--reason", "monitoring visit", "--user", "coordinator", stdout=out)
    assert "Locked: casebook lock of AMC-001" in out.getvalue()
    call_command("lock", "--patient", "AMC-001", "--reason", "again", stdout=out)
    assert "Already locked: casebook lock of AMC-001" in out.getvalue()
    assert Lock.objects.count() == 1
    with pytest.raises(CommandError, match="--reason: Give a reason"):
        call_command("unlock", "--patient", "AMC-001", "--reason", " ", stdout=out)
    call_command("unlock", "--patient", "AMC-001", "--reason", "visit closed", "--user", "coordinator", stdout=out)
    assert "Unlocked: casebook lock of AMC-001" in out.getvalue()
    with pytest.raises(CommandError, match="nothing to unlock"):
        call_command("unlock", "--patient", "AMC-001", "--reason", "twice", stdout=out)
    lock = Lock.objects.get()
    assert (lock.reason, lock.unlock_reason, lock.unlocked_by.username) == (
        "monitoring visit",
        "visit closed",
        "coordinator",
    )
    # Every state change is audited by the same triggers, with who and why.
    events = LockEvent.objects.order_by("pgh_id")
    assert [(e.pgh_label, e.unlock_reason, e.pgh_context.metadata.get("reason")) for e in events] == [
        ("insert", "", "monitoring visit"),
        ("update", "visit closed", "visit closed"),
    ]


def test_study_and_centre_locks_from_the_command_line(people):
    call_command("lock", "--study", "--reason", "freeze for analysis", stdout=StringIO())
    call_command("lock", "--centre", "UMCU", "--reason", "site closed", stdout=StringIO())
    assert sorted(Lock.objects.values_list("kind", flat=True)) == ["centre", "study"]
    with pytest.raises(CommandError, match="no centre with code 'XYZ'"):
        call_command("lock", "--centre", "XYZ", "--reason", "x", stdout=StringIO())
    call_command("unlock", "--study", "--reason", "analysis done", stdout=StringIO())
    assert locks.active().get().kind == "centre"


def test_unlocking_needs_a_reason(patient, people):
    lock, _new = locks.lock(by=people["coordinator"], reason="monitoring visit", patient=patient)
    with pytest.raises(ValidationError):
        locks.unlock(lock=lock, by=people["coordinator"], reason="")
    assert Lock.objects.get().active
    with pytest.raises(DatabaseError), transaction.atomic():  # the database holds the rule too
        Lock.objects.filter(pk=lock.pk).update(unlocked_at=dt.datetime.now(dt.UTC))


def test_a_coordinator_locks_and_unlocks_a_casebook_in_the_browser(client, patient, people):
    casebook = reverse("cohort:patient-detail", args=[patient.study_id])
    login_as(client, people["coordinator"])
    assert 'id="lock-control"' in client.get(casebook).content.decode()
    response = client.post(reverse("cohort:patient-lock", args=[patient.study_id]), {"reason": "monitoring visit"})
    assert response.status_code == 302 and response["Location"] == casebook
    lock = locks.active().get()
    assert (lock.kind, lock.patient_id, lock.locked_by.username) == ("patient", patient.pk, "coordinator")

    client.force_login(people["nurse_a"])
    page = client.get(casebook).content.decode()
    assert 'id="lock-banner"' in page and "casebook lock of AMC-001 by coordinator on" in page
    assert 'id="lock-control"' not in page and 'id="remove-patient"' not in page
    form_page = client.get(reverse("cohort:form", args=[patient.study_id, "week_8"])).content.decode()
    assert 'id="lock-banner"' in form_page and 'name="crp_mg_l"' in form_page and "disabled" in form_page
    assert client.post(reverse("cohort:patient-unlock", args=[patient.study_id]), {"lock": lock.pk}).status_code == 403

    login_as(client, people["coordinator"])
    unlock = reverse("cohort:patient-unlock", args=[patient.study_id])
    client.post(unlock, {"lock": lock.pk, "unlock_reason": ""})
    assert locks.active().count() == 1  # no reason, no unlock
    client.post(unlock, {"lock": lock.pk, "unlock_reason": "visit closed"})
    assert not locks.active().exists()
    assert Lock.objects.get().unlock_reason == "visit closed"


def test_a_coordinator_locks_one_form_row_from_its_page(client, patient, people):
    row = week_8(patient)
    login_as(client, people["coordinator"])
    page = reverse("cohort:form", args=[patient.study_id, "week_8"])
    client.post(
        reverse("cohort:patient-lock", args=[patient.study_id]),
        {"reason": "source verified", "form": "assessments", "row": row.pk, "next": page},
    )
    lock = locks.active().get()
    assert (lock.kind, lock.form, lock.row_id) == ("row", "assessments", row.pk)
    assert "form lock of AMC-001, Assessment" in client.get(page).content.decode()
    other = client.get(reverse("cohort:form", args=[patient.study_id, "week_20"])).content.decode()
    assert 'id="lock-banner"' not in other


def test_the_locks_page_locks_the_study_and_a_centre_for_coordinators_only(client, patient, people):
    client.force_login(people["nurse_a"])
    assert client.get(reverse("cohort:lock-list")).status_code == 403
    assert client.post(reverse("cohort:lock-new"), {"scope": "study", "reason": "x"}).status_code == 403
    login_as(client, people["coordinator"])
    client.post(reverse("cohort:lock-new"), {"scope": "study", "reason": "database freeze"})
    client.post(reverse("cohort:lock-new"), {"scope": "UMCU", "reason": "site closed"})
    client.post(reverse("cohort:lock-new"), {"scope": "NOPE", "reason": "x"})
    assert sorted(locks.active().values_list("kind", flat=True)) == ["centre", "study"]
    page = client.get(reverse("cohort:lock-list")).content.decode()
    assert "study lock by coordinator" in page and "centre lock of UMCU by coordinator" in page
    study = locks.active().get(kind="study")
    client.post(reverse("cohort:lock-unlock"), {"lock": study.pk, "unlock_reason": "analysis done"})
    assert list(locks.active().values_list("kind", flat=True)) == ["centre"]


def test_the_lock_is_named_in_dutch_for_a_dutch_nurse(client, patient, people):
    from cohort.models import UserProfile

    locks.lock(by=people["coordinator"], reason="monitorbezoek", patient=patient)
    UserProfile.objects.update_or_create(user=people["nurse_a"], defaults={"language": "nl"})
    client.force_login(people["nurse_a"])
    page = client.get(reverse("cohort:patient-detail", args=[patient.study_id]), HTTP_ACCEPT_LANGUAGE="nl").content
    assert "Vergrendeld</strong>: casebookvergrendeling van AMC-001 door coordinator op " in page.decode()


def test_an_investigator_reads_the_centres_casebooks_and_changes_nothing(client, patient, people):
    """SPEC section 2: the principal investigator reads the centre's data; writing and locking are
    not the investigator's (signing is, section 10)."""
    from cohort.choices import Role
    from tests.base import make_user

    investigator = make_user("investigator_a", centre=people["centre_a"], role=Role.INVESTIGATOR)
    login_as(client, investigator)
    casebook = reverse("cohort:patient-detail", args=[patient.study_id])
    assert client.get(casebook).status_code == 200
    assert client.get(reverse("cohort:form", args=[patient.study_id, "week_8"])).status_code == 200
    assert client.post(reverse("cohort:form", args=[patient.study_id, "week_8"]), {}).status_code == 403
    assert client.post(reverse("cohort:patient-lock", args=[patient.study_id]), {"reason": "x"}).status_code == 403
    other = make_patient(people["centre_b"], people["nurse_b"])
    assert client.get(reverse("cohort:patient-detail", args=[other.study_id])).status_code == 404
    assert not Lock.objects.exists()


def test_the_casebook_pdf_says_which_lock_holds_it(patient, people, tmp_path):
    import subprocess

    from reports.pdf import render_casebook

    locks.lock(by=people["coordinator"], reason="database freeze")
    render_casebook(patient, tmp_path / "casebook.pdf")
    text = subprocess.run(["pdftotext", str(tmp_path / "casebook.pdf"), "-"], capture_output=True, text=True).stdout
    assert "Locked: study lock by coordinator on" in text and "database freeze" in text


def test_the_patient_list_marks_locked_patients(client, people):
    mine = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    other = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    locks.lock(by=people["coordinator"], reason="monitoring visit", patient=mine)
    client.force_login(people["nurse_a"])
    page = client.get(reverse("cohort:patient-list")).content.decode()
    row_of = {
        study_id: page.split(f">{study_id}</a>", 1)[1].split("</td>", 1)[0] for study_id in ("AMC-001", "AMC-002")
    }
    assert 'data-locked="patient"' in row_of[mine.study_id] and "data-locked" not in row_of[other.study_id]
