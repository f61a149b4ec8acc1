"""The outcome dict of reports/outcomes.py computed over columns (numpy), for a whole cohort at once.

Why a second form of `outcomes.compute`: at 100,000 patients building and walking one Python
object per patient, assessment and event costs seconds (docs/benchmarks.md); the same rules over
one array per variable cost milliseconds. reports/outcomes.py stays the readable home of the SPEC
section 5 definitions (and of the per-patient functions the wide export and the completeness table
use); each step here names the function it mirrors, and tests/test_outcome_columns.py proves the
two give the same dict, to the last digit, on a varied synthetic cohort and on loaded data.

Identical to the last digit, not merely close: the statistics are the same IEEE operations in the
same order (a Kaplan-Meier product and a Greenwood sum are sequential accumulations, as in the
loop; quantiles, Wilson and log-log bounds are outcomes.py's own functions, called on a handful of
values). Nothing here sums floats across patients.

The columns (`FIELDS`) are one array per variable, one value per patient of the scope, as
`loaders.load_columns` reads them from PostgreSQL (`Columns`: name -> array). A missing value is
NULL_INT in an integer column and NaN in a float column. Dates are days since 1970-01-01. A code
column holds the code's position in its tuple of codes (CODES) plus one,
0 for another value. A flag is 1 (true), 0 (false) or NULL_INT (unknown).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from reports import outcomes
from reports.outcomes import (
    AE_CATEGORIES,
    ALGORITHM_VERSION,
    FOLLOW_UP_VISITS,
    IMMUNOMODULATOR_TYPES,
    INTERVAL_CODES,
    NOMINAL_DAY,
    SMOKING_CODES,
    AssessmentData,
    PatientData,
    SurvivalStep,
    Thresholds,
)

NULL_INT = np.iinfo(np.int32).min
EPOCH = np.datetime64("1970-01-01", "D")

# The codes a code column counts, in the order its values refer to (value = position + 1).
CODES = {
    "sex": ("F", "M"),
    "montreal_location": ("L1", "L2", "L3"),
    "montreal_behaviour": ("B1", "B2", "B3"),
    "smoking": SMOKING_CODES,
    "interval_before": INTERVAL_CODES,
    "interval_after": INTERVAL_CODES,
    "immunomodulator": ("none", *IMMUNOMODULATOR_TYPES),
}
# The assessment values of each visit (the first done assessment of it; see outcomes.visit_outcomes).
WEEK_0_VALUES = ("hbi", "crp_mg_l", "fcal_ug_g")
# The outcome module's assessment values, "done" in place of its visit and not_done.
VISIT_VALUES = ("done", *AssessmentData._fields[2:])
FLOAT_VALUES = frozenset({"crp_mg_l", "fcal_ug_g"})


def _fields() -> tuple[tuple[str, str], ...]:
    patient = (
        "centre_id",  # the centre's database key (the completeness table counts per centre)
        "sex",
        "birth_year",
        "diagnosis_year",
        "montreal_location",
        "upper_gi",
        "montreal_behaviour",
        "perianal",
        "prior_resection",
        "smoking",
        "anti_tnf_agents",  # outcomes.distinct_anti_tnf
        "vedolizumab",
        "initial_induction_date",
        "reinduction_date",
        "maintenance_doses",
        "interval_before",
        "interval_after",
        "corticosteroids_at_reinduction",
        "immunomodulator",
        "follow_up",  # 1 when the patient has the follow_up form
        "discontinued",  # follow_up.status == "discontinued"
        "last_follow_up_date",
        "discontinuation_date",  # as entered
        "nonresponse",  # follow_up.discontinuation_reason == NONRESPONSE
        "adverse_events",
        "serious_adverse_events",
        "adverse_events_led_to_discontinuation",
        *(f"adverse_events_{category}" for category in AE_CATEGORIES),
        "adverse_events_unknown_category",
    )
    visits = [f"week_0_{name}" for name in ("done", *WEEK_0_VALUES)]
    visits += [f"{visit}_{name}" for visit in FOLLOW_UP_VISITS for name in VISIT_VALUES]
    return tuple((name, "i4") for name in patient) + tuple(
        (name, "f8" if name.split("_", 2)[-1] in FLOAT_VALUES else "i4") for name in visits
    )


# (name, numpy type) of each column.
FIELDS = _fields()
Columns = Mapping[str, np.ndarray]


def null_columns(count: int) -> dict[str, np.ndarray]:
    """`count` patients of whom nothing is known yet (no done assessment at any visit)."""
    return {
        name: np.full(count, 0 if _is_done(name) else (np.nan if kind == "f8" else NULL_INT), dtype=kind)
        for name, kind in FIELDS
    }


def _is_done(name: str) -> bool:
    return name.startswith("week_") and name.split("_", 2)[-1] == "done"


# ---------------------------------------------------------------------------------------------
# Small helpers over the sentinel encoding


def _known(column: np.ndarray) -> np.ndarray:
    return ~np.isnan(column) if column.dtype.kind == "f" else column != NULL_INT


def _count(flags: np.ndarray) -> dict:
    """outcomes.count over a flag column: N = known flags, n = true ones."""
    return {"n": int(np.count_nonzero(flags == 1)), "N": int(np.count_nonzero(flags != NULL_INT))}


def _tally(flags: np.ndarray) -> dict:
    counted = _count(flags)
    return outcomes.proportion(counted["n"], counted["N"])


def _summary(values: np.ndarray) -> dict:
    """outcomes.summary of the known values, with its own quantile function on the sorted array."""
    xs = np.sort(values[_known(values)])
    if not len(xs):
        return {"median": None, "q1": None, "q3": None, "N": 0}
    quantile = outcomes.quantile
    return {"median": quantile(xs, 0.5), "q1": quantile(xs, 0.25), "q3": quantile(xs, 0.75), "N": len(xs)}


def _code_count(column: np.ndarray, field: str, code: str) -> int:
    return int(np.count_nonzero(column == CODES[field].index(code) + 1))


def _flag(condition: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """A flag column: 1 where the condition holds, 0 where not, NULL_INT where not known."""
    flags = condition.astype(np.int32)
    if known is not None:
        flags[~known] = NULL_INT
    return flags


# ---------------------------------------------------------------------------------------------
# The tables (each mirrors the function of reports/outcomes.py it names)


def _interval_months(c: Columns) -> np.ndarray:
    """outcomes.interval_months: NaN without an initial induction date."""
    known = c["initial_induction_date"] != NULL_INT
    days = (c["reinduction_date"] - c["initial_induction_date"]).astype(np.float64)
    return np.where(known, days / outcomes.DAYS_PER_MONTH, np.nan)


def baseline_table(c: Columns) -> dict:
    """outcomes.baseline_table."""
    total = len(c["sex"])
    t0_years = (EPOCH + c["reinduction_date"].astype("timedelta64[D]")).astype("datetime64[Y]").astype(np.int64) + 1970
    table: dict = {
        "sex_female": {"n": _code_count(c["sex"], "sex", "F"), "N": total},
        "sex_male": {"n": _code_count(c["sex"], "sex", "M"), "N": total},
        "age_at_reinduction_years": _summary(t0_years - c["birth_year"]),
        "disease_duration_years": _summary(t0_years - c["diagnosis_year"]),
    }
    for code in ("L1", "L2", "L3"):
        table[f"montreal_location_{code}"] = {
            "n": _code_count(c["montreal_location"], "montreal_location", code),
            "N": total,
        }
    table["upper_gi"] = _count(c["upper_gi"])
    for code in ("B1", "B2", "B3"):
        table[f"montreal_behaviour_{code}"] = {
            "n": _code_count(c["montreal_behaviour"], "montreal_behaviour", code),
            "N": total,
        }
    table["perianal"] = _count(c["perianal"])
    table["prior_resection"] = _count(c["prior_resection"])
    for code in SMOKING_CODES:
        table[f"smoking_{code}"] = {"n": _code_count(c["smoking"], "smoking", code), "N": total}
    anti_tnf = np.bincount(np.minimum(c["anti_tnf_agents"], 3), minlength=4)
    for label, agents in (("0", 0), ("1", 1), ("2", 2), ("3plus", 3)):
        table[f"prior_anti_tnf_{label}"] = {"n": int(anti_tnf[agents]), "N": total}
    table["anti_tnf_2plus"] = {"n": int(anti_tnf[2] + anti_tnf[3]), "N": total}
    table["vedolizumab"] = _count(c["vedolizumab"])
    table["interval_initial_to_reinduction_months"] = _summary(_interval_months(c))
    table["corticosteroids_at_reinduction"] = _count(c["corticosteroids_at_reinduction"])
    immunomodulator = c["immunomodulator"]
    known = int(np.count_nonzero(immunomodulator != NULL_INT))
    table["immunomodulator_any"] = {
        "n": known - _code_count(immunomodulator, "immunomodulator", "none"),
        "N": known,
    }
    for code in IMMUNOMODULATOR_TYPES:
        table[f"immunomodulator_{code}"] = {"n": _code_count(immunomodulator, "immunomodulator", code), "N": known}
    for name in WEEK_0_VALUES:
        table[f"week0_{name}"] = _summary(c[f"week_0_{name}"])
    return table


def treatment_table(c: Columns) -> dict:
    """outcomes.treatment_table."""
    table: dict = {
        "interval_initial_to_reinduction_months": _summary(_interval_months(c)),
        "maintenance_doses": _summary(c["maintenance_doses"]),
    }
    for attribute in ("interval_before", "interval_after"):
        given = c[attribute]
        known = given != NULL_INT
        for code in INTERVAL_CODES:
            table[f"{attribute}_{code}"] = _count(_flag(given == CODES[attribute].index(code) + 1, known))
    return table


def _stopped(c: Columns) -> np.ndarray:
    """outcomes.discontinuation_date: the entered date, else the last follow-up; NULL_INT when ongoing."""
    entered = c["discontinuation_date"]
    date = np.where(entered != NULL_INT, entered, c["last_follow_up_date"])
    return np.where(c["discontinued"] == 1, date, NULL_INT)


def kaplan_meier(times: np.ndarray, events: np.ndarray) -> list[SurvivalStep]:
    """outcomes.kaplan_meier: the same steps, the product and the Greenwood sum accumulated in order."""
    if not len(times):
        return []
    days, position = np.unique(times, return_inverse=True)
    d = np.bincount(position, weights=events, minlength=len(days)).astype(np.int64)
    removed = np.bincount(position, minlength=len(days)).astype(np.int64)
    at_risk = len(times) - np.concatenate(([0], np.cumsum(removed)[:-1]))
    estimate = np.multiply.accumulate(1 - d / at_risk)
    with np.errstate(divide="ignore"):
        terms = np.where(d == at_risk, np.inf, d / (at_risk * (at_risk - d)))
    greenwood = np.add.accumulate(np.where(d > 0, terms, 0.0))
    return [
        SurvivalStep(int(day), int(n), int(e), int(r - e), float(s), float(g))
        for day, n, e, r, s, g in zip(days, at_risk, d, removed, estimate, greenwood, strict=True)
    ]


def survival_times(c: Columns) -> tuple[np.ndarray, np.ndarray]:
    """outcomes.survival_time of every patient (meaningful for the included ones): days from t0 to
    discontinuation or the last follow-up, and whether discontinued."""
    stopped = _stopped(c)
    event = stopped != NULL_INT
    return np.where(event, stopped, c["last_follow_up_date"]) - c["reinduction_date"], event


def drug_survival(c: Columns) -> dict:
    """outcomes.drug_survival (survival_time of every patient, then the same table)."""
    times, event = survival_times(c)
    return outcomes.survival_table(
        kaplan_meier(times, event),
        len(times),
        int(np.count_nonzero(event)),
        lambda day: int(np.count_nonzero(times >= day)),
    )


def visit_flags(c: Columns, visit: str, thresholds: Thresholds) -> dict[str, np.ndarray]:
    """outcomes.visit_outcomes at one visit, for every patient: remission, steroid_free, nri,
    biochemical and endoscopic flag columns (on_ustekinumab is the export's, not counted here)."""
    stopped = _stopped(c)
    date = c[f"{visit}_assessment_date"]
    # outcomes.on_drug at the visit's date: not discontinued on or before it.
    on_drug = (stopped == NULL_INT) | ((date != NULL_INT) & (date < stopped))
    counted = (c[f"{visit}_done"] == 1) & on_drug
    hbi = c[f"{visit}_hbi"]
    has_hbi = counted & (hbi != NULL_INT)
    remission = _flag(hbi <= thresholds.hbi_max, has_hbi)
    steroid_free = _flag((remission == 1) & (c[f"{visit}_corticosteroids"] == 0), has_hbi)
    # outcomes.biochemical_in_remission: every value present within its threshold.
    crp, fcal = c[f"{visit}_crp_mg_l"], c[f"{visit}_fcal_ug_g"]
    has_crp, has_fcal = ~np.isnan(crp), ~np.isnan(fcal)
    within = (~has_crp | (crp <= thresholds.crp_max)) & (~has_fcal | (fcal <= thresholds.fcal_max))
    biochemical = _flag(within, counted & (has_crp | has_fcal))
    # outcomes.endoscopic_in_remission: SES-CD <= 2 after an endoscopy with its score.
    ses_cd = c[f"{visit}_ses_cd"]
    endoscopic = _flag(ses_cd <= 2, counted & (c[f"{visit}_endoscopy_done"] == 1) & (ses_cd != NULL_INT))
    # outcomes.followed_to: discontinued at any time, or followed up to the nominal day.
    followed = (c["discontinued"] == 1) | (c["last_follow_up_date"] >= c["reinduction_date"] + NOMINAL_DAY[visit])
    nri = _flag(remission == 1, followed)
    return {
        "remission": remission,
        "steroid_free": steroid_free,
        "nri": nri,
        "biochemical": biochemical,
        "endoscopic": endoscopic,
    }


def clinical_remission(flags: dict[str, np.ndarray]) -> dict:
    """outcomes.clinical_remission."""
    observed = _count(flags["remission"])
    return {
        "observed": outcomes.proportion(observed["n"], observed["N"]),
        "nri": outcomes.proportion(observed["n"], int(np.count_nonzero(flags["nri"] != NULL_INT))),
        "steroid_free": _tally(flags["steroid_free"]),
    }


def adverse_event_table(c: Columns) -> dict:
    """outcomes.adverse_event_table. Every category is one of AE_CATEGORIES (a check constraint of
    the database); a column set that says otherwise is refused rather than miscounted."""
    if np.any(c["adverse_events_unknown_category"] > 0):
        raise ValueError("adverse event of a category outside AE_CATEGORIES")
    return {
        "patients": int(np.count_nonzero(c["adverse_events"] > 0)),
        "events": int(c["adverse_events"].sum()),
        "serious": int(c["serious_adverse_events"].sum()),
        "led_to_discontinuation": int(c["adverse_events_led_to_discontinuation"].sum()),
        "by_category": {category: int(c[f"adverse_events_{category}"].sum()) for category in AE_CATEGORIES},
    }


def compute(columns: Columns, *, scope: str = "all", thresholds: Thresholds | None = None) -> dict:
    """outcomes.compute over the columns of the scope's patients (the loader reads only the scope)."""
    thresholds = thresholds or Thresholds()
    # outcomes.is_included
    included = (columns["reinduction_date"] != NULL_INT) & (columns["follow_up"] == 1)
    c = {name: column[included] for name, column in columns.items()}
    n_patients = int(np.count_nonzero(included))
    at_visit = {visit: visit_flags(c, visit, thresholds) for visit in FOLLOW_UP_VISITS}
    return {
        "scope": scope,
        "algorithm_version": ALGORITHM_VERSION,
        "n_patients": n_patients,
        "excluded_incomplete": len(included) - n_patients,
        "baseline": baseline_table(c),
        "treatment": treatment_table(c),
        "drug_survival": drug_survival(c),
        "clinical_remission": {visit: clinical_remission(at_visit[visit]) for visit in FOLLOW_UP_VISITS},
        "biochemical_remission": {visit: _tally(at_visit[visit]["biochemical"]) for visit in FOLLOW_UP_VISITS},
        "endoscopic_remission": {visit: _tally(at_visit[visit]["endoscopic"]) for visit in FOLLOW_UP_VISITS},
        "nonresponse": outcomes.proportion(int(np.count_nonzero(c["nonresponse"] == 1)), n_patients),
        "adverse_events": adverse_event_table(c),
    }


# ---------------------------------------------------------------------------------------------
# PatientData -> columns: how the tests hold this module to reports/outcomes.py on any cohort.


def _days(date) -> int:
    return NULL_INT if date is None else int((np.datetime64(date, "D") - EPOCH).astype(np.int64))


def _int(value) -> int:
    return NULL_INT if value is None else int(value)


def _code(field: str, value) -> int:
    if value is None:
        return NULL_INT
    codes = CODES[field]
    return codes.index(value) + 1 if value in codes else 0


def columns_of(patients: Sequence[PatientData], centre_ids: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """The columns `loaders.load_columns` reads, built from loaded patients instead. `centre_ids`:
    each centre code's database key (default: the codes numbered from 1 in sorted order)."""
    if centre_ids is None:
        centre_ids = {code: number for number, code in enumerate(sorted({p.centre for p in patients}), start=1)}
    rows = []
    for p in patients:
        row = {name: NULL_INT for name, _ in FIELDS}
        row["centre_id"] = centre_ids[p.centre]
        row.update({name: _code(name, getattr(p, name)) for name in CODES})
        for name in ("birth_year", "diagnosis_year", "upper_gi", "perianal", "prior_resection"):
            row[name] = _int(getattr(p, name))
        row["anti_tnf_agents"] = outcomes.distinct_anti_tnf(p)
        row["vedolizumab"] = int("vedolizumab" in p.prior_agents)
        row["initial_induction_date"] = _days(p.initial_induction_date)
        row["reinduction_date"] = _days(p.reinduction_date)
        row["maintenance_doses"] = p.maintenance_doses
        row["corticosteroids_at_reinduction"] = _int(p.corticosteroids_at_reinduction)
        follow_up = p.follow_up
        row["follow_up"] = int(follow_up is not None)
        if follow_up is not None:
            row["discontinued"] = int(follow_up.status == "discontinued")
            row["last_follow_up_date"] = _days(follow_up.last_follow_up_date)
            row["discontinuation_date"] = _days(follow_up.discontinuation_date)
            row["nonresponse"] = int(follow_up.discontinuation_reason == outcomes.NONRESPONSE)
        events = p.adverse_events
        row["adverse_events"] = len(events)
        row["serious_adverse_events"] = sum(1 for event in events if event.serious)
        row["adverse_events_led_to_discontinuation"] = sum(1 for event in events if event.led_to_discontinuation)
        for category in AE_CATEGORIES:
            row[f"adverse_events_{category}"] = sum(1 for event in events if event.category == category)
        row["adverse_events_unknown_category"] = sum(1 for event in events if event.category not in AE_CATEGORIES)
        seen = {}
        for assessment in p.assessments:
            if not assessment.not_done:
                seen.setdefault(assessment.visit, assessment)
        week_0 = ("week_0", ("done", *WEEK_0_VALUES))
        for visit, names in (week_0, *((visit, VISIT_VALUES) for visit in FOLLOW_UP_VISITS)):
            assessment = seen.get(visit)
            for name in names:
                key = f"{visit}_{name}"
                if name == "done":
                    row[key] = int(assessment is not None)
                elif assessment is None or getattr(assessment, name) is None:
                    row[key] = np.nan if name in FLOAT_VALUES else NULL_INT
                elif name == "assessment_date":
                    row[key] = _days(assessment.assessment_date)
                else:
                    row[key] = getattr(assessment, name)
        rows.append(row)
    return {name: np.array([row[name] for row in rows], dtype=kind) for name, kind in FIELDS}
