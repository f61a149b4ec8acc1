"""The recompute's columns (reports/outcome_columns.py, loaders.load_columns) give the outcome dict
of reports/outcomes.py to the last digit: on varied synthetic cohorts (pure), and on the database
through the worker's own function (services.compute_scope)."""

from __future__ import annotations

import datetime as dt
import json
import random
from io import StringIO

import pytest
from django.core.management import call_command

from cohort.models import Centre, Patient
from cohort.services import centre_create, patient_soft_delete
from reports import outcome_columns
from reports.loaders import load_columns, load_patients
from reports.outcomes import (
    AE_CATEGORIES,
    AdverseEventData,
    AssessmentData,
    FollowUpData,
    PatientData,
    Thresholds,
    compute,
)
from reports.services import compute_scope, scope_outcomes, thresholds
from tests.base import make_patient, make_record
from tests.test_outcomes import COHORT31

T0 = dt.date(2021, 3, 1)


def maybe(rng: random.Random, value, chance: float = 0.15):
    return None if rng.random() < chance else value


def synthetic_assessment(rng: random.Random, visit: str) -> AssessmentData:
    endoscopy = rng.choice([True, False, None])
    return AssessmentData(
        visit=visit,
        not_done=rng.random() < 0.1,
        assessment_date=maybe(rng, T0 + dt.timedelta(days=rng.randint(-5, 400)), 0.05),
        hbi=maybe(rng, rng.randint(0, 12)),
        crp_mg_l=maybe(rng, round(rng.uniform(0, 12), 1), 0.3),
        fcal_ug_g=maybe(rng, round(rng.uniform(10, 400), 1), 0.3),
        endoscopy_done=endoscopy,
        ses_cd=maybe(rng, rng.randint(0, 8), 0.3) if endoscopy else None,
        corticosteroids=rng.choice([True, False, None]),
    )


def synthetic_follow_up(rng: random.Random) -> FollowUpData | None:
    if rng.random() < 0.05:
        return None
    last = T0 + dt.timedelta(days=rng.randint(0, 420))
    if rng.random() < 0.4:
        stopped = maybe(rng, T0 + dt.timedelta(days=rng.randint(0, 420)), 0.1)  # no date: last follow-up
        return FollowUpData("discontinued", last, stopped, rng.choice(["nonresponse", "adverse_event", "other"]))
    return FollowUpData("ongoing", last, None, "")


def synthetic_patient(rng: random.Random, number: int) -> PatientData:
    """Every branch of the definitions: missing forms and values, not-done and repeated visits,
    codes outside the lists, ties in the survival times (a short range of days)."""
    visits = ["week_0", "week_8", "week_20", "week_52"]
    assessments = [synthetic_assessment(rng, visit) for visit in visits if rng.random() < 0.85]
    if rng.random() < 0.1:  # a second row of a visit: the first done one counts
        assessments.append(synthetic_assessment(rng, rng.choice(visits)))
    reinduction_form = rng.random() < 0.9
    return PatientData(
        study_id=f"{rng.choice(['AAA', 'BBB'])}-{number:04d}",
        centre="AAA" if number % 3 else "BBB",
        sex=rng.choice(["F", "M", "X"]),
        birth_year=rng.randint(1940, 2003),
        diagnosis_year=rng.randint(1990, 2020),
        montreal_location=rng.choice(["L1", "L2", "L3", "L4"]),
        upper_gi=rng.choice([True, False, None]),
        montreal_behaviour=rng.choice(["B1", "B2", "B3"]),
        perianal=rng.choice([True, False]),
        prior_resection=rng.choice([True, False, None]),
        smoking=rng.choice(["current", "former", "never", "unknown"]),
        prior_agents=tuple(
            rng.choice(["infliximab", "adalimumab", "golimumab", "certolizumab_pegol", "vedolizumab", "other"])
            for _ in range(rng.randint(0, 4))
        ),
        initial_induction_date=maybe(rng, T0 - dt.timedelta(days=rng.randint(100, 2000))),
        reinduction_date=maybe(rng, T0, 0.05),
        maintenance_doses=rng.randint(0, 12),
        interval_before=maybe(rng, rng.choice(["q4w", "q6w", "q8w", "q12w", "other", "q2w"]), 0.05)
        if reinduction_form
        else None,
        interval_after=rng.choice(["q4w", "q8w", "q12w"]) if reinduction_form else None,
        corticosteroids_at_reinduction=maybe(rng, rng.random() < 0.3) if reinduction_form else None,
        immunomodulator=rng.choice(["none", "thiopurine", "methotrexate", "other", "tacrolimus"])
        if reinduction_form
        else None,
        assessments=tuple(assessments),
        follow_up=synthetic_follow_up(rng),
        adverse_events=tuple(
            AdverseEventData(rng.choice(AE_CATEGORIES), rng.random() < 0.2, rng.random() < 0.1)
            for _ in range(rng.choice([0, 0, 0, 1, 2]))
        ),
    )


