"""The monitoring figures' counts of patients, CRF rows and queries come from appended tallies kept
by triggers (migration 0013), not from counting; they must always equal a count, through every kind
of write."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from cohort import monitoring, sdv
from cohort.models import QUERY_WAITING_FOR_SITE, Centre, CrfRowTally, Patient, PriorBiologic, Query, QueryState
from tests.base import login_as, make_patient, make_record, personae

pytestmark = pytest.mark.django_db(transaction=True)

COUNT = """
SELECT c.code, count(*) FROM (
    SELECT id AS patient_id FROM cohort_patient
    UNION ALL SELECT patient_id FROM cohort_priorbiologic UNION ALL SELECT patient_id FROM cohort_ustekinumabdose
    UNION ALL SELECT patient_id FROM cohort_reinduction UNION ALL SELECT patient_id FROM cohort_assessment
    UNION ALL SELECT patient_id FROM cohort_followup UNION ALL SELECT patient_id FROM cohort_adverseevent
) AS r JOIN cohort_patient p ON p.id = r.patient_id JOIN cohort_centre c ON c.id = p.centre_id
WHERE p.deleted_at IS NULL GROUP BY c.code
"""


def counted() -> dict[str, tuple[int, int, int, int]]:
    """(patients, CRF rows, queries waiting for the site, answered) by centre code, counted."""
    with connection.cursor() as cursor:
        cursor.execute(COUNT)
        rows = dict(cursor.fetchall())

    def queries(code: str, states) -> int:
        return Query.objects.filter(patient__in=Patient.objects.filter(centre__code=code), state__in=states).count()

    return {
        code: (
            Patient.objects.filter(centre__code=code).count(),
            rows[code],
            queries(code, QUERY_WAITING_FOR_SITE),
            queries(code, [QueryState.ANSWERED]),
        )
        for code in rows
    }


def tallied() -> dict[str, tuple[int, int, int, int]]:
    """The same, as the monitoring figures read them from the tallies."""
    figures = monitoring.by_centre(Centre.objects.all())
    rows = sdv.rows_verified_by_centre(Centre.objects.all())
    return {
        code: (figures[code].patients, rows[code][1], figures[code].open_queries, figures[code].answered_queries)
        for code in rows
        if rows[code][1]
    }


def raise_query(patient: Patient, by, state: str = QueryState.OPEN, form: str = "patients") -> Query:
    now = timezone.now()
    return Query.objects.create(patient=patient, form=form, state=state, raised_by=by, raised_at=now, updated_at=now)


def test_the_tallies_follow_every_write_and_survive_a_fold():
    people = personae()
    a, b = people["centre_a"], people["centre_b"]
    first = make_record(make_patient(a, people["nurse_a"]))
    second = make_record(make_patient(a, people["nurse_a"]))
    other = make_record(make_patient(b, people["nurse_b"]))
    assert tallied() == counted() and counted()[a.code][:2] == (2, 2 * counted()[b.code][1])

    coordinator = people["coordinator"]
    asked = [raise_query(second, coordinator), raise_query(second, coordinator), raise_query(other, coordinator)]
    raise_query(first, coordinator, QueryState.ANSWERED)
    assert tallied() == counted() and counted()[a.code][2:] == (2, 1)
    Query.objects.filter(pk=asked[0].pk).update(state=QueryState.ANSWERED)  # answered
    Query.objects.filter(pk=asked[1].pk).update(state=QueryState.CLOSED)  # closed
    assert tallied() == counted() and counted()[a.code][2:] == (0, 2)
    Query.objects.filter(pk=asked[1].pk).update(state=QueryState.REOPENED)  # re-opened
    assert tallied() == counted()

    PriorBiologic.objects.filter(patient=first).first().delete()  # a form row removed
    assert tallied() == counted()
    Patient.all_objects.filter(pk=second.pk).update(deleted_at="2026-01-01T00:00:00Z")  # a patient removed
    assert tallied() == counted()
    Patient.all_objects.filter(pk=second.pk).update(deleted_at=None)  # and restored
    assert tallied() == counted()
    Patient.all_objects.filter(pk=other.pk).update(centre=a)  # moved to another centre
    assert tallied() == counted()
    Query.objects.filter(patient=first).delete()
    assert tallied() == counted()
    Patient.all_objects.get(pk=first.pk).delete()  # deleted with its rows (the ORM's cascade)
    assert tallied() == counted()

    assert CrfRowTally.objects.count() > 2
    assert monitoring.fold_tallies() == len({a.code, b.code})
    assert tallied() == counted()


def shown_total(client: Client, url: str, noun: str) -> int:
    """The total a list page prints under its table ("12 patients", "3 queries")."""
    response = client.get(url)
    assert response.status_code == 200
    found = re.search(rf"(\d+) {noun}", response.content.decode())
    return int(found.group(1)) if found else 0


def test_the_lists_totals_read_from_the_tallies_equal_a_count():
    """The patient list's and the query list's totals (the unfiltered lists count from the tallies)
    say what a count says, through enrolment, a patient's removal and move, and queries answered
    and closed; a search or a filter still counts its own rows."""
    people = personae()
    a, b = people["centre_a"], people["centre_b"]
    nurse, coordinator = login_as(Client(), people["nurse_a"]), login_as(Client(), people["coordinator"])
    patients = [make_patient(a, people["nurse_a"]) for _ in range(3)] + [make_patient(b, people["nurse_b"])]
    asked = [raise_query(patient, people["coordinator"], form="patient") for patient in patients[:2]]
    raise_query(patients[3], people["coordinator"], QueryState.ANSWERED, form="patient")

    def check() -> None:
        mine = Patient.objects.filter(centre=a)
        assert shown_total(nurse, "/patients/", "patient") == mine.count()
        assert shown_total(coordinator, "/patients/", "patient") == Patient.objects.count()
        not_closed = Query.objects.exclude(state=QueryState.CLOSED).filter(patient__in=Patient.objects.all())
        assert shown_total(nurse, "/queries/", "quer") == not_closed.filter(patient__in=mine).count()
        assert shown_total(coordinator, "/queries/", "quer") == not_closed.count()

    check()
    assert shown_total(nurse, "/patients/", "patient") == 3
    Query.objects.filter(pk=asked[0].pk).update(state=QueryState.ANSWERED)
    Query.objects.filter(pk=asked[1].pk).update(state=QueryState.CLOSED)
    check()
    Patient.all_objects.filter(pk=patients[0].pk).update(deleted_at="2026-01-01T00:00:00Z")  # removed
    check()
    Patient.all_objects.filter(pk=patients[3].pk).update(centre=a)  # moved to the nurse's centre
    check()
    monitoring.fold_tallies()
    check()
    assert shown_total(nurse, "/patients/", "patient") == 3
    # A search, a filter and another state are counted: only the unfiltered totals are tallied.
    assert shown_total(nurse, f"/patients/?q={patients[1].study_id}", "patient") == 1
    assert shown_total(nurse, "/queries/?state=closed", "quer") == 1
