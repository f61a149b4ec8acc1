"""The study data as plain rows for reports/outcomes.py, in a fixed number of queries (one per
form) whatever the number of patients. Soft-deleted patients are left out (SPEC section 4).

The queries do the cheap reshaping in PostgreSQL (codes to booleans, decimals to floats, the HBI
total, doses reduced to the two induction dates and a count) so that 100,000 patients load in a
couple of seconds: per-row Python work is what costs at that size (docs/benchmarks.md).
"""

from __future__ import annotations

from collections import defaultdict

from django.db import connection

from reports.outcomes import AdverseEventData, AssessmentData, FollowUpData, PatientData

ALL = "all"

PATIENTS = """
    SELECT p.id, p.study_id, c.code, p.sex, p.birth_year, p.diagnosis_year, p.montreal_location,
           p.upper_gi = 'yes', p.montreal_behaviour, p.perianal = 'yes', p.prior_resection = 'yes', p.smoking
    FROM cohort_patient p JOIN cohort_centre c ON c.id = p.centre_id
    WHERE p.deleted_at IS NULL {scope}
    ORDER BY p.study_id
"""
# Rows of a form belonging to the scope's (not deleted) patients.
FORM = """
    FROM {table} x JOIN cohort_patient p ON p.id = x.patient_id JOIN cohort_centre c ON c.id = p.centre_id
    WHERE p.deleted_at IS NULL {scope}
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
    " CASE WHEN x.corticosteroids = '' THEN NULL ELSE x.corticosteroids = 'yes' END" + FORM
)
FOLLOW_UP = (
    "SELECT x.patient_id, x.status, x.last_follow_up_date, x.discontinuation_date, x.discontinuation_reason" + FORM
)
ADVERSE_EVENTS = "SELECT x.patient_id, x.category, x.serious = 'yes', x.led_to_discontinuation = 'yes'" + FORM


def _fetch(cursor, sql: str, table: str | None, scope: str) -> list[tuple]:
    condition = "" if scope == ALL else "AND c.code = %s"
    cursor.execute(sql.format(table=table, scope=condition), [] if scope == ALL else [scope])
    return cursor.fetchall()


def load_patients(scope: str = ALL) -> list[PatientData]:
    """Every (not deleted) patient of the scope ('all' or a centre code), ordered by study ID."""
    with connection.cursor() as cursor:
        base = _fetch(cursor, PATIENTS, None, scope)
        agents = dict(_fetch(cursor, PRIOR_AGENTS, "cohort_priorbiologic", scope))
        doses = {row[0]: row[1:] for row in _fetch(cursor, DOSES, "cohort_ustekinumabdose", scope)}
        forms = {row[0]: row[1:] for row in _fetch(cursor, REINDUCTION, "cohort_reinduction", scope)}
        assessments = defaultdict(list)
        for row in _fetch(cursor, ASSESSMENTS, "cohort_assessment", scope):
            assessments[row[0]].append(AssessmentData._make(row[1:]))
        follow_ups = {
            row[0]: FollowUpData._make(row[1:]) for row in _fetch(cursor, FOLLOW_UP, "cohort_followup", scope)
        }
        events = defaultdict(list)
        for row in _fetch(cursor, ADVERSE_EVENTS, "cohort_adverseevent", scope):
            events[row[0]].append(AdverseEventData._make(row[1:]))

    no_doses = (None, None, 0)
    no_form = (None, None, None, None)
    result = []
    for pk, *demographics in base:
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
    return result
