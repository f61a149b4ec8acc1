"""The loader reads the study data in a constant number of queries and gives the pure computation
exactly what an independent reading of the same files gives."""

from __future__ import annotations

import gc
from io import StringIO

import pytest
from django.core.management import call_command

from cohort.models import Centre, Patient
from cohort.services import centre_create, patient_soft_delete
from reports.loaders import iter_records, load_patients, load_records
from reports.outcomes import compute
from tests.base import make_patient, make_record
from tests.test_outcomes import COHORT31, load_cohort_csv

pytestmark = pytest.mark.django_db


@pytest.fixture
def cohort31():
    for code in ("AMC", "UMCU", "RUMC"):
        if not Centre.objects.filter(code=code).exists():
            centre_create(code=code, name=f"Synthetic centre {code}")
    call_command("import_cohort", str(COHORT31), stdout=StringIO())


def test_the_loaded_cohort_equals_an_independent_reading_of_the_files(cohort31):
    assert compute(load_patients()) == compute(load_cohort_csv(COHORT31))


def test_a_centre_scope_loads_only_that_centre(cohort31):
    patients = load_patients("UMCU")
    assert {p.centre for p in patients} == {"UMCU"} and len(patients) == 10
    assert (
        compute(patients, scope="UMCU")["n_patients"] == compute(load_cohort_csv(COHORT31), scope="UMCU")["n_patients"]
    )


def test_deleted_patients_are_left_out(people, cohort31):
    patient = Patient.objects.get(study_id="AMC-001")
    patient_soft_delete(patient=patient, by=people["nurse_a"], reason="withdrew consent")
    assert "AMC-001" not in {p.study_id for p in load_patients()}
    assert compute(load_patients())["n_patients"] == 30


def test_the_loader_runs_seven_queries_whatever_the_number_of_patients(people, django_assert_num_queries):
    make_record(make_patient(people["centre_a"], people["nurse_a"]))
    with django_assert_num_queries(7):
        assert len(load_patients()) == 1
    for _ in range(20):
        make_record(make_patient(people["centre_a"], people["nurse_a"]))
    with django_assert_num_queries(7):
        assert len(load_patients()) == 21
    with django_assert_num_queries(7):
        assert len(load_patients("AMC")) == 21


def test_a_queryset_loads_as_its_scope_does(people, cohort31, django_assert_num_queries):
    """Exports read the user's queryset, the recompute a scope: one loader, the same data."""
    umcu = Patient.objects.filter(centre__code="UMCU")
    with django_assert_num_queries(7):
        loaded = load_patients(patients=umcu)
    assert loaded == load_patients("UMCU") and len(loaded) == 10
    with django_assert_num_queries(7):
        records = load_records(Patient.objects.all())
    assert [record.data for record in records] == load_patients()
    first = records[0]
    assert first.patient["consent"] == "yes" and "study_id" not in first.patient
    assert first.assessments["week_0"]["not_done"] in ("yes", "no")
    with django_assert_num_queries(0):
        assert load_patients(patients=Patient.objects.none()) == [] and load_records(Patient.objects.none()) == []


def test_the_export_reads_in_chunks_the_rows_of_one_reading(people, cohort31, django_assert_num_queries):
    """iter_records reads a chunk ahead on a second thread, over this connection (so inside the
    test's transaction): the same records in the same order as one reading, 7 queries a chunk (a
    full last chunk costs one more, empty, read), the cycle collector back on when done or left."""
    whole = load_records(Patient.objects.all())
    assert len(whole) == 31
    for chunk, reads in ((7, 5), (31, 2), (32, 1), (1000, 1)):
        with django_assert_num_queries(7 * reads):
            assert list(iter_records(Patient.objects.all(), chunk=chunk)) == whole
        assert gc.isenabled()
    umcu = Patient.objects.filter(centre__code="UMCU")
    assert list(iter_records(umcu, chunk=3)) == load_records(umcu)
    left = iter_records(Patient.objects.all(), chunk=4)
    assert next(left) == whole[0] and not gc.isenabled()
    left.close()
    assert gc.isenabled()
    with django_assert_num_queries(0):
        assert list(iter_records(Patient.objects.none())) == []
