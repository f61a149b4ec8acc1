"""SPEC section 5 outcome definitions (reports/outcomes.py) on small hand-worked cohorts.

Pure computations over dataclasses: no database. Every expected number is worked out by hand in the
comments. t0 (the reinduction dose) is 2020-01-01 for every built patient unless stated; `day=`
arguments are days after t0.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections import defaultdict
from pathlib import Path

import pytest

from reports.outcomes import (
    AE_CATEGORIES,
    ALGORITHM_VERSION,
    Z95,
    AdverseEventData,
    AssessmentData,
    FollowUpData,
    PatientData,
    Thresholds,
    compute,
    visit_expected,
    visits_followed,
    visits_recorded,
)

T0 = dt.date(2020, 1, 1)
COHORT31 = Path(__file__).parent / "data" / "cohort31"


def day(n: int) -> dt.date:
    return T0 + dt.timedelta(days=n)


def visit(name: str, at: int | None, *, hbi=None, crp=None, fcal=None, endoscopy=None, ses=None, steroids=False):
    return AssessmentData(
        visit=name,
        not_done=False,
        assessment_date=None if at is None else day(at),
        hbi=hbi,
        crp_mg_l=crp,
        fcal_ug_g=fcal,
        endoscopy_done=endoscopy,
        ses_cd=ses,
        corticosteroids=steroids,
    )


def not_done(name: str) -> AssessmentData:
    return AssessmentData(name, True, None, None, None, None, None, None, None)


def ongoing(last: int) -> FollowUpData:
    return FollowUpData("ongoing", day(last), None, "")


def stopped(at: int, *, last: int | None = None, reason: str = "loss_of_response") -> FollowUpData:
    return FollowUpData("discontinued", day(last if last is not None else at), day(at), reason)


def patient(study_id: str = "AAA-001", **overrides) -> PatientData:
    values = {
        "centre": study_id.split("-")[0],
        "sex": "F",
        "birth_year": 1980,
        "diagnosis_year": 2010,
        "montreal_location": "L3",
        "upper_gi": False,
        "montreal_behaviour": "B1",
        "perianal": False,
        "prior_resection": False,
        "smoking": "never",
        "prior_agents": ("infliximab", "adalimumab"),
        "initial_induction_date": dt.date(2019, 1, 1),
        "reinduction_date": T0,
        "maintenance_doses": 3,
        "interval_before": "q8w",
        "interval_after": "q4w",
        "corticosteroids_at_reinduction": False,
        "immunomodulator": "none",
        "follow_up": ongoing(400),
    }
    values.update(overrides)
    return PatientData(study_id=study_id, **values)


def numbered(count: int, **overrides) -> list[PatientData]:
    return [patient(f"AAA-{i:03d}", **overrides) for i in range(1, count + 1)]


def nN(result: dict) -> tuple[int, int]:
    return result["n"], result["N"]


def wilson(n: int, total: int) -> tuple[float, float]:
    """Wilson score interval written out (the reference check is in test_statistics.py)."""
    p, z2 = n / total, Z95**2
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = Z95 * math.sqrt(p * (1 - p) / total + z2 / (4 * total**2)) / (1 + z2 / total)
    return centre - half, centre + half


# ---------------------------------------------------------------------------------------------
# Inclusion and scope


def test_it_excludes_patients_without_reinduction_dose_or_follow_up():
    serious = AdverseEventData("skin", serious=True, led_to_discontinuation=True)
    patients = [
        patient("AAA-001"),
        patient("AAA-002", reinduction_date=None),  # no reinduction dose
        patient("AAA-003", follow_up=None),  # no follow_up form
        patient("AAA-004", reinduction_date=None, follow_up=None, adverse_events=(serious,)),
    ]
    result = compute(patients)
    assert result["n_patients"] == 1
    assert result["excluded_incomplete"] == 3
    # The excluded leave every outcome: their AE is not counted, they are in no denominator.
    assert result["adverse_events"]["patients"] == 0
    assert nN(result["baseline"]["sex_female"]) == (1, 1)
    assert result["drug_survival"]["curve"][0]["at_risk"] == 1


def test_it_gives_nulls_not_errors_for_a_scope_without_patients():
    for result in (compute([], scope="all"), compute([patient("BBB-001")], scope="AAA")):
        text = json.dumps(result, allow_nan=False)  # plain JSON, no NaN
        assert result["n_patients"] == 0 and result["excluded_incomplete"] == 0
        assert result["baseline"]["anti_tnf_2plus"] == {"n": 0, "N": 0}
        assert result["baseline"]["interval_initial_to_reinduction_months"] == {
            "median": None,
            "q1": None,
            "q3": None,
            "N": 0,
        }
        for week in ("week_20", "week_52"):
            assert result["drug_survival"][week] == {"estimate": None, "ci_low": None, "ci_high": None, "at_risk": 0}
        assert result["drug_survival"]["curve"] == []
        for week in ("week_8", "week_20", "week_52"):
            for kind in ("observed", "nri", "steroid_free"):
                assert result["clinical_remission"][week][kind] == {"n": 0, "N": 0, "ci_low": None, "ci_high": None}
            assert result["biochemical_remission"][week]["N"] == 0
            assert result["endoscopic_remission"][week]["ci_low"] is None
        assert result["nonresponse"] == {"n": 0, "N": 0, "ci_low": None, "ci_high": None}
        assert result["adverse_events"]["by_category"] == dict.fromkeys(AE_CATEGORIES, 0)
        assert '"scope"' in text


def test_it_restricts_a_centre_scope_to_that_centre():
    patients = [patient("AAA-001"), patient("AAA-002", follow_up=None), patient("BBB-001"), patient("BBB-002")]
    result = compute(patients, scope="AAA")
    assert (result["scope"], result["n_patients"], result["excluded_incomplete"]) == ("AAA", 1, 1)
    assert compute(patients)["n_patients"] == 3
    assert compute(patients)["algorithm_version"] == ALGORITHM_VERSION


def test_it_returns_the_spec_keys_as_plain_json():
    result = compute(numbered(3))
    assert {
        "scope",
        "n_patients",
        "excluded_incomplete",
        "baseline",
        "drug_survival",
        "clinical_remission",
        "biochemical_remission",
        "endoscopic_remission",
        "nonresponse",
        "adverse_events",
    } <= result.keys()
    assert {"anti_tnf_2plus", "vedolizumab", "interval_initial_to_reinduction_months"} <= result["baseline"].keys()
    assert {"week_20", "week_52", "curve"} <= result["drug_survival"].keys()
    assert result["clinical_remission"]["week_8"].keys() >= {"observed", "nri", "steroid_free"}
    assert json.loads(json.dumps(result, allow_nan=False)) == result


# ---------------------------------------------------------------------------------------------
# Baseline and treatment


def test_it_counts_distinct_anti_tnf_agents_and_vedolizumab():
    patients = [
        # infliximab twice (two courses) + adalimumab: 2 distinct agents
        patient("AAA-001", prior_agents=("infliximab", "infliximab", "adalimumab")),
        # infliximab three times: 1 agent
        patient("AAA-002", prior_agents=("infliximab", "infliximab", "infliximab")),
        # no anti-TNF: vedolizumab and 'other' are not anti-TNF
        patient("AAA-003", prior_agents=("vedolizumab", "other")),
        # 4 distinct: certolizumab_pegol and golimumab count too
        patient("AAA-004", prior_agents=("certolizumab_pegol", "golimumab", "infliximab", "adalimumab", "vedolizumab")),
        patient("AAA-005", prior_agents=("golimumab", "adalimumab", "infliximab")),  # 3 distinct
    ]
    baseline = compute(patients)["baseline"]
    assert nN(baseline["anti_tnf_2plus"]) == (3, 5)  # 001, 004, 005
    assert nN(baseline["vedolizumab"]) == (2, 5)  # 003, 004
    assert [baseline[f"prior_anti_tnf_{k}"]["n"] for k in ("0", "1", "2", "3plus")] == [1, 1, 1, 2]
    assert {baseline[f"prior_anti_tnf_{k}"]["N"] for k in ("0", "1", "2", "3plus")} == {5}


def test_it_summarises_the_interval_in_months():
    # Intervals 30.4375, 60.875 and 365.25 days = 1, 2 and 12 months: median 2, Q1 1.5, Q3 7.
    patients = [
        patient("AAA-001", initial_induction_date=dt.date(2019, 12, 1)),  # 31 days
        patient("AAA-002", initial_induction_date=dt.date(2019, 11, 1)),  # 61 days
        patient("AAA-003", initial_induction_date=dt.date(2019, 1, 1)),  # 365 days
        patient("AAA-004", initial_induction_date=None),  # not in N
    ]
    result = compute(patients)["baseline"]["interval_initial_to_reinduction_months"]
    months = [31 / 30.4375, 61 / 30.4375, 365 / 30.4375]
    assert result["N"] == 3
    assert result["median"] == pytest.approx(months[1], abs=1e-12)
    assert result["q1"] == pytest.approx((months[0] + months[1]) / 2, abs=1e-12)  # h = 0.5
    assert result["q3"] == pytest.approx((months[1] + months[2]) / 2, abs=1e-12)  # h = 1.5


def test_it_builds_the_baseline_table():
    patients = [
        patient(
            "AAA-001",
            sex="M",
            birth_year=1990,
            diagnosis_year=2015,
            montreal_location="L1",
            upper_gi=True,
            montreal_behaviour="B2",
            perianal=True,
            prior_resection=True,
            smoking="current",
            corticosteroids_at_reinduction=True,
            immunomodulator="thiopurine",
            assessments=(visit("week_0", -3, hbi=10, crp=20.0, fcal=500.0),),
        ),
        patient(
            "AAA-002",
            birth_year=1970,
            diagnosis_year=2000,
            immunomodulator="methotrexate",
            assessments=(visit("week_0", 0, hbi=6, crp=None, fcal=1000.0),),
        ),
        patient("AAA-003", birth_year=1960, diagnosis_year=2018, smoking="former", immunomodulator=None),
        patient("AAA-004", birth_year=2000, diagnosis_year=2019, assessments=(not_done("week_0"),)),
    ]
    b = compute(patients)["baseline"]
    assert nN(b["sex_female"]) == (3, 4) and nN(b["sex_male"]) == (1, 4)
    # Ages in 2020: 30, 50, 60, 20 -> sorted 20 30 50 60: median 40, Q1 20+0.75*10 = 27.5, Q3 50+0.25*10 = 52.5
    assert (b["age_at_reinduction_years"]["median"], b["age_at_reinduction_years"]["q1"]) == (40.0, 27.5)
    assert b["age_at_reinduction_years"]["q3"] == 52.5
    # Durations: 5, 20, 2, 1 -> 1 2 5 20: median 3.5, Q1 1.75, Q3 8.75
    assert b["disease_duration_years"] == {"median": 3.5, "q1": 1.75, "q3": 8.75, "N": 4}
    assert nN(b["montreal_location_L1"]) == (1, 4) and nN(b["montreal_location_L3"]) == (3, 4)
    assert nN(b["montreal_location_L2"]) == (0, 4)
    assert nN(b["montreal_behaviour_B2"]) == (1, 4) and nN(b["montreal_behaviour_B1"]) == (3, 4)
    assert nN(b["upper_gi"]) == nN(b["perianal"]) == nN(b["prior_resection"]) == (1, 4)
    assert [b[f"smoking_{c}"]["n"] for c in ("current", "former", "never", "unknown")] == [1, 1, 2, 0]
    assert nN(b["corticosteroids_at_reinduction"]) == (1, 4)
    # AAA-003 has no reinduction form value: out of the immunomodulator denominators.
    assert nN(b["immunomodulator_any"]) == (2, 3)
    assert nN(b["immunomodulator_thiopurine"]) == (1, 3) and nN(b["immunomodulator_methotrexate"]) == (1, 3)
    assert nN(b["immunomodulator_other"]) == (0, 3)
    # Week 0: HBI 10, 6 -> median 8, Q1 7, Q3 9; CRP only 20; FCAL 500, 1000 -> 750 (625, 875).
    assert b["week0_hbi"] == {"median": 8.0, "q1": 7.0, "q3": 9.0, "N": 2}
    assert b["week0_crp_mg_l"] == {"median": 20.0, "q1": 20.0, "q3": 20.0, "N": 1}
    assert b["week0_fcal_ug_g"] == {"median": 750.0, "q1": 625.0, "q3": 875.0, "N": 2}


def test_it_builds_the_treatment_table():
    patients = [
        patient("AAA-001", maintenance_doses=2, interval_before="q8w", interval_after="q4w"),
        patient("AAA-002", maintenance_doses=5, interval_before="q12w", interval_after="q4w"),
        patient("AAA-003", maintenance_doses=9, interval_before=None, interval_after=None),
    ]
    t = compute(patients)["treatment"]
    assert t["maintenance_doses"] == {"median": 5.0, "q1": 3.5, "q3": 7.0, "N": 3}
    assert nN(t["interval_before_q8w"]) == (1, 2) and nN(t["interval_before_q12w"]) == (1, 2)
    assert nN(t["interval_before_q4w"]) == (0, 2)
    assert nN(t["interval_after_q4w"]) == (2, 2) and nN(t["interval_after_other"]) == (0, 2)


# ---------------------------------------------------------------------------------------------
# Drug survival


def test_it_estimates_drug_survival_with_ties_and_censoring_on_an_event_day():
    patients = [
        patient("AAA-001", follow_up=stopped(10, last=50)),  # event day 10 (discontinuation date, not last FU)
        patient("AAA-002", follow_up=stopped(10)),  # event day 10 (tied)
        patient("AAA-003", follow_up=ongoing(10)),  # censored day 10: at risk at 10
        patient("AAA-004", follow_up=stopped(150, reason="nonresponse")),  # event day 150
        patient("AAA-005", follow_up=ongoing(400)),  # censored day 400
    ]
    survival = compute(patients)["drug_survival"]
    # Day 10: 5 at risk, 2 events -> S = 3/5; Greenwood 2/(5*3). Day 150: 2 at risk, 1 event -> S = 0.3;
    # Greenwood 2/15 + 1/(2*1). Day 400: censoring only.
    greenwood_10, greenwood_150 = 2 / 15, 2 / 15 + 1 / 2
    se_10 = math.sqrt(greenwood_10) / abs(math.log(0.6))
    se_150 = math.sqrt(greenwood_150) / abs(math.log(0.3))
    curve = survival["curve"]
    assert [(s["day"], s["at_risk"], s["events"], s["censored"]) for s in curve] == [
        (0, 5, 0, 0),  # the added start of the curve
        (10, 5, 2, 1),
        (150, 2, 1, 0),
        (400, 1, 0, 1),
    ]
    assert curve[0]["estimate"] == 1.0 and curve[0]["ci_low"] is None and curve[0]["ci_high"] is None
    assert curve[1]["estimate"] == pytest.approx(0.6, abs=1e-15)
    assert curve[1]["ci_low"] == pytest.approx(0.6 ** math.exp(Z95 * se_10), abs=1e-12)
    assert curve[1]["ci_high"] == pytest.approx(0.6 ** math.exp(-Z95 * se_10), abs=1e-12)
    assert curve[2]["estimate"] == curve[3]["estimate"] == pytest.approx(0.3, abs=1e-15)
    # Week 20 (day 140): S = 0.6, at risk = times >= 140: 150 and 400 -> 2.
    assert survival["week_20"]["estimate"] == pytest.approx(0.6, abs=1e-15)
    assert survival["week_20"]["at_risk"] == 2
    assert survival["week_20"]["ci_low"] == curve[1]["ci_low"]
    # Week 52 (day 364): S = 0.3 with the day-150 CI, at risk 1 (day 400).
    assert survival["week_52"]["estimate"] == pytest.approx(0.3, abs=1e-15)
    assert survival["week_52"]["at_risk"] == 1
    assert survival["week_52"]["ci_low"] == pytest.approx(0.3 ** math.exp(Z95 * se_150), abs=1e-12)
    assert survival["week_52"]["ci_high"] == pytest.approx(0.3 ** math.exp(-Z95 * se_150), abs=1e-12)
    assert survival["week_52"]["ci_low"] < 0.3 < survival["week_52"]["ci_high"]
    assert (survival["n"], survival["events"]) == (5, 3)


def test_it_counts_an_event_on_the_nominal_day_in_s_and_in_the_at_risk_number():
    # Right-continuous: a discontinuation on day 140 is in S(140), and that patient is at risk on day 140.
    patients = [patient("AAA-001", follow_up=stopped(140)), *numbered(3, follow_up=ongoing(500))[1:]]
    week_20 = compute(patients)["drug_survival"]["week_20"]
    assert week_20["estimate"] == pytest.approx(2 / 3, abs=1e-15)
    assert week_20["at_risk"] == 3


def test_it_starts_the_curve_with_a_day_0_event_when_there_is_one():
    patients = [patient("AAA-001", follow_up=stopped(0)), patient("AAA-002", follow_up=ongoing(200))]
    survival = compute(patients)["drug_survival"]
    assert [(s["day"], s["events"], s["estimate"]) for s in survival["curve"]] == [(0, 1, 0.5), (200, 0, 0.5)]
    assert survival["week_20"]["estimate"] == 0.5 and survival["week_20"]["at_risk"] == 1


def test_it_gives_null_bounds_while_s_is_one_and_after_it_reaches_zero():
    nobody_stopped = compute(numbered(2, follow_up=ongoing(400)))["drug_survival"]
    assert nobody_stopped["week_20"] == {"estimate": 1.0, "ci_low": None, "ci_high": None, "at_risk": 2}
    everybody_stopped = compute(numbered(2, follow_up=stopped(100)))["drug_survival"]
    # S reaches 0 on day 100; afterwards it is 0 (known) with undefined bounds and nobody at risk.
    assert everybody_stopped["week_20"] == {"estimate": 0.0, "ci_low": None, "ci_high": None, "at_risk": 0}
    assert everybody_stopped["curve"][-1]["ci_low"] is None


def test_it_does_not_extrapolate_s_past_the_last_censoring():
    # Everyone censored by day 300: S(364) is unknown (null), S(140) = 1/2 is known.
    patients = [patient("AAA-001", follow_up=stopped(50)), patient("AAA-002", follow_up=ongoing(300))]
    survival = compute(patients)["drug_survival"]
    assert survival["week_20"]["estimate"] == 0.5 and survival["week_20"]["at_risk"] == 1
    assert survival["week_52"] == {"estimate": None, "ci_low": None, "ci_high": None, "at_risk": 0}


# ---------------------------------------------------------------------------------------------
# Clinical remission


def test_it_counts_observed_clinical_remission_on_ustekinumab_at_the_visit():
    patients = [
        patient("AAA-001", assessments=(visit("week_8", 56, hbi=4),)),  # exactly at the threshold: remission
        patient("AAA-002", assessments=(visit("week_8", 55, hbi=5),)),  # not in remission
        patient("AAA-003", assessments=(visit("week_8", 56, hbi=None),)),  # no HBI: not in N
        patient("AAA-004", assessments=(not_done("week_8"),)),  # visit not done: not in N
        # discontinued on the visit date: not on ustekinumab at that visit
        patient("AAA-005", assessments=(visit("week_8", 60, hbi=1),), follow_up=stopped(60)),
        # discontinued the day after the visit: on ustekinumab at the visit
        patient("AAA-006", assessments=(visit("week_8", 60, hbi=2),), follow_up=stopped(61)),
        # a visit after the discontinuation: not counted
        patient("AAA-007", assessments=(visit("week_8", 58, hbi=0),), follow_up=stopped(30, last=90)),
        patient("AAA-008"),  # no week-8 row at all
    ]
    observed = compute(patients)["clinical_remission"]["week_8"]["observed"]
    # N: 001, 002, 006 -> 3; n: 001 (HBI 4), 006 (HBI 2) -> 2
    assert nN(observed) == (2, 3)
    assert (observed["ci_low"], observed["ci_high"]) == pytest.approx(wilson(2, 3), abs=1e-12)


def test_it_applies_the_hbi_threshold_setting():
    patients = [patient("AAA-001", assessments=(visit("week_20", 140, hbi=5),))]
    assert compute(patients)["clinical_remission"]["week_20"]["observed"]["n"] == 0
    assert compute(patients, thresholds=Thresholds(hbi_max=5))["clinical_remission"]["week_20"]["observed"]["n"] == 1


def test_it_uses_the_nri_denominator_rule():
    patients = [
        patient("AAA-001", assessments=(visit("week_8", 56, hbi=2),), follow_up=ongoing(56)),  # followed to day 56
        patient("AAA-002", follow_up=ongoing(55)),  # followed to day 55 only: not in the week-8 N
        patient("AAA-003", follow_up=stopped(10, last=20)),  # discontinued early: in every N
        patient("AAA-004", assessments=(visit("week_8", 50, hbi=9),), follow_up=ongoing(139)),
        patient("AAA-005", assessments=(visit("week_8", 57, hbi=None),), follow_up=ongoing(364)),  # missing HBI
    ]
    remission = compute(patients)["clinical_remission"]
    # week 8 (day 56): N = 001, 003, 004, 005 = 4; n = the observed numerator: 001 -> 1
    assert nN(remission["week_8"]["nri"]) == (1, 4)
    assert nN(remission["week_8"]["observed"]) == (1, 2)  # 001, 004
    # week 20 (day 140): N = 003, 005 = 2 (004 followed to day 139 only); n = 0
    assert nN(remission["week_20"]["nri"]) == (0, 2)
    # week 52 (day 364): N = 003, 005
    assert nN(remission["week_52"]["nri"]) == (0, 2)
    assert remission["week_8"]["nri"]["ci_low"] == pytest.approx(wilson(1, 4)[0], abs=1e-12)


def test_it_takes_the_nri_numerator_from_observed_as_the_spec_defines_it():
    # SPEC 5 to the letter: n = the observed numerator even for a patient seen at week 52 (day 330,
    # in the window) whose last follow-up (day 340) is before the nominal day 364, so is not in N.
    # The proportion then has n > N and no Wilson interval.
    patients = [patient("AAA-001", assessments=(visit("week_52", 330, hbi=1),), follow_up=ongoing(340))]
    nri = compute(patients)["clinical_remission"]["week_52"]["nri"]
    assert nri == {"n": 1, "N": 0, "ci_low": None, "ci_high": None}


def test_it_counts_steroid_free_remission():
    patients = [
        patient("AAA-001", assessments=(visit("week_52", 364, hbi=3, steroids=False),)),  # steroid-free remission
        patient("AAA-002", assessments=(visit("week_52", 364, hbi=3, steroids=True),)),  # remission on steroids
        patient("AAA-003", assessments=(visit("week_52", 364, hbi=3, steroids=None),)),  # unknown: not steroid-free
        patient("AAA-004", assessments=(visit("week_52", 364, hbi=8, steroids=False),)),  # no remission
    ]
    remission = compute(patients)["clinical_remission"]["week_52"]
    assert nN(remission["observed"]) == (3, 4)
    assert nN(remission["steroid_free"]) == (1, 4)


# ---------------------------------------------------------------------------------------------
# Biochemical and endoscopic remission, nonresponse, adverse events


def test_it_counts_biochemical_remission_with_the_values_present():
    patients = [
        patient("AAA-001", assessments=(visit("week_20", 140, crp=5.0),)),  # CRP only, at the threshold: yes
        patient("AAA-002", assessments=(visit("week_20", 140, fcal=200.0),)),  # FCAL only, at the threshold: yes
        patient("AAA-003", assessments=(visit("week_20", 140, fcal=201.0),)),  # FCAL only, above: no
        patient("AAA-004", assessments=(visit("week_20", 140, crp=3.0, fcal=250.0),)),  # one above: no
        patient("AAA-005", assessments=(visit("week_20", 140, crp=5.1, fcal=100.0),)),  # one above: no
        patient("AAA-006", assessments=(visit("week_20", 140, crp=1.0, fcal=50.0),)),  # both within: yes
        patient("AAA-007", assessments=(visit("week_20", 140, hbi=2),)),  # neither: not in N
        # off ustekinumab at the visit: not in N
        patient("AAA-008", assessments=(visit("week_20", 140, crp=1.0),), follow_up=stopped(100, last=200)),
    ]
    result = compute(patients)["biochemical_remission"]
    assert nN(result["week_20"]) == (3, 6)
    assert nN(result["week_8"]) == (0, 0) and result["week_8"]["ci_low"] is None
    strict = compute(patients, thresholds=Thresholds(crp_max=4.0, fcal_max=250.0))["biochemical_remission"]
    assert nN(strict["week_20"]) == (4, 6)  # 002, 003, 004, 006


def test_it_counts_endoscopic_remission_with_endoscopy_and_ses_cd():
    patients = [
        patient("AAA-001", assessments=(visit("week_52", 364, endoscopy=True, ses=2),)),  # at the threshold: yes
        patient("AAA-002", assessments=(visit("week_52", 364, endoscopy=True, ses=3),)),  # no
        patient("AAA-003", assessments=(visit("week_52", 364, endoscopy=True, ses=None),)),  # no SES-CD: not in N
        patient("AAA-004", assessments=(visit("week_52", 364, endoscopy=False),)),  # not in N
        patient("AAA-005", assessments=(visit("week_52", 364, endoscopy=None, ses=0),)),  # not recorded: not in N
        patient(
            "AAA-006",
            assessments=(visit("week_52", 364, endoscopy=True, ses=0),),
            follow_up=stopped(364, reason="surgery"),
        ),  # discontinued on the visit date: not in N
    ]
    assert nN(compute(patients)["endoscopic_remission"]["week_52"]) == (1, 2)


def test_it_counts_nonresponse_over_all_included_patients():
    patients = [
        patient("AAA-001", follow_up=stopped(50, reason="nonresponse")),
        patient("AAA-002", follow_up=stopped(80, reason="loss_of_response")),
        patient("AAA-003"),
        patient("AAA-004"),
        patient("AAA-005", follow_up=None),  # excluded
    ]
    nonresponse = compute(patients)["nonresponse"]
    assert nN(nonresponse) == (1, 4)
    assert (nonresponse["ci_low"], nonresponse["ci_high"]) == pytest.approx(wilson(1, 4), abs=1e-12)


def test_it_counts_adverse_events():
    patients = [
        patient(
            "AAA-001",
            adverse_events=(
                AdverseEventData("infection", serious=True, led_to_discontinuation=True),
                AdverseEventData("infection", serious=False, led_to_discontinuation=False),
                AdverseEventData("skin", serious=False, led_to_discontinuation=False),
            ),
        ),
        patient("AAA-002", adverse_events=(AdverseEventData("headache", serious=True, led_to_discontinuation=False),)),
        patient("AAA-003"),
    ]
    events = compute(patients)["adverse_events"]
    assert (events["patients"], events["events"], events["serious"], events["led_to_discontinuation"]) == (2, 4, 2, 1)
    assert events["by_category"] == {**dict.fromkeys(AE_CATEGORIES, 0), "infection": 2, "skin": 1, "headache": 1}
    assert list(events["by_category"]) == list(AE_CATEGORIES)


# ---------------------------------------------------------------------------------------------
# The 31 published patients (SPEC section 1), from the CSV files, without the database


def load_cohort_csv(directory: Path) -> list[PatientData]:
    """The import-format files as PatientData (hbi as Assessment.hbi_total: the component sum when all five)."""

    def rows(form: str) -> list[dict]:
        with open(directory / f"{form}.csv", newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def date(value: str) -> dt.date | None:
        return dt.date.fromisoformat(value) if value else None

    def number(value: str, kind=float):
        return kind(value) if value else None

    def yesno(value: str) -> bool | None:
        return None if value == "" else value == "yes"

    forms: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for form in ("prior_biologics", "ustekinumab_doses", "reinduction", "assessments", "follow_up", "adverse_events"):
        for row in rows(form):
            forms[row["study_id"]][form].append(row)

    patients = []
    for row in rows("patients"):
        own = forms[row["study_id"]]
        doses = own["ustekinumab_doses"]
        reinduction = own["reinduction"][0] if own["reinduction"] else {}
        follow_up = own["follow_up"][0] if own["follow_up"] else None
        assessments = []
        for a in own["assessments"]:
            parts = [number(a[f"hbi_{k}"], int) for k in ("wellbeing", "pain", "stools", "mass", "complications")]
            assessments.append(
                AssessmentData(
                    visit=a["visit"],
                    not_done=a["not_done"] == "yes",
                    assessment_date=date(a["assessment_date"]),
                    hbi=sum(parts) if None not in parts else number(a["hbi"], int),
                    crp_mg_l=number(a["crp_mg_l"]),
                    fcal_ug_g=number(a["fcal_ug_g"]),
                    endoscopy_done=yesno(a["endoscopy_done"]),
                    ses_cd=number(a["ses_cd"], int),
                    corticosteroids=yesno(a["corticosteroids"]),
                )
            )
        patients.append(
            PatientData(
                study_id=row["study_id"],
                centre=row["centre"],
                sex=row["sex"],
                birth_year=int(row["birth_year"]),
                diagnosis_year=int(row["diagnosis_year"]),
                montreal_location=row["montreal_location"],
                upper_gi=row["upper_gi"] == "yes",
                montreal_behaviour=row["montreal_behaviour"],
                perianal=row["perianal"] == "yes",
                prior_resection=row["prior_resection"] == "yes",
                smoking=row["smoking"],
                prior_agents=tuple(b["agent"] for b in own["prior_biologics"]),
                initial_induction_date=next(
                    (date(d["dose_date"]) for d in doses if d["phase"] == "initial_induction"), None
                ),
                reinduction_date=next((date(d["dose_date"]) for d in doses if d["phase"] == "reinduction"), None),
                maintenance_doses=sum(1 for d in doses if d["phase"] == "maintenance"),
                interval_before=reinduction.get("interval_before"),
                interval_after=reinduction.get("interval_after"),
                corticosteroids_at_reinduction=yesno(reinduction.get("corticosteroids", "")),
                immunomodulator=reinduction.get("immunomodulator"),
                assessments=tuple(assessments),
                follow_up=None
                if follow_up is None
                else FollowUpData(
                    status=follow_up["status"],
                    last_follow_up_date=date(follow_up["last_follow_up_date"]),
                    discontinuation_date=date(follow_up["discontinuation_date"]),
                    discontinuation_reason=follow_up["discontinuation_reason"],
                ),
                adverse_events=tuple(
                    AdverseEventData(e["category"], e["serious"] == "yes", e["led_to_discontinuation"] == "yes")
                    for e in own["adverse_events"]
                ),
            )
        )
    return patients


def test_it_reproduces_the_published_figures_of_the_31_patients():
    result = compute(load_cohort_csv(COHORT31))
    assert (result["n_patients"], result["excluded_incomplete"]) == (31, 0)
    baseline = result["baseline"]
    assert nN(baseline["anti_tnf_2plus"]) == (24, 31)  # 77%
    assert nN(baseline["vedolizumab"]) == (20, 31)  # 65%
    interval = baseline["interval_initial_to_reinduction_months"]  # 11.1 (IQR 6.9-19.5)
    assert interval["N"] == 31
    assert interval["median"] == pytest.approx(11.1, abs=0.05)
    assert interval["q1"] == pytest.approx(6.9, abs=0.05) and interval["q3"] == pytest.approx(19.5, abs=0.05)
    survival = result["drug_survival"]
    assert survival["week_20"]["estimate"] == pytest.approx(23 / 31, abs=1e-12)  # 74%: 8 stops by day 126
    assert survival["week_52"]["estimate"] == pytest.approx(23 / 31 * 22 / 23, abs=1e-12)  # 71%: one more at 250
    assert (survival["week_20"]["at_risk"], survival["week_52"]["at_risk"]) == (23, 22)
    assert survival["week_20"]["ci_low"] < survival["week_20"]["estimate"] < survival["week_20"]["ci_high"]
    remission = result["clinical_remission"]
    assert nN(remission["week_8"]["observed"]) == (10, 27)  # 37%
    assert nN(remission["week_20"]["observed"]) == (13, 23)  # 56%
    assert nN(remission["week_52"]["observed"]) == (9, 20)  # 45%
    assert nN(result["nonresponse"]) == (5, 31)  # 16%
    assert result["adverse_events"]["patients"] == 4
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_the_completeness_facts_of_a_patient_are_those_of_each_visit():
    # visits_followed (the completeness table's one call per patient) agrees with visits_recorded
    # and visit_expected: followed to its nominal day, stopped before it, on the day itself, or
    # recorded although the follow-up ended earlier.
    cases = [
        patient(follow_up=ongoing(400)),
        patient(follow_up=stopped(100), assessments=(visit("week_0", 0), visit("week_8", 56))),
        patient(follow_up=ongoing(140), assessments=(visit("week_20", 150), not_done("week_8"))),
        patient(follow_up=stopped(30, last=200), assessments=(visit("week_52", 364),)),
    ]
    for case in cases:
        done = visits_recorded(case)
        expected = tuple(
            (name in done, visit_expected(case, name, recorded=name in done))
            for name in ("week_0", "week_8", "week_20", "week_52")
        )
        assert visits_followed(case) == expected
    assert visits_followed(cases[1]) == ((True, True), (True, True), (False, False), (False, False))
    assert visits_followed(cases[2])[2] == (True, True)  # on day 140 exactly, and recorded
