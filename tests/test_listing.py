"""The patient list's stored casebook summaries (cohort.listing, models.CasebookSummary).

What the automatic data checks store is what the list shows from the casebooks themselves, and a
change to anything a summary is made from makes it stale at once, whoever makes it (a save, an
import, a raw statement): the database raises the patient's stamp (migration 0021)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cohort import casebook, crf, data_checks, listing, sdv, services, signatures
from cohort.models import (
    AdverseEvent,
    Assessment,
    CasebookSummary,
    FlagConfirmation,
    FollowUp,
    Patient,
    Signature,
    UstekinumabDose,
    Verification,
)
from tests.base import login_as, make_patient, make_record, personae

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate()


@pytest.fixture
def people():
    return personae()


def list_rows(client) -> dict[str, str]:
    """The list's rows (their HTML) by study ID."""
    page = client.get(reverse("cohort:patient-list")).content.decode()
    found = re.findall(r'<tr>\s*<td class="text-nowrap"><a [^>]*class="fw-semibold">([^<]+)</a>.*?</tr>', page, re.S)
    rows = re.findall(r'<tr>\s*<td class="text-nowrap">.*?</tr>', page, re.S)
    assert len(found) == len(rows) > 0
    return dict(zip(found, rows, strict=True))


def is_current(patient: Patient) -> bool:
    stored = CasebookSummary.objects.get(pk=patient.pk)
    return stored.summary_stamp == stored.data_stamp and stored.rules == listing.rules()


def tamper(patient: Patient) -> None:
    """Make the stored summary say 77 forms are complete (while it stays current): a list that
    shows it read the stored summary."""
    stored = CasebookSummary.objects.get(pk=patient.pk)
    stored.summary["complete"] = 77
    stored.save(update_fields=["summary"])


def complete_shown(client, patient: Patient) -> str:
    return re.search(r'aria-valuenow="(\d+)"', list_rows(client)[patient.study_id]).group(1)


def recent(people, days_ago: int) -> Patient:
    """A patient re-induced `days_ago` days ago, with only the week 0 visit entered."""
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]), t0=TODAY - dt.timedelta(days=days_ago))
    Assessment.objects.filter(patient=patient).exclude(visit="week_0").delete()
    FollowUp.objects.filter(patient=patient).delete()
    return patient


@pytest.fixture
def cohort(people):
    """Casebooks in every state a row shows: complete, bare, flagged, with visits due and overdue,
    partly verified, signed as it stands, signed before a change."""
    nurse, centre = people["nurse_a"], people["centre_a"]
    complete = make_record(make_patient(centre, nurse))
    bare = make_patient(centre, nurse)
    flagged = make_record(make_patient(centre, nurse))
    UstekinumabDose.objects.filter(patient=flagged, phase="reinduction").update(dose_mg=520, weight_kg=Decimal("50"))
    due, overdue = recent(people, 60), recent(people, 120)
    verified = make_record(make_patient(centre, nurse))
    sdv.verify(record=services.patient_record(verified), forms=list(crf.FORMS)[:4], by=people["coordinator"])
    signed, changed = (make_record(make_patient(centre, nurse)) for _ in range(2))
    for patient in (signed, changed):
        Signature.objects.create(
            patient=patient,
            signed_by=people["coordinator"],
            signed_at=timezone.now(),
            meaning="test",
            data_hash=signatures.data_hash(services.patient_record(patient)),
        )
    Signature.objects.filter(patient=changed).update(data_hash="0" * 64)  # as if signed before a change
    return [complete, bare, flagged, due, overdue, verified, signed, changed]


def test_the_list_shows_the_same_rows_from_the_stored_summaries_as_from_the_casebooks(client, people, cohort):
    login_as(client, people["nurse_a"])
    assert not any(is_current(patient) for patient in cohort)

    data_checks.run()  # (which also opens the queries the rows count)

    assert all(is_current(patient) for patient in cohort)
    from_summaries = list_rows(client)
    CasebookSummary.objects.update(rules="another release")  # every summary stale
    from_casebooks = list_rows(client)
    assert from_summaries == from_casebooks
    # What the rows say, as the nurse reads them.
    due, overdue, signed, changed = cohort[3], cohort[4], cohort[6], cohort[7]
    assert "text-bg-warning" in from_casebooks[due.study_id]  # week 8 due now
    assert 'data-label="Overdue"><span class="badge text-bg-danger">1<' in from_casebooks[overdue.study_id]
    assert 'data-signed="yes"' in from_casebooks[signed.study_id]
    assert 'data-signed="no"' in from_casebooks[changed.study_id]
    assert 'data-sdv-progress="4/' in from_casebooks[cohort[5].study_id]


