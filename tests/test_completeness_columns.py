"""The cohort report's per-centre enrolment and visit counts over the outcome columns
(completeness.patient_counts) are the per-patient counts with reports/outcomes.py's definitions
(completeness.patient_counts_of): on varied synthetic cohorts, and on the database's columns."""

from __future__ import annotations

import random

import pytest

from cohort.models import Centre, Patient
from cohort.services import patient_soft_delete
from reports import completeness, outcome_columns
from reports.loaders import load_columns, load_patients
from tests.test_outcome_columns import cohort31, synthetic_patient  # noqa: F401 (a fixture)


def as_dicts(counts) -> list[dict]:
    """The counters without their zero entries (a missing key counts 0 in the table)."""
    return [{key: n for key, n in counter.items() if n} for counter in counts]


@pytest.mark.parametrize("size", [0, 1, 2, 7, 60, 3000])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_column_counts_are_the_per_patient_counts(size, seed):
    rng = random.Random(seed * 10_000 + size)
    patients = [synthetic_patient(rng, number) for number in range(size)]
    codes = {1: "AAA", 2: "BBB"}
    columns = outcome_columns.columns_of(patients, {code: key for key, code in codes.items()})
    expected = completeness.patient_counts_of(patients)
    assert as_dicts(completeness.patient_counts(columns, codes)) == as_dicts(expected)
    if size >= 60:  # the synthetic cohort reaches every branch: counts of each kind are not all zero
        assert all(sum(counter.values()) for counter in expected)


@pytest.mark.django_db
def test_the_loaded_columns_count_as_the_loaded_patients(people, cohort31):  # noqa: F811
    patient_soft_delete(patient=Patient.objects.get(study_id="AMC-001"), by=people["nurse_a"], reason="withdrew")
    codes = dict(Centre.objects.values_list("pk", "code"))
    for scope in ("all", "UMCU", "AMC"):
        counts = completeness.patient_counts(load_columns(scope), codes)
        assert as_dicts(counts) == as_dicts(completeness.patient_counts_of(load_patients(scope)))