def as_json(result: dict) -> str:
    """Exact comparison: every float by its repr, every key in its order."""
    return json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("size", [0, 1, 2, 7, 60, 3000])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_columns_give_the_definitions_results_to_the_last_digit(size, seed):
    rng = random.Random(seed * 10_000 + size)
    patients = [synthetic_patient(rng, number) for number in range(size)]
    for limits in (Thresholds(), Thresholds(hbi_max=5, crp_max=3.0, fcal_max=250.0)):
        expected = compute(patients, thresholds=limits)
        assert as_json(outcome_columns.compute(outcome_columns.columns_of(patients), thresholds=limits)) == as_json(
            expected
        )
    # A centre: the loader reads only its patients.
    centre = [p for p in patients if p.centre == "BBB"]
    assert as_json(outcome_columns.compute(outcome_columns.columns_of(centre), scope="BBB")) == as_json(
        compute(patients, scope="BBB")
    )


def test_an_unknown_adverse_event_category_is_refused_not_miscounted():
    rng = random.Random(5)
    patient = synthetic_patient(rng, 1)._replace(
        reinduction_date=T0,
        follow_up=FollowUpData("ongoing", T0, None, ""),
        adverse_events=(AdverseEventData("sunburn", False, False),),
    )
    with pytest.raises(ValueError):
        outcome_columns.compute(outcome_columns.columns_of([patient]))


# ---------------------------------------------------------------------------------------------
# From the database


@pytest.fixture
def cohort31(db):
    for code in ("AMC", "UMCU", "RUMC"):
        if not Centre.objects.filter(code=code).exists():
            centre_create(code=code, name=f"Synthetic centre {code}")
    call_command("import_cohort", str(COHORT31), stdout=StringIO())


def sorted_rows(columns: dict) -> list[tuple]:
    """The patients' rows of values, in a fixed order (NaN compares equal as text)."""
    names = [name for name, _kind in outcome_columns.FIELDS]
    assert sorted(columns) == sorted(names)
    return sorted(zip(*([json.dumps(value) for value in columns[name].tolist()] for name in names), strict=True))


@pytest.mark.django_db
def test_the_loaded_columns_are_the_loaded_patients_columns(people, cohort31):
    patient_soft_delete(patient=Patient.objects.get(study_id="AMC-001"), by=people["nurse_a"], reason="withdrew")
    centre_ids = dict(Centre.objects.values_list("code", "pk"))
    for scope in ("all", "UMCU", "AMC"):
        assert sorted_rows(load_columns(scope)) == sorted_rows(
            outcome_columns.columns_of(load_patients(scope), centre_ids)
        )


@pytest.mark.django_db
def test_the_recompute_stores_what_the_per_patient_definitions_give(people, cohort31):
    for scope in ("all", "UMCU", "RUMC"):
        assert as_json(compute_scope(scope)[0]) == as_json(scope_outcomes(scope).result)
        assert compute_scope(scope)[0] == compute(load_patients(), scope=scope, thresholds=thresholds())


@pytest.mark.django_db
def test_a_scope_without_patients_gives_the_empty_outcomes(people):
    assert len(load_columns("all")["sex"]) == 0
    assert as_json(compute_scope("all")[0]) == as_json(compute([], thresholds=thresholds()))


@pytest.mark.django_db
def test_the_columns_loader_runs_five_queries_whatever_the_number_of_patients(people, django_assert_num_queries):
    make_record(make_patient(people["centre_a"], people["nurse_a"]))
    with django_assert_num_queries(5):
        assert len(load_columns()["sex"]) == 1
    for _ in range(20):
        make_record(make_patient(people["centre_a"], people["nurse_a"]))
    with django_assert_num_queries(5):
        assert len(load_columns()["sex"]) == 21
    with django_assert_num_queries(5):
        assert len(load_columns(people["centre_a"].code)["sex"]) == 21
    with django_assert_num_queries(5):
        assert len(load_columns(people["centre_b"].code)["sex"]) == 0
