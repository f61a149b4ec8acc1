"""The wide analysis dataset (SPEC section 7): one row per patient, the patients form, then derived
variables computed with reports/outcomes.py (visit_outcomes), so its flags add up to the outcome
tables (a remission flag is empty when the patient is not in that outcome's denominator); and the
data dictionary with the derived variables and their SPSS/Stata codes. reports/exports.py writes
them to files.

CSV and XLSX keep the dictionary's string codes; SPSS and Stata need numeric codes for value labels,
so there a yes/no is 1 = yes, 0 = no and a choice is its position in the dictionary's list (1, 2,
...). The exported dictionary CSV documents that mapping in its `numeric_codes` column.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.db.models import QuerySet

from cohort import dictionary
from cohort.models import HBI_COMPONENTS, hbi_total, in_window, montreal_age_class, study_day
from reports import outcomes
from reports.loaders import iter_records
from reports.services import thresholds

YESNO = (("yes", "yes"), ("no", "no"))
WEEKS = ("week_0", "week_8", "week_20", "week_52")


@dataclass(frozen=True)
class Column:
    """A variable of the wide dataset. `type` is the dictionary's: text, centre_code, integer,
    decimal, date, yesno or choice."""

    name: str
    label: str
    type: str
    choices: tuple[tuple[str, str], ...] = ()
    notes: str = ""

    @property
    def coded(self) -> bool:
        return self.type in ("yesno", "choice")

    @property
    def value_labels(self) -> dict[str, str] | None:
        """String code -> label (as in CSV and XLSX); None for a variable without codes."""
        return dict(YESNO if self.type == "yesno" else self.choices) if self.coded else None

    @property
    def numeric_codes(self) -> dict[str, int] | None:
        """String code -> the number SPSS and Stata store: yes 1, no 0; a choice's position from 1."""
        if self.type == "yesno":
            return {"yes": 1, "no": 0}
        if self.type == "choice":
            return {code: position for position, (code, _) in enumerate(self.choices, start=1)}
        return None

    @property
    def numeric_value_labels(self) -> dict[int, str] | None:
        codes, labels = self.numeric_codes, self.value_labels
        if codes is None or labels is None:
            return None
        return {number: labels[code] for code, number in codes.items()}


# A flag as its yes/no code, None (unknown) as None: a dict lookup, as it is made about 3 million
# times at 100,000 patients (anything but a boolean or None is a KeyError, not a wrong code).
_flag: Callable[[bool | None], str | None] = {True: "yes", False: "no", None: None}.__getitem__


# ---------------------------------------------------------------------------------------------
# The wide dataset

HBI_PARTS = operator.itemgetter(*HBI_COMPONENTS)
AE_CODES = [code for code, _label in next(v for v in dictionary.variables() if v.name == "category").choices]


