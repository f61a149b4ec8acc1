"""The study data as plain rows for reports/outcomes.py, in a fixed number of queries (one per
form) whatever the number of patients. Soft-deleted patients are left out (SPEC section 4).

The one loader of the study data: the outcome recompute reads a scope (all, or a centre), an export
reads the queryset of patients its user may see (`patients=`); `load_records` adds what the wide
export writes beyond the outcome module's view (the forms' values as entered), in the same queries.

The queries do the cheap reshaping in PostgreSQL (codes to booleans, decimals to floats, the HBI
total, doses reduced to the two induction dates and a count) so that 100,000 patients load in a
couple of seconds: per-row Python work is what costs at that size (docs/benchmarks.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any, NamedTuple

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import QuerySet

from cohort import crf
from cohort.access import ALL_SCOPE
from cohort.models import ACTIVE_PATIENT_SQL
from reports.outcomes import AdverseEventData, AssessmentData, FollowUpData, PatientData

PATIENTS = """
    SELECT p.id, p.study_id, c.code, p.sex, p.birth_year, p.diagnosis_year, p.montreal_location,
           p.upper_gi = 'yes', p.montreal_behaviour, p.perianal = 'yes', p.prior_resection = 'yes', p.smoking
           {details}
    FROM cohort_patient p JOIN cohort_centre c ON c.id = p.centre_id
    WHERE p.{active} {scope}
    ORDER BY p.study_id
"""
# Rows of a form belonging to the scope's (not deleted) patients.
FORM = """
    FROM {table} x JOIN cohort_patient p ON p.id = x.patient_id JOIN cohort_centre c ON c.id = p.centre_id
    WHERE p.{active} {scope}
