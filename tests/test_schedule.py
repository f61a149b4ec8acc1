"""The visit schedule and a patient's progress (cohort.casebook), from unsaved rows and a pinned day.

SPEC section 3: visits at week 0, 8, 20 and 52 after t0 (the re-induction dose), in the inclusive
windows below. The windows are written out here rather than read from VISIT_SCHEDULE, so a window
that moves by a day fails these tests. No database: the rows are never saved.
"""

from __future__ import annotations

import datetime as dt

import pytest

from cohort.casebook import progress, visit_schedule
from cohort.choices import FollowUpStatus, FormStatus, Phase, Route
from cohort.models import Assessment, FollowUp, Patient, UstekinumabDose
from cohort.validators import PatientRecord

TODAY = dt.date(2026, 6, 1)
INITIAL = dt.date(2023, 3, 1)
WINDOWS = {"week_0": (-14, 14), "week_8": (42, 84), "week_20": (112, 168), "week_52": (308, 420)}


def days(date: dt.date, n: int) -> dt.date:
    return date + dt.timedelta(days=n)


def dose(phase: str, date: dt.date | None) -> UstekinumabDose:
    return UstekinumabDose(phase=phase, route=Route.IV, dose_date=date, dose_mg=390, weight_kg=70)


def assessed(visit: str, date: dt.date | None, **fields) -> Assessment:
    return Assessment(visit=visit, assessment_date=date, not_done="no", **fields)


def not_done(visit: str) -> Assessment:
    return Assessment(visit=visit, not_done="yes", not_done_reason="missed")


def make_record(t0: dt.date | None, *assessments: Assessment, follow_up: FollowUp | None = None) -> PatientRecord:
    doses = [dose(Phase.INITIAL_INDUCTION, INITIAL)]
    if t0 is not None:
        doses.append(dose(Phase.REINDUCTION, t0))
    return PatientRecord(
        patient=Patient(study_id="AMC-001"), doses=doses, assessments=list(assessments), follow_up=follow_up
    )


def states(record: PatientRecord, today: dt.date = TODAY) -> dict[str, str]:
    return {visit.visit: visit.state for visit in visit_schedule(record, today)}


def test_it_dates_the_visits_and_their_windows_from_the_reinduction_dose():
    t0 = dt.date(2025, 1, 6)
    week_8 = assessed("week_8", dt.date(2025, 3, 3))

    schedule = visit_schedule(make_record(t0, week_8), TODAY)

    assert [(v.visit, v.nominal, v.window_start, v.window_end) for v in schedule] == [
        ("week_0", dt.date(2025, 1, 6), dt.date(2024, 12, 23), dt.date(2025, 1, 20)),
        ("week_8", dt.date(2025, 3, 3), dt.date(2025, 2, 17), dt.date(2025, 3, 31)),
        ("week_20", dt.date(2025, 5, 26), dt.date(2025, 4, 28), dt.date(2025, 6, 23)),
        ("week_52", dt.date(2026, 1, 5), dt.date(2025, 11, 10), dt.date(2026, 3, 2)),
    ]
    assert [v.assessment_date for v in schedule] == [None, dt.date(2025, 3, 3), None, None]


# (visit, day after t0 that is today, state of the visit while it has no assessment)
DUE_EDGES = [
    (visit, day, state)
    for visit, (low, high) in WINDOWS.items()
    for day, state in ((low - 1, "upcoming"), (low, "due"), (high, "due"), (high + 1, "overdue"))
]


@pytest.mark.parametrize(("visit", "day", "state"), DUE_EDGES)
def test_it_says_a_missing_visit_is_due_from_the_first_to_the_last_day_of_its_window(visit, day, state):
    t0 = days(TODAY, -day)  # today is `day` days after t0

    assert states(make_record(t0))[visit] == state


# (visit, study day of the assessment, state)
DATE_EDGES = [
    (visit, day, state)
    for visit, (low, high) in WINDOWS.items()
    for day, state in ((low - 1, "out_of_window"), (low, "done"), (high, "done"), (high + 1, "out_of_window"))
]


@pytest.mark.parametrize(("visit", "day", "state"), DATE_EDGES)
def test_it_says_an_assessment_outside_its_window_is_out_of_window(visit, day, state):
    t0 = dt.date(2025, 1, 6)

    assert states(make_record(t0, assessed(visit, days(t0, day))))[visit] == state