def _columns() -> list[Column]:
    limits = thresholds()
    hbi_max = limits.hbi_max
    crf = dictionary.forms()
    patient_columns = [Column(v.name, v.label, v.type, v.choices, v.notes) for v in crf["patients"]]
    choices = {(v.form, v.name): v.choices for v in dictionary.variables()}
    derived = [
        Column("included", "Included in the outcomes (re-induction dose and follow-up form present)", "yesno"),
        Column("age_at_reinduction", "Age at re-induction (years)", "integer", notes="t0 year - birth_year."),
        Column(
            "disease_duration", "Disease duration at re-induction (years)", "integer", notes="t0 year - diagnosis_year."
        ),
        Column(
            "montreal_age",
            "Montreal age at diagnosis",
            "choice",
            (("A1", "16 years or younger"), ("A2", "17 to 40 years"), ("A3", "older than 40 years")),
            "diagnosis_year - birth_year.",
        ),
        Column("anti_tnf_count", "Prior anti-TNF agents (distinct)", "integer"),
        Column("anti_tnf_2plus", "Prior anti-TNF agents: 2 or more", "yesno"),
        Column("vedolizumab", "Prior vedolizumab", "yesno"),
        Column("initial_induction_date", "Initial IV induction date", "date"),
        Column("t0_date", "Re-induction dose date (t0, day 0)", "date"),
        Column(
            "interval_months",
            "Interval initial induction to re-induction (months)",
            "decimal",
            notes="Days / 30.4375, unrounded.",
        ),
        Column("maintenance_doses", "Maintenance doses recorded", "integer"),
        Column(
            "interval_before",
            "Maintenance interval before loss of response",
            "choice",
            choices[("reinduction", "interval_before")],
        ),
        Column(
            "interval_after",
            "Maintenance interval after re-induction",
            "choice",
            choices[("reinduction", "interval_after")],
        ),
        Column("corticosteroids_at_reinduction", "Corticosteroids at re-induction", "yesno"),
        Column(
            "immunomodulator", "Immunomodulator at re-induction", "choice", choices[("reinduction", "immunomodulator")]
        ),
        Column("status", "Ustekinumab status at last follow-up", "choice", choices[("follow_up", "status")]),
        Column("last_follow_up_date", "Date of last follow-up", "date"),
        Column("discontinuation_date", "Date of discontinuation", "date"),
        Column(
            "discontinuation_reason",
            "Reason for discontinuation",
            "choice",
            choices[("follow_up", "discontinuation_reason")],
        ),
        Column(
            "survival_days",
            "Drug survival time (days)",
            "integer",
            notes="(discontinuation_date if discontinued, else last_follow_up_date) - t0; included patients only.",
        ),
        Column("survival_event", "Drug survival event (discontinued)", "yesno"),
    ]
    for visit in WEEKS:
        w = f"w{visit.removeprefix('week_')}"
        week = visit.replace("_", " ")
        derived += [
            Column(f"{w}_not_done", f"{week.capitalize()}: visit not done", "yesno"),
            Column(f"{w}_date", f"{week.capitalize()}: date of assessment", "date"),
            Column(f"{w}_day", f"{week.capitalize()}: study day (days after t0)", "integer"),
            Column(f"{w}_in_window", f"{week.capitalize()}: date within the visit window", "yesno"),
            Column(f"{w}_hbi", f"{week.capitalize()}: Harvey-Bradshaw Index (total)", "integer"),
            Column(f"{w}_crp", f"{week.capitalize()}: C-reactive protein (mg/L)", "decimal"),
            Column(f"{w}_fcal", f"{week.capitalize()}: faecal calprotectin (ug/g)", "decimal"),
            Column(f"{w}_endoscopy", f"{week.capitalize()}: endoscopy performed", "yesno"),
            Column(f"{w}_ses_cd", f"{week.capitalize()}: SES-CD", "integer"),
            Column(f"{w}_steroids", f"{week.capitalize()}: corticosteroids", "yesno"),
        ]
        if visit == "week_0":
            continue
        derived += [
            Column(
                f"{w}_on_ustekinumab",
                f"{week.capitalize()}: on ustekinumab",
                "yesno",
                notes="Not discontinued on or before the assessment date (without an assessment: the nominal "
                "day; empty when still on treatment but followed up for less).",
            ),
            Column(
                f"{w}_remission",
                f"{week.capitalize()}: clinical remission (HBI <= {hbi_max})",
                "yesno",
                notes="SPEC 5 'observed': empty when not in the denominator (no HBI at the visit, or discontinued).",
            ),
            Column(
                f"{w}_sf_remission",
                f"{week.capitalize()}: steroid-free clinical remission",
                "yesno",
                notes="Clinical remission and corticosteroids = no at the visit; same denominator.",
            ),
            Column(
                f"{w}_nri_remission",
                f"{week.capitalize()}: clinical remission, non-responder imputation",
                "yesno",
                notes="SPEC 5 'nri': empty unless discontinued or followed up to the nominal day; missing or "
                "discontinued counts as no.",
            ),
            Column(
                f"{w}_biochemical_remission",
                f"{week.capitalize()}: biochemical remission (CRP <= {limits.crp_max:g} mg/L, faecal calprotectin "
                f"<= {limits.fcal_max:g} ug/g)",
                "yesno",
                notes="Every value present within its threshold; empty without CRP and calprotectin, or off "
                "ustekinumab at the visit.",
            ),
            Column(
                f"{w}_endoscopic_remission",
                f"{week.capitalize()}: endoscopic remission (SES-CD <= 2)",
                "yesno",
                notes="Empty without an endoscopy and its SES-CD, or off ustekinumab at the visit.",
            ),
        ]
    derived += [
        Column(
            "nonresponse",
            "Nonresponse (discontinued for no response to re-induction)",
            "yesno",
            notes="Included patients only.",
        ),
        Column("ae_n", "Adverse events (number)", "integer"),
        Column("ae_serious_n", "Serious adverse events (number)", "integer"),
        Column("ae_led_to_discontinuation_n", "Adverse events that led to discontinuation (number)", "integer"),
        *(
            Column(f"ae_{code}_n", f"Adverse events: {label} (number)", "integer")
            for code, label in choices[("adverse_events", "category")]
        ),
    ]
    return patient_columns + derived


