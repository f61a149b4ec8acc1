"""Each rule of SPEC section 3 and the data dictionary: a valid case, an invalid case and its message.

Within-row rules are database constraints: each is shown refused by the validation layer (the
message at its field) and by PostgreSQL itself when a bulk update bypasses Python."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.db import IntegrityError, transaction

from cohort import crf, validators
from cohort.display import date_text as shown
from cohort.models import (
    HBI_COMPONENTS,
    AdverseEvent,
    Assessment,
    Centre,
    FollowUp,
    Patient,
    PriorBiologic,
    Reinduction,
    UstekinumabDose,
)
from cohort.services import patient_record
from tests.base import INITIAL, T0, make_patient

pytestmark = pytest.mark.django_db


def _row(patient, model, **lookup):
    if model is Patient:
        return Patient.objects.get(pk=patient.pk)
    return model.objects.filter(patient=patient, **lookup).first()


# (model, lookup of the row, valid change, invalid change, field, message fragment, constraint name)
ROW_RULES = [
    (Patient, {}, {"consent": "yes"}, {"consent": "no"}, "consent", "must be yes", "patient_consent_yes"),
    (
        Patient,
        {},
        {"birth_year": 1920},
        {"birth_year": 1919},
        "birth_year",
        "1920 or later",
        "patient_birth_year_range",
    ),
    (
        Patient,
        {},
        {"diagnosis_year": 1985},
        {"diagnosis_year": 1984},
        "diagnosis_year",
        "on or after the year of birth",
        "patient_diagnosis_after_birth",
    ),
    (
        Patient,
        {},
        {"enrolment_date": dt.date(2016, 1, 1)},
        {"enrolment_date": dt.date(2015, 12, 31)},
        "enrolment_date",
        "on or after 2016-01-01",
        "patient_enrolment_date_min",
    ),
    (Patient, {}, {"sex": "M"}, {"sex": "X"}, "sex", "allowed: F, M", "patient_sex_code"),
    (
        Patient,
        {},
        {"study_id": "AMC-001"},
        {"study_id": "AMC-1"},
        "study_id",
        "3 to 5 digit",
        "patient_study_id_pattern",
    ),
    (
        PriorBiologic,
        {"agent": "infliximab"},
        {"agent": "other", "agent_other": "ustekinumab biosimilar trial"},
        {"agent": "other", "agent_other": ""},
        "agent_other",
        "required when the agent is “other”",
        "priorbiologic_agent_other_iff_other",
    ),
    (
        PriorBiologic,
        {"agent": "infliximab"},
        {"agent_other": ""},
        {"agent_other": "something"},
        "agent_other",
        "empty otherwise",
        "priorbiologic_agent_other_iff_other",
    ),
    (
        PriorBiologic,
        {"agent": "infliximab"},
        {"stop_date": dt.date(2015, 1, 1)},
        {"stop_date": dt.date(2014, 12, 31)},
        "stop_date",
        "on or after the start date",
        "priorbiologic_stop_after_start",
    ),
    (
        UstekinumabDose,
        {"phase": "reinduction"},
        {"dose_mg": 130},
        {"dose_mg": 129},
        "dose_mg",
        "intravenous dose must be between 130 and 1040",
        "dose_iv_range",
    ),
    (
        UstekinumabDose,
        {"phase": "maintenance"},
        {"dose_mg": 180},
        {"dose_mg": 200},
        "dose_mg",
        "subcutaneous dose must be between 45 and 180",
        "dose_sc_range",
    ),
    (
        UstekinumabDose,
        {"phase": "reinduction"},
        {"route": "iv"},
        {"route": "sc", "dose_mg": 90},
        "route",
        "must be intravenous",
        "dose_induction_is_iv",
    ),
    (
        UstekinumabDose,
        {"phase": "reinduction"},
        {"weight_kg": Decimal("250")},
        {"weight_kg": Decimal("250.5")},
        "weight_kg",
        "between 25 and 250",
        "dose_weight_kg_range",
    ),
    (
        Reinduction,
        {},
        {"initial_response": "yes"},
        {"initial_response": "no"},
        "initial_response",
        "must be yes",
        "reinduction_initial_response_yes",
    ),
    (
        Reinduction,
        {},
        {"lor_clinical": "no", "lor_endoscopic": "yes"},
        {"lor_clinical": "no"},
        "lor_clinical",
        "at least one of",
        "reinduction_lor_kind",
    ),
    (
        Assessment,
        {"visit": "week_8"},
        {"hbi_pain": 3},
        {"hbi_pain": 4},
        "hbi_pain",
        "between 0 and 3",
        "assessment_hbi_pain_range",
    ),
    (
        Assessment,
        {"visit": "week_8"},
        {
            "hbi": None,
            "hbi_wellbeing": 1,
            "hbi_pain": 1,
            "hbi_stools": 2,
            "hbi_mass": 0,
            "hbi_complications": 1,
        },
        {"hbi": 4, "hbi_wellbeing": 1, "hbi_pain": 1, "hbi_stools": 2, "hbi_mass": 0, "hbi_complications": 1},
        "hbi",
        "sum of its five components",
        "assessment_hbi_is_sum",
    ),
    (
        Assessment,
        {"visit": "week_8"},
        {"endoscopy_done": "yes", "ses_cd": 2},
        {"endoscopy_done": "no", "ses_cd": 2},
        "ses_cd",
        "only be given when an endoscopy was done",
        "assessment_ses_cd_needs_endoscopy",
    ),
    (
        Assessment,
        {"visit": "week_52"},
        {
            "not_done": "yes",
            "not_done_reason": "missed",
            "hbi": None,
            "crp_mg_l": None,
            "fcal_ug_g": None,
            "corticosteroids": "",
        },
        {"not_done": "yes", "not_done_reason": "missed"},
        "not_done",
        "no measurements",
        "assessment_not_done_no_measurements",
    ),
    (
        Assessment,
        {"visit": "week_52"},
        {
            "not_done": "yes",
            "not_done_reason": "lost_to_follow_up",
            "hbi": None,
            "crp_mg_l": None,
            "fcal_ug_g": None,
            "corticosteroids": "",
        },
        {
            "not_done": "yes",
            "not_done_reason": "",
            "hbi": None,
            "crp_mg_l": None,
            "fcal_ug_g": None,
            "corticosteroids": "",
        },
        "not_done_reason",
        "required when the visit was not done",
        "assessment_not_done_reason_required",
    ),
    (
        Assessment,
        {"visit": "week_20"},
        {"assessment_date": T0 + dt.timedelta(days=140)},
        {"assessment_date": None},
        "assessment_date",
        "required unless the visit was not done",
        "assessment_date_required",
    ),
    (
        Assessment,
        {"visit": "week_20"},
        {"crp_mg_l": Decimal("500")},
        {"crp_mg_l": Decimal("500.5")},
        "crp_mg_l",
        "between 0 and 500",
        "assessment_crp_mg_l_range",
    ),
    (
        FollowUp,
        {},
        {
            "status": "discontinued",
            "discontinuation_date": T0 + dt.timedelta(days=100),
            "discontinuation_reason": "nonresponse",
        },
        {"status": "discontinued", "discontinuation_reason": "nonresponse"},
        "discontinuation_date",
        "required when the status is discontinued",
        "followup_discontinuation_date_required",
    ),
    (
        FollowUp,
        {},
        {"status": "ongoing"},
        {"discontinuation_reason": "surgery"},
        "discontinuation_reason",
        "empty unless the status is discontinued",
        "followup_discontinuation_reason_only_if_discontinued",
    ),
    (
        FollowUp,
        {},
        {
            "status": "discontinued",
            "discontinuation_date": T0 + dt.timedelta(days=400),
            "discontinuation_reason": "surgery",
        },
        {
            "status": "discontinued",
            "discontinuation_date": T0 + dt.timedelta(days=401),
            "discontinuation_reason": "surgery",
        },
        "discontinuation_date",
        "on or before the date of last follow-up",
        "followup_discontinuation_before_last_follow_up",
    ),
    (
        AdverseEvent,
        {},
        {"serious": "yes"},
        {"serious": "nah"},
        "serious",
        "allowed: yes, no",
        "adverseevent_serious_code",
    ),
]


@pytest.mark.parametrize(
    "model, lookup, valid, invalid, field, message, constraint",
    ROW_RULES,
    ids=[f"{case[0].__name__}.{case[4]}:{case[6]}" for case in ROW_RULES],
)
def test_it_refuses_each_row_rule_at_its_field(patient, model, lookup, valid, invalid, field, message, constraint):
    row = _row(patient, model, **lookup)
    for name, value in valid.items():
        setattr(row, name, value)
    assert validators.row_problems(row) == []

    row = _row(patient, model, **lookup)
    for name, value in invalid.items():
        setattr(row, name, value)
    problems = validators.row_problems(row)
    assert [(p.field, message in p.message) for p in problems] == [(field, True)], problems


@pytest.mark.parametrize(
    "model, lookup, invalid, constraint",
    [(case[0], case[1], case[3], case[6]) for case in ROW_RULES],
    ids=[case[6] + f"-{i}" for i, case in enumerate(ROW_RULES)],
)
def test_it_refuses_each_row_rule_in_the_database(patient, model, lookup, invalid, constraint):
    manager = Patient.all_objects if model is Patient else model.objects
    row = _row(patient, model, **lookup)
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        manager.filter(pk=row.pk).update(**invalid)
    assert constraint in str(excinfo.value)


def test_it_allows_only_one_visit_of_each_kind_per_patient(patient):
    with pytest.raises(IntegrityError, match="assessment_one_per_visit"), transaction.atomic():
        Assessment.objects.create(patient=patient, visit="week_8", not_done="yes", not_done_reason="missed")


def test_it_allows_only_one_reinduction_dose_per_patient(patient):
    with pytest.raises(IntegrityError, match="dose_one_reinduction"), transaction.atomic():
        UstekinumabDose.objects.create(patient=patient, dose_date=T0, phase="reinduction", route="iv", dose_mg=390)


def test_it_refuses_a_lowercase_centre_code_in_the_database():
    with pytest.raises(IntegrityError, match="centre_code_pattern"), transaction.atomic():
        Centre.objects.create(code="amc", name="lower case")


# --- cross-form rules -----------------------------------------------------------------------------


def _problems(record):
    return [(type(p.row).__name__, p.field, p.message) for p in validators.cross_form_problems(record)]


def test_a_complete_valid_record_has_no_problems(patient):
    assert validators.check(patient_record(patient)) == []
    assert validators.soft_flags(patient_record(patient)) == []


def test_it_requires_the_study_id_to_start_with_the_centre_code(patient):
    record = patient_record(patient)
    record.patient.study_id = "UMCU-001"
    assert _problems(record) == [("Patient", "study_id", "must start with the centre code and a hyphen (AMC-).")]


def test_it_requires_the_reinduction_after_the_initial_induction(patient):
    record = patient_record(patient)
    reinduction = next(d for d in record.doses if d.phase == "reinduction")
    reinduction.dose_date = INITIAL
    problems = _problems(record)
    assert (
        "UstekinumabDose",
        "dose_date",
        f"the re-induction must be after the initial induction ({shown(INITIAL)}).",
    ) in (problems)


def test_it_refuses_a_second_initial_induction(patient):
    record = patient_record(patient)
    record.doses.append(
        UstekinumabDose(patient=patient, dose_date=INITIAL, phase="initial_induction", route="iv", dose_mg=390)
    )
    assert _problems(record) == [
        ("UstekinumabDose", "phase", "a patient has exactly one initial induction dose; this is a second.")
    ]


def test_a_complete_record_needs_its_initial_induction_dose(patient):
    record = patient_record(patient)
    record.doses = [dose for dose in record.doses if dose.phase != "initial_induction"]
    record.follow_up.form_status = "complete"
    assert ("FollowUp", "status") in [(row, field) for row, field, _message in _problems(record)]
    assert any("a complete record has exactly one initial induction dose" in m for _r, _f, m in _problems(record))

    record.follow_up.form_status = "incomplete"  # while the record is still being built: allowed
    assert ("FollowUp", "status") not in [(row, field) for row, field, _message in _problems(record)]


@pytest.mark.parametrize(
    "lor_date, ok",
    [(INITIAL, True), (T0, True), (INITIAL - dt.timedelta(days=1), False), (T0 + dt.timedelta(1), False)],
)
def test_it_requires_the_loss_of_response_between_the_two_inductions(patient, lor_date, ok):
    record = patient_record(patient)
    record.reinduction.lor_date = lor_date
    expected = (
        []
        if ok
        else [
            (
                "Reinduction",
                "lor_date",
                f"must lie between the initial induction ({shown(INITIAL)}) and the re-induction ({shown(T0)})"
                " dose dates.",
            )
        ]
    )
    assert _problems(record) == expected


def test_it_asks_for_the_doses_before_the_reinduction_form(people):
    patient = make_patient(people["centre_a"], people["nurse_a"])
    record = crf.PatientRecord(
        patient,
        reinduction=Reinduction(patient=patient, lor_date=T0, initial_response="yes", lor_clinical="yes"),
    )
    assert _problems(record) == [
        (
            "Reinduction",
            "lor_date",
            "record the initial induction and re-induction dose first: the date must lie between them.",
        )
    ]


def test_it_requires_prior_biologics_to_stop_before_the_first_ustekinumab_dose(patient):
    record = patient_record(patient)
    record.prior_biologics[1].stop_date = INITIAL
    assert _problems(record) == [
        ("PriorBiologic", "stop_date", f"must be before the first ustekinumab dose ({shown(INITIAL)}).")
    ]
    record.prior_biologics[1].stop_date = INITIAL - dt.timedelta(days=1)
    assert _problems(record) == []


@pytest.mark.parametrize(
    "visit, day, ok",
    [
        ("week_0", -14, True),
        ("week_0", 14, True),
        ("week_0", -15, False),
        ("week_0", 15, False),
        ("week_8", 0, True),
        ("week_8", -1, False),
    ],
)
def test_it_requires_assessments_on_or_after_the_reinduction(patient, visit, day, ok):
    record = patient_record(patient)
    assessment = next(a for a in record.assessments if a.visit == visit)
    assessment.assessment_date = T0 + dt.timedelta(days=day)
    problems = _problems(record)
    assert (problems == []) is ok, problems
    if not ok:
        assert problems[0][:2] == ("Assessment", "assessment_date")


def test_it_refuses_two_assessments_for_one_visit(patient):
    record = patient_record(patient)
    record.assessments.append(Assessment(patient=patient, visit="week_8", not_done="yes", not_done_reason="missed"))
    assert _problems(record) == [("Assessment", "visit", "this patient already has a week 8 assessment.")]


def test_it_requires_adverse_events_on_or_after_the_reinduction(patient):
    record = patient_record(patient)
    record.adverse_events[0].onset_date = T0 - dt.timedelta(days=1)
    assert _problems(record) == [
        ("AdverseEvent", "onset_date", f"must be on or after the re-induction dose date ({shown(T0)}).")
    ]


@pytest.mark.parametrize(
    "answer, events, form_status, problem",
    [
        ("no", 1, "incomplete", "is no, but 1 adverse event(s) are recorded."),
        ("no", 0, "complete", None),
        ("yes", 1, "complete", None),
        ("yes", 0, "incomplete", None),  # still being entered
        (
            "yes",
            0,
            "complete",
            "is yes: record the adverse events (adverse events form) first, or mark this form incomplete.",
        ),
        ("", 0, "complete", None),
    ],
)
def test_the_any_adverse_event_answer_agrees_with_the_adverse_events(patient, answer, events, form_status, problem):
    record = patient_record(patient)
    record.adverse_events = record.adverse_events[:events]
    record.follow_up.adverse_events_any = answer
    record.follow_up.form_status = form_status
    expected = [("FollowUp", "adverse_events_any", problem)] if problem else []
    assert [p for p in _problems(record) if p[1] == "adverse_events_any"] == expected


def test_it_requires_follow_up_on_or_after_the_reinduction_and_every_assessment(patient):
    record = patient_record(patient)
    record.follow_up.last_follow_up_date = T0 + dt.timedelta(days=300)
    assert _problems(record) == [
        (
            "FollowUp",
            "last_follow_up_date",
            "must be on or after every assessment date"
            f" (the week 52 assessment is on {shown(T0 + dt.timedelta(364))}).",
        )
    ]
    record.follow_up.status = "discontinued"
    record.follow_up.last_follow_up_date = T0 + dt.timedelta(days=400)
    record.follow_up.discontinuation_date = T0 - dt.timedelta(days=1)
    assert _problems(record) == [
        ("FollowUp", "discontinuation_date", f"must be on or after the re-induction dose date ({shown(T0)}).")
    ]


@time_machine.travel(dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC), tick=False)
def test_it_refuses_dates_after_today_and_years_after_this_year(patient):
    row = Patient.objects.get(pk=patient.pk)
    row.enrolment_date = dt.date(2024, 6, 2)
    row.birth_year = 2025
    problems = {(p.field, p.message) for p in validators.row_problems(row)}
    assert problems == {
        ("enrolment_date", "must not be after today (1 Jun 2024)."),
        ("birth_year", "must not be after this year (2024)."),
    }


# --- soft checks ----------------------------------------------------------------------------------


def test_it_flags_an_out_of_window_visit_but_saves_it(patient):
    assessment = Assessment.objects.get(patient=patient, visit="week_8")
    assessment.assessment_date = T0 + dt.timedelta(days=90)
    assessment.save()
    record = patient_record(patient)
    assert validators.check(record) == []
    flags = [(type(f.row).__name__, f.field, f.message) for f in validators.soft_flags(record)]
    assert flags == [
        (
            "Assessment",
            "assessment_date",
            "day 90 after re-induction is outside the week 8 window (days 42 to 84).",
        )
    ]


@pytest.mark.parametrize(
    "weight, dose, flagged",
    [
        ("55", 260, False),
        ("55.1", 260, True),
        ("55.1", 390, False),
        ("85", 390, False),
        ("85.1", 520, False),
        ("85.1", 390, True),
        (None, 300, False),
    ],
)
def test_it_flags_an_iv_dose_off_the_weight_band(patient, weight, dose, flagged):
    row = UstekinumabDose.objects.get(patient=patient, phase="reinduction")
    row.weight_kg = Decimal(weight) if weight else None
    row.dose_mg = dose
    row.save()
    flags = validators.soft_flags(patient_record(patient))
    assert bool(flags) is flagged
    if flagged:
        assert flags[0].field == "dose_mg" and "weight-based dose" in flags[0].message


def test_derived_values_are_computed(patient):
    assessment = Assessment(hbi_wellbeing=1, hbi_pain=2, hbi_stools=3, hbi_mass=0, hbi_complications=1)
    assert assessment.hbi_total == 7
    assert Assessment(hbi=6, hbi_pain=2).hbi_total == 6
    assert Patient(birth_year=1990, diagnosis_year=2006).montreal_age == "A1"
    assert Patient(birth_year=1990, diagnosis_year=2007).montreal_age == "A2"
    assert Patient(birth_year=1960, diagnosis_year=2001).montreal_age == "A3"
    assert patient.anti_tnf_count() == 2
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    assert week_8.study_day(T0) == 56 and week_8.in_window(T0) is True


@pytest.mark.parametrize(
    ("entered", "parts", "filled"),
    [
        (None, (1, 2, 3, 0, 1), 7),  # all five given, no total: the total is their sum
        (None, (1, 2, None, 0, 1), None),  # a component missing: nothing to derive
        (6, (None,) * 5, 6),  # only the total known: kept
        (9, (1, 2, 3, 0, 1), 9),  # a differing total is kept, for assessment_hbi_is_sum to refuse
    ],
)
def test_the_hbi_total_is_filled_from_complete_components_only(entered, parts, filled):
    assessment = Assessment(hbi=entered, **dict(zip(HBI_COMPONENTS, parts, strict=True)))
    assessment.fill_hbi()
    assert assessment.hbi == filled


def test_a_reason_for_change_is_needed_for_a_stored_form_marked_complete(patient):
    follow_up = FollowUp.objects.get(patient=patient)
    assert [FollowUp(form_status=status).needs_reason_for_change for status in ("incomplete", "complete")] == [
        False,
        False,
    ]
    follow_up.form_status = "incomplete"
    assert follow_up.needs_reason_for_change is False
    follow_up.form_status = "complete"
    assert follow_up.needs_reason_for_change is True


def test_check_runs_the_rows_rules_and_the_records_unless_a_cell_was_skipped(patient):
    record = patient_record(patient)
    follow_up = record.follow_up
    follow_up.last_follow_up_date = T0 - dt.timedelta(days=1)  # fine in its row, before the re-induction
    cross_form = {(p.field, p.message) for p in validators.check(record, [follow_up])}
    assert ("last_follow_up_date", f"must be on or after the re-induction dose date ({shown(T0)}).") in cross_form
    assert validators.check(record, [follow_up], cross_form=False) == []
    # An unreadable import cell: already reported, so the rules that read it and the cross-form
    # rules (which would repeat it in other words) are left out.
    follow_up.status = "unreadable"
    assert validators.check(record, [follow_up], skip=lambda row: {"status"}) == []
    assert [p.field for p in validators.check(record, [follow_up], cross_form=False)] == ["status"]