def test_the_list_reads_two_queries_fewer_with_current_summaries(client, people, cohort):
    login_as(client, people["nurse_a"])
    url = reverse("cohort:patient-list")
    client.get(url)
    with CaptureQueriesContext(connection) as stale:
        client.get(url)
    data_checks.run()
    with CaptureQueriesContext(connection) as current:
        client.get(url)
    assert len(current) == len(stale) - 2  # no casebooks, no verification marks


def change_form_row(patient):
    FollowUp.objects.filter(patient=patient).update(form_status="incomplete")


def add_form_row(patient):
    AdverseEvent.objects.create(
        patient=patient,
        onset_date=dt.date(2024, 1, 1),
        category="infection",
        description="Cold",
        serious="no",
        causality="unlikely",
        outcome="resolved",
        led_to_discontinuation="no",
    )


def remove_form_row(patient):
    AdverseEvent.objects.filter(patient=patient).delete()


def change_patient_row(patient):
    Patient.objects.filter(pk=patient.pk).update(smoking="current")


def confirm_a_flag(patient):
    FlagConfirmation.objects.create(
        patient=patient, form="ustekinumabdose", row_id=1, field="dose_mg", basis="x", confirmed_by=patient.created_by
    )


def verify_a_row(patient):
    Verification.objects.create(
        patient=patient,
        form="followup",
        row_id=FollowUp.objects.get(patient=patient).pk,
        row_version=1,
        verified_by=patient.created_by,
        verified_at=timezone.now(),
    )


def unverify(patient):
    verify_a_row(patient)
    data_checks.run([patient.pk])
    tamper(patient)
    Verification.objects.filter(patient=patient).delete()


@pytest.mark.parametrize(
    "change",
    [change_form_row, add_form_row, remove_form_row, change_patient_row, confirm_a_flag, verify_a_row, unverify],
)
def test_any_change_to_what_a_summary_is_made_of_makes_it_stale_at_once(client, people, change):
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    login_as(client, people["nurse_a"])
    data_checks.run([patient.pk])
    tamper(patient)
    assert complete_shown(client, patient) == "77"  # the stored summary is what the list shows

    change(patient)

    assert not is_current(patient)
    assert complete_shown(client, patient) != "77"  # summed up from the casebook again
    data_checks.run([patient.pk])
    assert is_current(patient)


def test_a_summary_made_before_a_change_is_never_stored_over_it(people):
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    stamps = listing.stamps([patient.pk])
    before = listing.summary(services.patient_record(patient), {})

    remove_form_row(patient)  # committed between the checks' read and their write

    assert listing.store([(patient.pk, stamps[patient.pk], before)]) == 0
    assert not is_current(patient)


def test_a_summary_of_other_code_is_not_used(client, people):
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    login_as(client, people["nurse_a"])
    data_checks.run([patient.pk])
    tamper(patient)
    CasebookSummary.objects.filter(pk=patient.pk).update(rules="an older release")

    assert complete_shown(client, patient) != "77"


@pytest.mark.parametrize("days", [0, 30, 49, 50, 64, 70, 120, 400])
def test_the_stored_visit_plan_gives_the_casebooks_progress_on_any_day(people, days):
    patient = recent(people, 60)
    record = services.patient_record(patient)
    stored = listing.summary(record, {})
    day = TODAY - dt.timedelta(days=60) + dt.timedelta(days=days)

    shown = listing.row(stored, day).progress
    expected = casebook.progress(record, day)

    assert (shown.complete, shown.total, shown.flags, shown.overdue) == (
        expected.complete,
        expected.total,
        expected.flags,
        expected.overdue,
    )
    pick = lambda visit: visit and (visit.visit, visit.state, visit.window_start, visit.window_end)  # noqa: E731
    assert pick(shown.next_visit) == pick(expected.next_visit)