"""
PRIOR_AGENTS = "SELECT x.patient_id, array_agg(x.agent ORDER BY x.id)" + FORM + " GROUP BY x.patient_id"
DOSES = (
    "SELECT x.patient_id,"
    " min(x.dose_date) FILTER (WHERE x.phase = 'initial_induction'),"
    " min(x.dose_date) FILTER (WHERE x.phase = 'reinduction'),"
    " count(*) FILTER (WHERE x.phase = 'maintenance')" + FORM + " GROUP BY x.patient_id"
)
REINDUCTION = (
    "SELECT x.patient_id, x.interval_before, x.interval_after, x.corticosteroids = 'yes', x.immunomodulator" + FORM
)
# hbi: the SQL form of the model's rule (cohort/models.py Assessment.hbi_total): the component sum
# when all five are given, else the entered total.
ASSESSMENTS = (
    "SELECT x.patient_id, x.visit, x.not_done = 'yes', x.assessment_date,"
    " CASE WHEN x.hbi_wellbeing IS NOT NULL AND x.hbi_pain IS NOT NULL AND x.hbi_stools IS NOT NULL"
    "  AND x.hbi_mass IS NOT NULL AND x.hbi_complications IS NOT NULL"
    "  THEN x.hbi_wellbeing + x.hbi_pain + x.hbi_stools + x.hbi_mass + x.hbi_complications ELSE x.hbi END,"
    " x.crp_mg_l::float8, x.fcal_ug_g::float8,"
    " CASE WHEN x.endoscopy_done = '' THEN NULL ELSE x.endoscopy_done = 'yes' END, x.ses_cd,"
    " CASE WHEN x.corticosteroids = '' THEN NULL ELSE x.corticosteroids = 'yes' END {details}" + FORM
)
FOLLOW_UP = (
    "SELECT x.patient_id, x.status, x.last_follow_up_date, x.discontinuation_date, x.discontinuation_reason" + FORM
)
ADVERSE_EVENTS = "SELECT x.patient_id, x.category, x.serious = 'yes', x.led_to_discontinuation = 'yes'" + FORM


class Record(NamedTuple):
    """A patient as the wide export reads it: the outcome module's view, and the values as entered
    (the patients form's fields; each visit's assessment fields, for the first row of a visit)."""

    data: PatientData
    patient: dict[str, Any]
    assessments: dict[str, dict[str, Any]]


def _fetch(cursor, sql: str, table: str | None, where: tuple[str, list], details: str = "") -> list[tuple]:
    condition, params = where
    cursor.execute(sql.format(table=table, scope=condition, details=details, active=ACTIVE_PATIENT_SQL), params)
    return cursor.fetchall()


def _where(scope: str, patients: QuerySet | None) -> tuple[str, list] | None:
    """The condition on p (the patient) for a scope or a queryset; None when the queryset is empty."""
    if patients is not None:
        try:
            sql, params = patients.values("pk").query.sql_with_params()
        except EmptyResultSet:  # .none(): nothing to read
            return None
        return f"AND p.id IN ({sql})", list(params)
    return ("", []) if scope == ALL_SCOPE else ("AND c.code = %s", [scope])


def load_patients(scope: str = ALL_SCOPE, *, patients: QuerySet | None = None) -> list[PatientData]:
    """Every (not deleted) patient of the scope ('all' or a centre code), or of the queryset when one
    is given, ordered by study ID."""
    return _load(_where(scope, patients), details=False)[0]


def load_records(patients: QuerySet) -> list[Record]:
    """The (not deleted) patients of the queryset with their entered values, ordered by study ID."""
    data, entered = _load(_where(ALL_SCOPE, patients), details=True)
    return [Record(patient, *values) for patient, values in zip(data, entered, strict=True)]


# Patients per chunk of `iter_records`: memory for 5,000 records, 7 queries per chunk.
CHUNK = 5000


def iter_records(patients: QuerySet, *, chunk: int = CHUNK) -> Iterator[Record]:
    """`load_records` of the queryset in chunks of patients by study ID (keyset: each chunk the next
    `chunk` study IDs), so an export of 100,000 patients holds one chunk's records at a time. The
    same rows in the same order as `load_records`; with fewer patients than `chunk`, the same 7
    queries."""
    patients = patients.active().order_by("study_id")
    after = None
    while True:
        page = patients if after is None else patients.filter(study_id__gt=after)
        records = load_records(page[:chunk])
        yield from records
        if len(records) < chunk:
            return
        after = records[-1].data.study_id


def _load(where: tuple[str, list] | None, *, details: bool) -> tuple[list[PatientData], list[tuple[dict, dict]]]:
    """PatientData per patient, and with `details` (entered patient values, entered assessments)."""
    if where is None:
        return [], []
    patient_fields = crf.FILES["patients"].fields if details else ()
    assessment_fields = crf.FILES["assessments"].fields if details else ()
    with connection.cursor() as cursor:
        base = _fetch(cursor, PATIENTS, None, where, "".join(f", p.{name}" for name in patient_fields))
        agents = dict(_fetch(cursor, PRIOR_AGENTS, "cohort_priorbiologic", where))
        doses = {row[0]: row[1:] for row in _fetch(cursor, DOSES, "cohort_ustekinumabdose", where)}
        forms = {row[0]: row[1:] for row in _fetch(cursor, REINDUCTION, "cohort_reinduction", where)}
        assessments = defaultdict(list)
        entered: dict[int, dict[str, dict]] = defaultdict(dict)
        extra = "".join(f", x.{name}" for name in assessment_fields)
        width = len(AssessmentData._fields) + 1
        for row in _fetch(cursor, ASSESSMENTS, "cohort_assessment", where, extra):
            assessments[row[0]].append(AssessmentData._make(row[1:width]))
            if details:
                entered[row[0]].setdefault(row[1], dict(zip(assessment_fields, row[width:], strict=True)))
        follow_ups = {
            row[0]: FollowUpData._make(row[1:]) for row in _fetch(cursor, FOLLOW_UP, "cohort_followup", where)
        }
        events = defaultdict(list)
        for row in _fetch(cursor, ADVERSE_EVENTS, "cohort_adverseevent", where):
            events[row[0]].append(AdverseEventData._make(row[1:]))

    no_doses = (None, None, 0)
    no_form = (None, None, None, None)
    result, details_of = [], []
    for pk, *values in base:
        if details:
            split = len(values) - len(patient_fields)
            demographics, own = values[:split], values[split:]
            details_of.append((dict(zip(patient_fields, own, strict=True)), entered.get(pk, {})))
        else:
            demographics = values
        initial, reinduction, maintenance = doses.get(pk, no_doses)
        interval_before, interval_after, steroids, immunomodulator = forms.get(pk, no_form)
        result.append(
            PatientData(
                *demographics,
                prior_agents=tuple(agents.get(pk, ())),
                initial_induction_date=initial,
                reinduction_date=reinduction,
                maintenance_doses=maintenance,
                interval_before=interval_before,
                interval_after=interval_after,
                corticosteroids_at_reinduction=steroids,
                immunomodulator=immunomodulator,
                assessments=tuple(assessments.get(pk, ())),
                follow_up=follow_ups.get(pk),
                adverse_events=tuple(events.get(pk, ())),
            )
        )
    return result, details_of
