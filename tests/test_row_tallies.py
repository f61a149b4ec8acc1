"""The monitoring figures' patient and CRF row counts come from appended tallies kept by triggers (migration
0013), not from counting; they must always equal a count of the rows, through every kind of write."""

from __future__ import annotations

import pytest
from django.db import connection

from cohort import monitoring, sdv
from cohort.models import Centre, CrfRowTally, Patient, PriorBiologic
from tests.base import make_patient, make_record, personae

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


def counted() -> dict[str, tuple[int, int]]:
    """(patients, CRF rows) by centre code, counted."""
    with connection.cursor() as cursor:
        cursor.execute(COUNT)
        rows = dict(cursor.fetchall())
    patients = {code: Patient.objects.filter(centre__code=code).count() for code in rows}
    return {code: (patients[code], rows[code]) for code in rows}


def tallied() -> dict[str, tuple[int, int]]:
    """(patients, CRF rows) by centre code, as the monitoring figures read them from the tallies."""
    figures = monitoring.by_centre(Centre.objects.all())
    rows = sdv.rows_verified_by_centre(Centre.objects.all())
    return {code: (figures[code].patients, rows[code][1]) for code in rows if rows[code][1]}


def test_the_tallies_follow_every_write_and_survive_a_fold():
    people = personae()
    a, b = people["centre_a"], people["centre_b"]
    first = make_record(make_patient(a, people["nurse_a"]))
    second = make_record(make_patient(a, people["nurse_a"]))
    other = make_record(make_patient(b, people["nurse_b"]))
    assert tallied() == counted() and counted()[a.code] == (2, 2 * counted()[b.code][1])

    PriorBiologic.objects.filter(patient=first).first().delete()  # a form row removed
    assert tallied() == counted()
    Patient.all_objects.filter(pk=second.pk).update(deleted_at="2026-01-01T00:00:00Z")  # a patient removed
    assert tallied() == counted()
    Patient.all_objects.filter(pk=second.pk).update(deleted_at=None)  # and restored
    assert tallied() == counted()
    Patient.all_objects.filter(pk=other.pk).update(centre=a)  # moved to another centre
    assert tallied() == counted()
    Patient.all_objects.get(pk=first.pk).delete()  # deleted with its rows (the ORM's cascade)
    assert tallied() == counted()

    assert CrfRowTally.objects.count() > 2
    assert monitoring.fold_tallies() == len({a.code, b.code})
    assert tallied() == counted()