def test_it_says_a_visit_marked_not_done_is_not_done_whatever_the_dates():
    t0 = days(TODAY, -200)
    record = make_record(t0, not_done("week_0"), not_done("week_8"), assessed("week_20", days(t0, 140)))

    assert states(record) == {"week_0": "not_done", "week_8": "not_done", "week_20": "done", "week_52": "upcoming"}
    assert states(make_record(None, not_done("week_8")))["week_8"] == "not_done"


def test_it_leaves_the_visits_unscheduled_without_a_reinduction_dose():
    record = make_record(None)
    record.doses.append(dose(Phase.MAINTENANCE, days(INITIAL, 56)))

    schedule = visit_schedule(record, TODAY)

    assert {v.visit: v.state for v in schedule} == dict.fromkeys(WINDOWS, "unscheduled")
    assert {(v.nominal, v.window_start, v.window_end) for v in schedule} == {(None, None, None)}


def test_it_leaves_the_visits_unscheduled_while_the_reinduction_dose_has_no_date():
    record = make_record(None)
    record.doses.append(dose(Phase.REINDUCTION, None))

    assert set(states(record).values()) == {"unscheduled"}


def test_it_counts_an_assessment_as_done_when_its_window_cannot_be_told():
    # No t0, so no window to be outside of: no 'out of window' without a re-induction date.
    record = make_record(None, assessed("week_8", days(INITIAL, 500)))

    assert states(record) == {
        "week_0": "unscheduled",
        "week_8": "done",
        "week_20": "unscheduled",
        "week_52": "unscheduled",
    }


def test_it_expects_no_more_visits_once_ustekinumab_is_discontinued():
    t0 = days(TODAY, -400)
    stopped = FollowUp(
        status=FollowUpStatus.DISCONTINUED,
        last_follow_up_date=days(t0, 100),
        discontinuation_date=days(t0, 90),
        discontinuation_reason="nonresponse",
    )
    visits = (assessed("week_0", t0), assessed("week_8", days(t0, 85)))

    assert states(make_record(t0, *visits, follow_up=stopped)) == {
        "week_0": "done",
        "week_8": "out_of_window",
        "week_20": "ended",
        "week_52": "ended",
    }


def test_it_keeps_expecting_the_visits_while_ustekinumab_continues():
    t0 = days(TODAY, -400)
    ongoing = FollowUp(status=FollowUpStatus.ONGOING, last_follow_up_date=days(t0, 100))
    visits = (assessed("week_0", t0), assessed("week_8", days(t0, 56)))

    assert states(make_record(t0, *visits, follow_up=ongoing)) == {
        "week_0": "done",
        "week_8": "done",
        "week_20": "overdue",
        "week_52": "due",
    }


def test_progress_names_the_first_visit_still_expected_and_counts_the_overdue_ones():
    t0 = days(TODAY, -170)  # week 8 and week 20 are past their windows, week 52 is to come
    record = make_record(t0, assessed("week_0", t0))

    result = progress(record, TODAY)

    assert result.next_visit is not None
    assert (result.next_visit.visit, result.next_visit.state) == ("week_8", "overdue")
    assert result.overdue == 2


def test_progress_names_a_due_visit_before_an_upcoming_one():
    t0 = days(TODAY, -112)
    record = make_record(t0, assessed("week_0", t0), assessed("week_8", days(t0, 56)))

    result = progress(record, TODAY)

    assert (result.next_visit.visit, result.next_visit.state) == ("week_20", "due")
    assert result.next_visit.window_start == TODAY
    assert result.overdue == 0


def test_progress_expects_nothing_once_every_visit_is_accounted_for():
    t0 = days(TODAY, -400)
    stopped = FollowUp(status=FollowUpStatus.DISCONTINUED, last_follow_up_date=days(t0, 30))
    record = make_record(t0, assessed("week_0", t0), follow_up=stopped)

    result = progress(record, TODAY)

    assert result.next_visit is None
    assert result.overdue == 0


def test_progress_counts_complete_forms_and_flags():
    t0 = days(TODAY, -100)
    week_8 = assessed("week_8", days(t0, 85), form_status=FormStatus.COMPLETE)  # flagged: day 85
    record = make_record(t0, assessed("week_0", t0, form_status=FormStatus.COMPLETE), week_8)
    record.patient.form_status = FormStatus.COMPLETE

    result = progress(record, TODAY)

    # Patient and week 0 complete; week 8 is flagged, not complete; the rest incomplete or not started.
    assert (result.complete, result.total, result.flags) == (2, 10, 1)
    assert (result.next_visit.visit, result.overdue) == ("week_20", 0)
    assert result.next_visit.state == "upcoming"