def _visit_values(t0: dt.date | None, entered: dict | None, visit: str, at_visit: outcomes.VisitOutcome | None) -> list:
    """The visit's columns: the assessment as entered with the model's rules applied to its values
    (HBI total, study day, window), then (follow-up visits) the visit's outcomes."""
    if entered is None:
        values: list = [None] * 10
    else:
        not_done, date = entered["not_done"], entered["assessment_date"]
        day = study_day(date, t0)
        done = not_done != "yes"
        values = [
            not_done,
            date,
            day,
            _flag(in_window(visit, day)),
            hbi_total(HBI_PARTS(entered), entered["hbi"]),
            entered["crp_mg_l"],
            entered["fcal_ug_g"],
            (entered["endoscopy_done"] or None) if done else None,
            entered["ses_cd"],
            (entered["corticosteroids"] or None) if done else None,
        ]
    if visit == "week_0":
        return values
    if at_visit is None:  # not included
        return [*values, None, None, None, None, None, None]
    return [*values, *map(_flag, at_visit)]


def wide_dataset(patients: QuerySet) -> tuple[list[Column], list[list]]:
    """One row per patient (ordered by study ID): the patients form, then the derived variables.
    Values are Python values with the dictionary's string codes; dates are dates."""
    columns, rows = wide_stream(patients)
    return columns, list(rows)


def wide_stream(patients: QuerySet) -> tuple[list[Column], Iterator[list]]:
    """`wide_dataset` with its rows made as they are read (reports.loaders.iter_records, in chunks
    of patients): for the export files, which write each row as it comes."""
    return _columns(), _wide_rows(patients)


def _wide_rows(patients: QuerySet) -> Iterator[list]:
    limits = thresholds()  # study settings, as for the outcome tables
    names = [variable.name for variable in dictionary.forms()["patients"]]
    assert names[:2] == ["study_id", "centre"]  # the keys, from the loader's PatientData
    own_values = operator.itemgetter(*names[2:])  # the rest as entered
    no_events = [0] * (3 + len(AE_CODES))
    for data, entered, assessments in iter_records(patients):
        row: list = [data.study_id, data.centre, *[None if value == "" else value for value in own_values(entered)]]
        included = outcomes.is_included(data)
        t0 = data.reinduction_date
        anti_tnf = outcomes.distinct_anti_tnf(data)
        follow_up = data.follow_up
        days, event = outcomes.survival_time(data) if included else (None, None)
        row += [
            _flag(included),
            t0.year - data.birth_year if t0 else None,
            t0.year - data.diagnosis_year if t0 else None,
            montreal_age_class(data.diagnosis_year - data.birth_year),
            anti_tnf,
            _flag(anti_tnf >= 2),
            _flag("vedolizumab" in data.prior_agents),
            data.initial_induction_date,
            t0,
            outcomes.interval_months(data),
            data.maintenance_doses,
            data.interval_before,
            data.interval_after,
            _flag(data.corticosteroids_at_reinduction),
            data.immunomodulator,
            follow_up.status if follow_up else None,
            follow_up.last_follow_up_date if follow_up else None,
            follow_up.discontinuation_date if follow_up else None,
            (follow_up.discontinuation_reason or None) if follow_up else None,
            days,
            _flag(event),
        ]
        at_visits = (
            dict(zip(outcomes.FOLLOW_UP_VISITS, outcomes.visit_outcomes(data, limits), strict=True)) if included else {}
        )
        for visit in WEEKS:
            row += _visit_values(t0, assessments.get(visit), visit, at_visits.get(visit))
        reason = data.follow_up.discontinuation_reason if included else None
        row.append(_flag(reason == "nonresponse") if included else None)
        events = data.adverse_events
        if events:
            categories = Counter(event.category for event in events)
            row += [
                len(events),
                sum(1 for e in events if e.serious),
                sum(1 for e in events if e.led_to_discontinuation),
                *(categories.get(code, 0) for code in AE_CODES),
            ]
        else:  # most patients
            row += no_events
        yield row


DICTIONARY_HEADER = ["form", "variable", "label", "type", "choices", "min", "max", "required", "notes", "numeric_codes"]


def dictionary_rows() -> list[list[str]]:
    """The data dictionary, then the wide dataset's derived variables (form 'wide'), each with the
    numeric codes SPSS and Stata files use for it."""

    def numeric(column: Column) -> str:
        codes = column.numeric_codes or {}
        return "|".join(f"{number}={code}" for code, number in codes.items())

    rows = []
    for v in dictionary.variables():
        choices = "|".join(f"{code}={label}" for code, label in v.choices)
        column = Column(v.name, v.label, v.type, v.choices)
        required = "yes" if v.required else "no"
        rows.append([v.form, v.name, v.label, v.type, choices, v.min, v.max, required, v.notes, numeric(column)])
    patient_variables = {v.name for v in dictionary.forms()["patients"]}
    for column in _columns():
        if column.name in patient_variables:
            continue
        choices = "|".join(f"{code}={label}" for code, label in column.choices)
        row = ["wide", column.name, column.label, column.type, choices, "", "", "no", column.notes, numeric(column)]
        rows.append(row)
    return rows
