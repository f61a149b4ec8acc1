"""The study's outcomes (SPEC section 5, binding): pure functions over plain data, no ORM.

`compute(patients, scope=...)` returns the SPEC's outcome dict. The loader (reports/loaders.py)
turns the database into these dataclasses; the `outcomes` command, the dashboard and the PDF call
this function. Standard library only; the statistics are checked against numpy, statsmodels and
lifelines in tests/test_statistics.py. The recompute a worker stores uses the same definitions
over columns (reports/outcome_columns.py: numpy, for 100,000 patients in well under a second), held
to this module's results digit for digit by tests/test_outcome_columns.py.

Past 500 lines on purpose: SPEC section 5 is binding, and keeping every definition and the small
statistics they use in one module is what lets the export and the tables share them (visit_outcomes).

Shapes: a proportion is ``{"n", "N"}`` (remission-type outcomes add the 95% Wilson ``ci_low``,
``ci_high``; null when N = 0); a distribution is ``{"median", "q1", "q3", "N"}`` (R type 7, numpy's
default; null median/q1/q3 when N = 0). Estimates are unrounded floats; everything is plain JSON.

Keys of the result (the SPEC's, plus the documented extras):

- ``scope``, ``n_patients`` (included; the baseline table's "n"), ``excluded_incomplete`` (no
  reinduction dose or no follow_up form), ``algorithm_version``.
- ``baseline`` (denominator N = included patients, except where noted):
  ``sex_female``, ``sex_male``;
  ``age_at_reinduction_years`` (t0 year - birth_year), ``disease_duration_years`` (t0 year -
  diagnosis_year);
  ``montreal_location_L1`` / ``_L2`` / ``_L3``, ``upper_gi``, ``montreal_behaviour_B1`` / ``_B2`` /
  ``_B3``, ``perianal``, ``prior_resection``;
  ``smoking_current`` / ``_former`` / ``_never`` / ``_unknown``;
  ``prior_anti_tnf_0`` / ``_1`` / ``_2`` / ``_3plus`` (distinct anti-TNF agents), ``anti_tnf_2plus``,
  ``vedolizumab``;
  ``interval_initial_to_reinduction_months`` (patients with both dose dates);
  ``corticosteroids_at_reinduction``, ``immunomodulator_any`` (any code but 'none'),
  ``immunomodulator_thiopurine`` / ``_methotrexate`` / ``_other`` (N = patients whose reinduction
  form gives the value);
  ``week0_hbi``, ``week0_crp_mg_l``, ``week0_fcal_ug_g`` (done week-0 assessments with the value).
- ``treatment``: ``interval_initial_to_reinduction_months`` (as in baseline), ``maintenance_doses``
  (per patient), ``interval_before_<code>`` and ``interval_after_<code>`` for q4w, q6w, q8w, q12w,
  other (N = patients with a reinduction form).
- ``drug_survival``: ``n``, ``events``, ``week_20`` / ``week_52`` {estimate, ci_low, ci_high,
  at_risk}, ``curve``. The curve has one step per distinct time (event or censoring) in ascending
  order and always starts at day 0: when nobody has time 0, a day-0 step {estimate 1.0, null CI,
  at_risk = n, events 0, censored 0} is put first. S(day) beyond the last observed time is null
  when the curve ended in censoring (S unknown there), 0.0 when it ended at 0.
- ``clinical_remission`` / ``biochemical_remission`` / ``endoscopic_remission`` per ``week_8`` /
  ``week_20`` / ``week_52``; ``nonresponse``; ``adverse_events`` (``by_category`` lists every code
  of the dictionary, 0 when absent, so the table is stable; an unknown code present is added).

Data rules beyond the SPEC text: a visit marked not_done counts as no assessment; when the study has
several rows for one visit (the database forbids it) the first is used; corticosteroids unknown
(None) at a visit is not steroid-free; a dated visit is needed to be "on ustekinumab" for a patient
who discontinued; a discontinued follow-up without a discontinuation_date (refused by validation)
is treated as discontinued at last_follow_up_date. The NRI numerator is the observed numerator as
the SPEC says, so a patient seen at the visit but followed up less than the nominal day is counted in
n and not in N (then n can exceed N; the Wilson interval is null when n > N).
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

# Goes into every snapshot and PDF footer; bump it when a definition or a calculation changes.
ALGORITHM_VERSION = "1.0.0"

# Two-sided 95%: the exact normal quantile, as R, statsmodels and lifelines use.
Z95 = NormalDist().inv_cdf(0.975)

DAYS_PER_MONTH = 30.4375
# SPEC section 3: nominal study day of each follow-up visit.
NOMINAL_DAY = {"week_8": 56, "week_20": 140, "week_52": 364}
FOLLOW_UP_VISITS = ("week_8", "week_20", "week_52")
ANTI_TNF_AGENTS = frozenset({"infliximab", "adalimumab", "certolizumab_pegol", "golimumab"})
AE_CATEGORIES = (
    "infection",
    "infusion_reaction",
    "injection_site_reaction",
    "skin",
    "arthralgia",
    "headache",
    "malignancy",
    "other",
)
INTERVAL_CODES = ("q4w", "q6w", "q8w", "q12w", "other")
SMOKING_CODES = ("current", "former", "never", "unknown")
IMMUNOMODULATOR_TYPES = ("thiopurine", "methotrexate", "other")
# SPEC 5 'nonresponse': the follow-up's discontinuation reason.
NONRESPONSE = "nonresponse"


@dataclass(frozen=True)
class Thresholds:
    """Study settings (SPEC section 5)."""

    hbi_max: int = 4
    crp_max: float = 5.0
    fcal_max: float = 200.0


class AssessmentData(NamedTuple):
    visit: str  # week_0, week_8, week_20, week_52
    not_done: bool
    assessment_date: dt.date | None
    hbi: int | None  # the HBI total (Assessment.hbi_total): the component sum, or the entered total
    crp_mg_l: float | None
    fcal_ug_g: float | None
    endoscopy_done: bool | None  # None when not recorded
    ses_cd: int | None
    corticosteroids: bool | None


class FollowUpData(NamedTuple):
    status: str  # ongoing | discontinued
    last_follow_up_date: dt.date
    discontinuation_date: dt.date | None
    discontinuation_reason: str  # code, '' when ongoing


class AdverseEventData(NamedTuple):
    category: str
    serious: bool
    led_to_discontinuation: bool


class PatientData(NamedTuple):
    study_id: str
    centre: str
    sex: str
    birth_year: int
    diagnosis_year: int
    montreal_location: str
    upper_gi: bool
    montreal_behaviour: str
    perianal: bool
    prior_resection: bool
    smoking: str
    prior_agents: tuple[str, ...] = ()  # agent code of each prior biologic course (repeats kept)
    initial_induction_date: dt.date | None = None
    reinduction_date: dt.date | None = None  # t0
    maintenance_doses: int = 0  # maintenance administrations recorded
    interval_before: str | None = None  # reinduction form; None when the form is missing
    interval_after: str | None = None
    corticosteroids_at_reinduction: bool | None = None
    immunomodulator: str | None = None
    assessments: tuple[AssessmentData, ...] = ()
    follow_up: FollowUpData | None = None
    adverse_events: tuple[AdverseEventData, ...] = ()


# ---------------------------------------------------------------------------------------------
# Statistics (standard library only)


def quantile(sorted_values: Sequence[float], p: float) -> float:
    """Linear interpolation between order statistics (R type 7, numpy's default), as numpy computes it."""
    h = (len(sorted_values) - 1) * p
    low = math.floor(h)
    high = min(low + 1, len(sorted_values) - 1)
    t = h - low
    a, b = float(sorted_values[low]), float(sorted_values[high])
    # numpy's _lerp: from the nearer end, so the result is exact at the order statistics.
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


def summary(values: Iterable[float | int | None]) -> dict:
    """{median, q1, q3, N} of the values that are present; null statistics when there are none."""
    xs = sorted(filter(_present, values))
    if not xs:
        return {"median": None, "q1": None, "q3": None, "N": 0}
    return {"median": quantile(xs, 0.5), "q1": quantile(xs, 0.25), "q3": quantile(xs, 0.75), "N": len(xs)}


def wilson_interval(n: int, total: int, z: float = Z95) -> tuple[float | None, float | None]:
    """95% Wilson score interval for n/total; (None, None) when it is undefined (total 0, n outside 0..total)."""
    if total <= 0 or not 0 <= n <= total:
        return None, None
    p = n / total
    z2 = z * z
    denominator = 1 + z2 / total
    centre = (p + z2 / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / denominator
    # The exact bounds at the extremes are 0 and 1; avoid -1e-17 from rounding.
    low = 0.0 if n == 0 else max(0.0, centre - half)
    high = 1.0 if n == total else min(1.0, centre + half)
    return low, high


def proportion(n: int, total: int) -> dict:
    low, high = wilson_interval(n, total)
    return {"n": n, "N": total, "ci_low": low, "ci_high": high}


def _present(value) -> bool:
    return value is not None


def count(flags: Iterable[bool | None]) -> dict:
    """{n, N}: N = flags that are known (not None), n = those that are true."""
    # Counter tallies in C: at 100,000 patients this is most of the baseline table's time.
    values = flags if isinstance(flags, list) else list(flags)
    tally = Counter(values)
    return {"n": tally[True], "N": len(values) - tally[None]}


@dataclass(frozen=True)
class SurvivalStep:
    """One distinct time of the Kaplan-Meier curve; the estimate includes this day's events."""

    day: int
    at_risk: int  # time >= day
    events: int
    censored: int
    estimate: float
    greenwood: float  # sum of d / (n (n - d)) up to and including this day; inf once S = 0


def kaplan_meier(times: Sequence[int], events: Sequence[bool]) -> list[SurvivalStep]:
    """Right-continuous Kaplan-Meier steps, one per distinct time, ascending."""
    events_at: Counter[int] = Counter()
    censored_at: Counter[int] = Counter()
    for time, event in zip(times, events, strict=True):
        (events_at if event else censored_at)[time] += 1
    at_risk = len(times)
    estimate, greenwood = 1.0, 0.0
    steps = []
    for day in sorted(events_at.keys() | censored_at.keys()):
        d, c = events_at[day], censored_at[day]
        if d:
            estimate *= 1 - d / at_risk
            greenwood = math.inf if d == at_risk else greenwood + d / (at_risk * (at_risk - d))
        steps.append(SurvivalStep(day, at_risk, d, c, estimate, greenwood))
        at_risk -= d + c
    return steps


def loglog_interval(estimate: float, greenwood: float, z: float = Z95) -> tuple[float | None, float | None]:
    """CI on the log(-log S) scale (R survfit conf.type="log-log", lifelines' exponential Greenwood).

    se(log(-log S)) = sqrt(greenwood) / |log S|; the bounds are S ** exp(+z se) (low) and
    S ** exp(-z se) (high). Undefined, so (None, None), when S is 1 or 0.
    """
    if not 0.0 < estimate < 1.0 or math.isinf(greenwood):
        return None, None
    log_s = math.log(estimate)
    se = math.sqrt(greenwood) / abs(log_s)
    return estimate ** math.exp(z * se), estimate ** math.exp(-z * se)


def survival_at(steps: Sequence[SurvivalStep], times: Sequence[int], day: int) -> dict:
    """S(day) with its log-log CI and the number at risk (time >= day)."""
    return survival_at_risk(steps, sum(1 for time in times if time >= day), day)


def survival_at_risk(steps: Sequence[SurvivalStep], at_risk: int, day: int) -> dict:
    """survival_at, given the number at risk at `day`."""
    previous = [step for step in steps if step.day <= day]
    if not previous:  # before any observed time (or no patients): nothing has happened yet
        estimate, greenwood = (1.0, 0.0) if steps else (None, 0.0)
    else:
        estimate, greenwood = previous[-1].estimate, previous[-1].greenwood
        if at_risk == 0 and estimate > 0:
            # Everyone was censored before this day: S is not known here.
            estimate = None
    if estimate is None:
        return {"estimate": None, "ci_low": None, "ci_high": None, "at_risk": at_risk}
    low, high = loglog_interval(estimate, greenwood)
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "at_risk": at_risk}


# ---------------------------------------------------------------------------------------------
# Definitions (SPEC section 5)


def is_included(patient: PatientData) -> bool:
    """Included in every outcome: has a reinduction dose and a follow_up form."""
    return patient.reinduction_date is not None and patient.follow_up is not None


def discontinuation_date(patient: PatientData) -> dt.date | None:
    follow_up = patient.follow_up
    if follow_up is None or follow_up.status != "discontinued":
        return None
    return follow_up.discontinuation_date or follow_up.last_follow_up_date


def on_drug(stopped: dt.date | None, day: dt.date | None) -> bool:
    """SPEC 5: on ustekinumab at `day` (a visit's assessment_date): not discontinued on or before
    it. `stopped`: the patient's discontinuation_date (None: ongoing)."""
    return stopped is None or (day is not None and day < stopped)


Seen = list[tuple[PatientData, AssessmentData]]


def assessments_by_visit(patients: Sequence[PatientData]) -> dict[str, Seen]:
    """Per visit, (patient, assessment) for each patient's done assessment of it; one pass over the data."""
    by_visit: dict[str, Seen] = {}
    for patient in patients:
        visits_done = set()
        for assessment in patient.assessments:
            if not assessment.not_done and assessment.visit not in visits_done:
                visits_done.add(assessment.visit)
                by_visit.setdefault(assessment.visit, []).append((patient, assessment))
    return by_visit


def survival_time(patient: PatientData) -> tuple[int, bool]:
    """Drug survival: (days from t0 to discontinuation or last follow-up, discontinued)."""
    assert patient.reinduction_date is not None and patient.follow_up is not None
    stopped = discontinuation_date(patient)
    end = stopped if stopped is not None else patient.follow_up.last_follow_up_date
    return (end - patient.reinduction_date).days, stopped is not None


def distinct_anti_tnf(patient: PatientData) -> int:
    return len(ANTI_TNF_AGENTS.intersection(patient.prior_agents))


def interval_months(patient: PatientData) -> float | None:
    if patient.initial_induction_date is None or patient.reinduction_date is None:
        return None
    return (patient.reinduction_date - patient.initial_induction_date).days / DAYS_PER_MONTH


def baseline_table(patients: Sequence[PatientData], week_0: Seen) -> dict:
    """One pass per variable with C-level tallies: the table must stay cheap at 100,000 patients."""

    def at_week0(name: str) -> list:
        return [getattr(a, name) for _, a in week_0]

    def column(name: str) -> list:
        return [getattr(p, name) for p in patients]

    total = len(patients)
    sex = Counter(column("sex"))
    t0_years = [p.reinduction_date.year for p in patients]
    table: dict = {
        "sex_female": {"n": sex["F"], "N": total},
        "sex_male": {"n": sex["M"], "N": total},
        "age_at_reinduction_years": summary(map(operator.sub, t0_years, column("birth_year"))),
        "disease_duration_years": summary(map(operator.sub, t0_years, column("diagnosis_year"))),
    }
    # Every patient has a location, behaviour and smoking code: N is all patients (SPEC 5).
    location, behaviour, smoking = (
        Counter(column("montreal_location")),
        Counter(column("montreal_behaviour")),
        Counter(column("smoking")),
    )
    for code in ("L1", "L2", "L3"):
        table[f"montreal_location_{code}"] = {"n": location[code], "N": total}
    table["upper_gi"] = count(column("upper_gi"))
    for code in ("B1", "B2", "B3"):
        table[f"montreal_behaviour_{code}"] = {"n": behaviour[code], "N": total}
    table["perianal"] = count(column("perianal"))
    table["prior_resection"] = count(column("prior_resection"))
    for code in SMOKING_CODES:
        table[f"smoking_{code}"] = {"n": smoking[code], "N": total}
    anti_tnf = Counter(min(distinct_anti_tnf(p), 3) for p in patients)
    for label, agents in (("0", 0), ("1", 1), ("2", 2), ("3plus", 3)):
        table[f"prior_anti_tnf_{label}"] = {"n": anti_tnf[agents], "N": total}
    table["anti_tnf_2plus"] = {"n": anti_tnf[2] + anti_tnf[3], "N": total}
    table["vedolizumab"] = count(["vedolizumab" in p.prior_agents for p in patients])
    table["interval_initial_to_reinduction_months"] = summary(interval_months(p) for p in patients)
    table["corticosteroids_at_reinduction"] = count(column("corticosteroids_at_reinduction"))
    immunomodulators = Counter(column("immunomodulator"))
    known = total - immunomodulators[None]
    table["immunomodulator_any"] = {"n": known - immunomodulators["none"], "N": known}
    for code in IMMUNOMODULATOR_TYPES:
        table[f"immunomodulator_{code}"] = {"n": immunomodulators[code], "N": known}
    table["week0_hbi"] = summary(at_week0("hbi"))
    table["week0_crp_mg_l"] = summary(at_week0("crp_mg_l"))
    table["week0_fcal_ug_g"] = summary(at_week0("fcal_ug_g"))
    return table


def treatment_table(patients: Sequence[PatientData]) -> dict:
    table: dict = {
        "interval_initial_to_reinduction_months": summary(interval_months(p) for p in patients),
        "maintenance_doses": summary(p.maintenance_doses for p in patients),
    }
    for attribute in ("interval_before", "interval_after"):
        given = [getattr(p, attribute) for p in patients]
        for code in INTERVAL_CODES:
            table[f"{attribute}_{code}"] = count([None if value is None else value == code for value in given])
    return table


def drug_survival(patients: Sequence[PatientData]) -> dict:
    observations = [survival_time(p) for p in patients]
    times = [time for time, _ in observations]
    steps = kaplan_meier(times, [event for _, event in observations])
    events = sum(1 for _, event in observations if event)
    return survival_table(steps, len(times), events, lambda day: sum(1 for time in times if time >= day))


def survival_table(steps: list[SurvivalStep], n: int, events: int, at_risk: Callable[[int], int]) -> dict:
    """The drug_survival dict from the Kaplan-Meier steps of n patients; `at_risk(day)`: how many
    have time >= day (reports/outcome_columns.py counts it in numpy)."""
    if steps and steps[0].day > 0:  # the curve starts at day 0 (S = 1) for the figure
        steps = [SurvivalStep(0, n, 0, 0, 1.0, 0.0), *steps]
    curve = []
    for step in steps:
        low, high = loglog_interval(step.estimate, step.greenwood)
        curve.append(
            {
                "day": step.day,
                "estimate": step.estimate,
                "ci_low": low,
                "ci_high": high,
                "at_risk": step.at_risk,
                "events": step.events,
                "censored": step.censored,
            }
        )
    return {
        "n": n,
        "events": events,
        "week_20": survival_at_risk(steps, at_risk(NOMINAL_DAY["week_20"]), NOMINAL_DAY["week_20"]),
        "week_52": survival_at_risk(steps, at_risk(NOMINAL_DAY["week_52"]), NOMINAL_DAY["week_52"]),
        "curve": curve,
    }


class VisitOutcome(NamedTuple):
    """A patient's follow-up outcomes at one visit; a flag is None when the patient is not in that
    outcome's denominator (SPEC 5). The outcome tables count these flags; the wide export writes them."""

    on_ustekinumab: bool | None  # at the visit's date (no assessment: its nominal day); None unknown
    remission: bool | None  # clinical remission, 'observed'
    steroid_free: bool | None  # same denominator
    nri: bool | None  # 'nri': the observed numerator in the NRI denominator
    biochemical: bool | None
    endoscopic: bool | None


NOMINAL_DELTA = {visit: dt.timedelta(days=day) for visit, day in NOMINAL_DAY.items()}


def visit_outcomes(patient: PatientData, thresholds: Thresholds) -> tuple[VisitOutcome, ...]:
    """An included patient's outcomes at each follow-up visit, in FOLLOW_UP_VISITS order.

    Per visit: the done assessment (the first, were there several); the follow-up outcomes' population
    is a done visit on ustekinumab at its date. The NRI numerator is the observed numerator, as the
    SPEC defines it, so a patient in remission at the visit but followed up for less than the nominal
    day counts in compute()'s n and has no NRI flag here. compute() calls this for every included
    patient, so the patient's discontinuation is looked up once, not per visit and rule.
    """
    seen: dict[str, AssessmentData] = {}
    for assessment in patient.assessments:
        if not assessment.not_done and assessment.visit not in seen:
            seen[assessment.visit] = assessment
    stopped = discontinuation_date(patient)
    last_seen = patient.follow_up.last_follow_up_date
    t0 = patient.reinduction_date
    result = []
    for visit in FOLLOW_UP_VISITS:
        nominal = t0 + NOMINAL_DELTA[visit]
        assessment = seen.get(visit)
        date = assessment.assessment_date if assessment is not None else None
        remission = steroid_free = biochemical = endoscopic = None
        if assessment is not None and on_drug(stopped, date):
            if assessment.hbi is not None:
                remission = assessment.hbi <= thresholds.hbi_max
                steroid_free = remission and assessment.corticosteroids is False
            biochemical = biochemical_in_remission(assessment, thresholds)
            endoscopic = endoscopic_in_remission(assessment)
        # On ustekinumab at the visit's date, or without one at the nominal day; None when still on
        # treatment but followed up for less than that (only the follow-up can tell).
        if date is None and stopped is None:
            on_ustekinumab = True if last_seen >= nominal else None
        else:
            on_ustekinumab = on_drug(stopped, date or nominal)
        nri = remission is True if followed_to(patient, nominal) else None
        result.append(VisitOutcome(on_ustekinumab, remission, steroid_free, nri, biochemical, endoscopic))
    return tuple(result)


def followed_to(patient: PatientData, day: dt.date) -> bool:
    """SPEC 5 'nri' denominator at a visit whose nominal day is `day`: discontinued (at any time) or
    followed up to that day."""
    return patient.follow_up.status == "discontinued" or patient.follow_up.last_follow_up_date >= day


def biochemical_in_remission(assessment: AssessmentData, thresholds: Thresholds) -> bool | None:
    """SPEC 5: every value present within its threshold; None (not in the denominator) without
    either CRP or faecal calprotectin."""
    checks = [
        value <= limit
        for value, limit in ((assessment.crp_mg_l, thresholds.crp_max), (assessment.fcal_ug_g, thresholds.fcal_max))
        if value is not None
    ]
    return all(checks) if checks else None


def endoscopic_in_remission(assessment: AssessmentData) -> bool | None:
    """SPEC 5: SES-CD <= 2; None (not in the denominator) without an endoscopy and its SES-CD."""
    if assessment.endoscopy_done is True and assessment.ses_cd is not None:
        return assessment.ses_cd <= 2
    return None


def _tally(flags: list[bool | None]) -> dict:
    tally = count(flags)
    return proportion(tally["n"], tally["N"])


def clinical_remission(at_visit: VisitOutcome) -> dict:
    """Observed, NRI and steroid-free proportions from a visit's outcomes of the included patients,
    one list per field (`columns`)."""
    observed = count(at_visit.remission)
    # The NRI numerator is the observed numerator (see visit_outcomes).
    nri_total = len(at_visit.nri) - at_visit.nri.count(None)
    return {
        "observed": proportion(observed["n"], observed["N"]),
        "nri": proportion(observed["n"], nri_total),
        "steroid_free": _tally(at_visit.steroid_free),
    }


def columns(outcomes: Sequence[VisitOutcome]) -> VisitOutcome:
    """Many patients' outcomes at one visit, turned into one list per field (transposed in C)."""
    if not outcomes:
        return VisitOutcome([], [], [], [], [], [])
    return VisitOutcome._make(map(list, zip(*outcomes, strict=True)))


def adverse_event_table(patients: Sequence[PatientData]) -> dict:
    events = [event for p in patients for event in p.adverse_events]
    by_category = dict.fromkeys(AE_CATEGORIES, 0)
    for event in events:
        by_category[event.category] = by_category.get(event.category, 0) + 1
    return {
        "patients": sum(1 for p in patients if p.adverse_events),
        "events": len(events),
        "serious": sum(1 for event in events if event.serious),
        "led_to_discontinuation": sum(1 for event in events if event.led_to_discontinuation),
        "by_category": by_category,
    }


def compute(patients: Iterable[PatientData], *, scope: str = "all", thresholds: Thresholds = Thresholds()) -> dict:
    """The SPEC section 5 outcome dict for these patients.

    A scope other than "all" is a centre code: patients of other centres are left out here too, so a
    caller that passes the whole cohort still gets that centre's figures.
    """
    in_scope = [p for p in patients if scope == "all" or p.centre == scope]
    included = [p for p in in_scope if is_included(p)]
    by_visit = assessments_by_visit(included)
    per_patient = [visit_outcomes(p, thresholds) for p in included]
    at_visit = {w: columns([o[i] for o in per_patient]) for i, w in enumerate(FOLLOW_UP_VISITS)}
    return {
        "scope": scope,
        "algorithm_version": ALGORITHM_VERSION,
        "n_patients": len(included),
        "excluded_incomplete": len(in_scope) - len(included),
        "baseline": baseline_table(included, by_visit.get("week_0", [])),
        "treatment": treatment_table(included),
        "drug_survival": drug_survival(included),
        "clinical_remission": {w: clinical_remission(at_visit[w]) for w in FOLLOW_UP_VISITS},
        "biochemical_remission": {w: _tally(at_visit[w].biochemical) for w in FOLLOW_UP_VISITS},
        "endoscopic_remission": {w: _tally(at_visit[w].endoscopic) for w in FOLLOW_UP_VISITS},
        "nonresponse": proportion(
            sum(1 for p in included if p.follow_up.discontinuation_reason == NONRESPONSE), len(included)
        ),
        "adverse_events": adverse_event_table(included),
    }


# ---------------------------------------------------------------------------------------------
# Follow-up of each included patient, visit by visit: the cohort report's completeness table
# counts with these, so it adds up to the outcome tables by construction.

# SPEC section 3: the nominal study day of every visit; week 0 is t0 itself.
VISIT_DAY = {"week_0": 0, **NOMINAL_DAY}


def follow_up_end(patient: PatientData) -> dt.date:
    """The last day an included patient was followed up on ustekinumab: where drug survival ends
    (discontinuation, else the last follow-up)."""
    days, _stopped = survival_time(patient)
    return patient.reinduction_date + dt.timedelta(days=days)


def visits_recorded(patient: PatientData) -> set[str]:
    """The visits the patient has an assessment of that is not marked not done."""
    return {assessment.visit for assessment in patient.assessments if not assessment.not_done}


def visit_expected(patient: PatientData, visit: str, *, recorded: bool) -> bool:
    """A visit is expected of an included patient followed up on ustekinumab to its nominal day,
    and of anyone who has it recorded."""
    return recorded or _followed_to(survival_time(patient)[0], visit)


def visits_followed(patient: PatientData) -> tuple[tuple[bool, bool], ...]:
    """(recorded, expected) of every visit, in VISIT_DAY's order, of an included patient: what the
    completeness table counts of each patient. The follow-up's end is worked out once, not once
    per visit (`visit_expected`): the table visits every patient of the cohort."""
    done = visits_recorded(patient)
    days, _stopped = survival_time(patient)
    return tuple((visit in done, visit in done or _followed_to(days, visit)) for visit in VISIT_DAY)


def _followed_to(days: int, visit: str) -> bool:
    """Followed up on ustekinumab `days` after t0 (`follow_up_end`): up to the visit's nominal day."""
    return days >= VISIT_DAY[visit]
