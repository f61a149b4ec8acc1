"""Study IDs are assigned per centre, in order, without races (two enrolments at once never get
the same number)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from cohort.models import Patient
from cohort.services import patient_enrol
from tests.base import PATIENT_DATA, personae


@pytest.mark.django_db
def test_study_ids_count_up_per_centre_and_skip_imported_numbers():
    people = personae()
    first = patient_enrol(centre=people["centre_a"], by=people["nurse_a"], **PATIENT_DATA)
    Patient.objects.create(study_id="AMC-041", centre=people["centre_a"], **PATIENT_DATA)
    after_import = patient_enrol(centre=people["centre_a"], by=people["nurse_a"], **PATIENT_DATA)
    other_centre = patient_enrol(centre=people["centre_b"], by=people["nurse_b"], **PATIENT_DATA)
    assert [first.study_id, after_import.study_id, other_centre.study_id] == [
        "AMC-001",
        "AMC-042",
        "UMCU-001",
    ]


@pytest.mark.django_db(transaction=True)
def test_concurrent_enrolments_get_distinct_study_ids():
    people = personae()
    enrolments = 8
    barrier = threading.Barrier(enrolments)
    results: list[str] = []
    failures: list[BaseException] = []

    def enrol():
        try:
            barrier.wait()
            patient = patient_enrol(centre=people["centre_a"], by=people["nurse_a"], **PATIENT_DATA)
            results.append(patient.study_id)
        except BaseException as error:  # reported below, with the thread's own exception
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=enrol) for _ in range(enrolments)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert sorted(results) == [f"AMC-{n:03d}" for n in range(1, enrolments + 1)]
    assert Patient.objects.count() == enrolments
