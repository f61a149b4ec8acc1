"""The study data as plain rows for reports/outcomes.py, in a fixed number of queries (one per
form) whatever the number of patients. Soft-deleted patients are left out (SPEC section 4)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from django.db.models import QuerySet

from cohort.models import (
    HBI_COMPONENTS,
    AdverseEvent,
    Assessment,
    FollowUp,
    Patient,
    PriorBiologic,
    Reinduction,
    UstekinumabDose,
)
from reports.outcomes import AdverseEventData, AssessmentData, FollowUpData, PatientData

ALL = "all"


def _yes(value: str) -> bool | None:
    return None if value in ("", None) else value == "yes"


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _rows(model, scope: str, *fields: str) -> QuerySet:
    rows = model.objects.filter(patient__deleted_at__isnull=True)
    if scope != ALL:
        rows = rows.filter(patient__centre__code=scope)
    return rows.order_by().values_list("patient_id", *fields)


def load_patients(scope: str = ALL) -> list[PatientData]:
    """Every (not deleted) patient of the scope ('all' or a centre code), ordered by study ID."""
    patients = Patient.objects.all()
    if scope != ALL:
        patients = patients.filter(centre__code=scope)
    base = patients.order_by("study_id").values_list(
        "id",
        "study_id",
        "centre__code",
        "sex",
        "birth_year",
        "diagnosis_year",
        "montreal_location",
        "upper_gi",
        "montreal_behaviour",
        "perianal",
        "prior_resection",
        "smoking",
    )

    agents = defaultdict(list)
    for patient_id, agent in _rows(PriorBiologic, scope, "agent"):
        agents[patient_id].append(agent)

    initial, reinduction, maintenance = {}, {}, defaultdict(int)
    for patient_id, phase, date in _rows(UstekinumabDose, scope, "phase", "dose_date"):
        if phase == "initial_induction":
            initial[patient_id] = date
        elif phase == "reinduction":
            reinduction[patient_id] = date
        else:
            maintenance[patient_id] += 1

    forms = {
        patient_id: row
        for patient_id, *row in _rows(
            Reinduction, scope, "interval_before", "interval_after", "corticosteroids", "immunomodulator"
        )
    }

    assessments = defaultdict(list)
    fields = ("visit", "not_done", "assessment_date", *HBI_COMPONENTS, "hbi", "crp_mg_l", "fcal_ug_g")
    for patient_id, visit, not_done, date, *rest in _rows(
        Assessment, scope, *fields, "endoscopy_done", "ses_cd", "corticosteroids"
    ):
        parts, hbi = rest[:5], rest[5]
        crp, fcal, endoscopy, ses_cd, steroids = rest[6:]
        total = sum(parts) if all(part is not None for part in parts) else hbi  # Assessment.hbi_total
        assessments[patient_id].append(
            AssessmentData(
                visit=visit,
                not_done=not_done == "yes",
                assessment_date=date,
                hbi=total,
                crp_mg_l=_float(crp),
                fcal_ug_g=_float(fcal),
                endoscopy_done=_yes(endoscopy),
                ses_cd=ses_cd,
                corticosteroids=_yes(steroids),
            )
        )

    follow_ups = {
        patient_id: FollowUpData(
            status=status, last_follow_up_date=last, discontinuation_date=stop, discontinuation_reason=reason
        )
        for patient_id, status, last, stop, reason in _rows(
            FollowUp, scope, "status", "last_follow_up_date", "discontinuation_date", "discontinuation_reason"
        )
    }

    events = defaultdict(list)
    for patient_id, category, serious, led in _rows(
        AdverseEvent, scope, "category", "serious", "led_to_discontinuation"
    ):
        events[patient_id].append(
            AdverseEventData(category=category, serious=serious == "yes", led_to_discontinuation=led == "yes")
        )

    result = []
    for (
        pk,
        study_id,
        centre,
        sex,
        birth,
        diagnosis,
        location,
        upper_gi,
        behaviour,
        perianal,
        resection,
        smoking,
    ) in base:
        form = forms.get(pk)
        result.append(
            PatientData(
                study_id=study_id,
                centre=centre,
                sex=sex,
                birth_year=birth,
                diagnosis_year=diagnosis,
                montreal_location=location,
                upper_gi=upper_gi == "yes",
                montreal_behaviour=behaviour,
                perianal=perianal == "yes",
                prior_resection=resection == "yes",
                smoking=smoking,
                prior_agents=tuple(agents.get(pk, ())),
                initial_induction_date=initial.get(pk),
                reinduction_date=reinduction.get(pk),
                maintenance_doses=maintenance.get(pk, 0),
                interval_before=form[0] if form else None,
                interval_after=form[1] if form else None,
                corticosteroids_at_reinduction=(form[2] == "yes") if form else None,
                immunomodulator=form[3] if form else None,
                assessments=tuple(assessments.get(pk, ())),
                follow_up=follow_ups.get(pk),
                adverse_events=tuple(events.get(pk, ())),
            )
        )
    return result
