"""A patient's progress through the CRF, from plain records (no queries): the casebook grid of
forms x visits, the visit schedule with its windows, and the summary the patient list shows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from django.utils.translation import gettext_lazy as _

from cohort import crf, validators
from cohort.choices import FormStatus, Visit
from cohort.crf import PatientRecord
from cohort.models import VISIT_SCHEDULE

NOT_STARTED = "not_started"
FLAGGED = "flagged"
STATUS_LABELS = {
    NOT_STARTED: _("not started"),
    FormStatus.INCOMPLETE: _("incomplete"),
    FormStatus.COMPLETE: _("complete"),
    FLAGGED: _("flagged"),
}

COLUMNS: tuple[tuple[str, str], ...] = (
    ("baseline", _("Baseline")),
    *((visit.value, visit.label) for visit in Visit),
    ("end", _("Follow-up")),
)


# What is still to do on a form, by its status (the casebook says it under each form).
TODO = {
    NOT_STARTED: _("Nothing entered yet."),
    FormStatus.INCOMPLETE: _("Still to be marked complete."),
    FLAGGED: _("A flagged value to check and confirm."),
}
NO_EVENTS_TODO = _(
    "Enter the adverse events, or answer “no” to “Any adverse event since re-induction” on the follow-up form."
)


@dataclass
class FormCell:
    key: str
    column: str
    status: str
    flags: list[str]

    @property
    def title(self) -> str:
        """The form's label in the active language: made when shown (the patient list makes 11 cells
        for each of its 25 patients and shows none)."""
        return str(crf.form(self.key).label)

    @property
    def status_label(self) -> str:
        return str(STATUS_LABELS[self.status])

    @property
    def todo(self) -> str:
        """What is still missing, in a nurse's words (empty when the form is complete)."""
        if self.key == "adverse_events" and self.status == NOT_STARTED:
            return str(NO_EVENTS_TODO)
        return str(TODO.get(self.status, ""))


def answered_none(record: PatientRecord) -> set[str]:
    """The repeating forms whose 'none' is an answer on another form: the adverse events when the
    follow-up says there were none (data dictionary, follow_up.adverse_events_any). Such a form
    without rows is complete, not 'not started'."""
    follow_up = record.follow_up
    return {"adverse_events"} if follow_up is not None and follow_up.adverse_events_any == "no" else set()


def _status(rows: list, flagged_rows: set[int], *, none_answered: bool = False) -> str:
    if not rows:
        return FormStatus.COMPLETE if none_answered else NOT_STARTED
    if any(id(row) in flagged_rows for row in rows):
        return FLAGGED
    if all(row.form_status == FormStatus.COMPLETE for row in rows):
        return FormStatus.COMPLETE
    return FormStatus.INCOMPLETE


def form_cells(record: PatientRecord) -> list[FormCell]:
    """Each form's status: not started / incomplete / complete / flagged (a soft check fired)."""
    flags = validators.soft_flags(record)
    flagged_rows = {id(flag.row) for flag in flags}
    none = answered_none(record)
    cells = []
    for form in crf.FORMS:
        rows = form.rows(record)
        row_ids = {id(row) for row in rows}
        cells.append(
            FormCell(
                key=form.key,
                column=form.column,
                status=_status(rows, flagged_rows, none_answered=form.key in none),
                flags=[flag.message for flag in flags if id(flag.row) in row_ids],
            )
        )
    return cells


@dataclass
class ScheduledVisit:
    visit: str
    label: str
    nominal: dt.date | None
    window_start: dt.date | None
    window_end: dt.date | None
    assessment_date: dt.date | None
    state: str  # done, not_done, out_of_window, due, overdue, upcoming, unscheduled

    @property
    def state_label(self) -> str:
        return str(SCHEDULE_STATES[self.state])


SCHEDULE_STATES = {
    "done": _("done"),
    "not_done": _("not done"),
    "out_of_window": _("done, out of window"),
    "due": _("due now"),
    "overdue": _("overdue"),
    "upcoming": _("upcoming"),
    "unscheduled": _("needs the re-induction date"),
    "ended": _("not expected (follow-up ended)"),
}


def visit_schedule(record: PatientRecord, today: dt.date) -> list[ScheduledVisit]:
    """The four visits with their dates computed from the re-induction (day 0) and where each stands."""
    return dated(visit_plan(record), today)


def visit_plan(record: PatientRecord) -> list[ScheduledVisit]:
    """visit_schedule as far as the record alone decides it: a visit still expected (due, overdue
    or upcoming, by the day) has state PENDING, for `dated` to settle. What the patient list stores."""
    t0 = record.reinduction_date
    assessments = {a.visit: a for a in record.assessments}
    ended = record.follow_up.last_follow_up_date if record.follow_up else None
    plan = []
    for visit in Visit:
        nominal_day, low, high = VISIT_SCHEDULE[visit]
        assessment = assessments.get(visit.value)
        if t0 is None:
            dates = (None, None, None)
        else:
            dates = tuple(t0 + dt.timedelta(days=day) for day in (nominal_day, low, high))
        if assessment is not None and assessment.not_done == "yes":
            state = "not_done"
        elif assessment is not None:
            state = "out_of_window" if assessment.in_window(t0) is False else "done"
        elif t0 is None:
            state = "unscheduled"
        elif ended is not None and record.follow_up.status == "discontinued":
            state = "ended"
        else:
            state = PENDING
        plan.append(
            ScheduledVisit(
                visit=visit.value,
                label=visit.label,
                nominal=dates[0],
                window_start=dates[1],
                window_end=dates[2],
                assessment_date=assessment.assessment_date if assessment else None,
                state=state,
            )
        )
    return plan


PENDING = "pending"  # visit_plan's state of a visit still expected: dated() settles it by the day


def dated(plan: list[ScheduledVisit], today: dt.date) -> list[ScheduledVisit]:
    """The plan's expected visits settled by the day: overdue after the window, due in it, upcoming
    before it (new ScheduledVisits; the plan is left as it is)."""
    return [visit if visit.state != PENDING else replace(visit, state=_pending_state(visit, today)) for visit in plan]


def _pending_state(visit: ScheduledVisit, today: dt.date) -> str:
    if today > visit.window_end:
        return "overdue"
    if today >= visit.window_start:
        return "due"
    return "upcoming"


@dataclass
class Progress:
    complete: int
    total: int
    next_visit: ScheduledVisit | None
    overdue: int
    flags: int


def progress(record: PatientRecord, today: dt.date) -> Progress:
    return dated_progress(**form_totals(record), plan=visit_plan(record), today=today)


def form_totals(record: PatientRecord) -> dict[str, int]:
    """How far the record's forms are, whatever the day: complete, total and flags."""
    cells = form_cells(record)
    return {
        "complete": sum(cell.status == FormStatus.COMPLETE for cell in cells),
        "total": len(cells),
        "flags": sum(len(cell.flags) for cell in cells),
    }


def dated_progress(*, complete: int, total: int, flags: int, plan: list[ScheduledVisit], today: dt.date) -> Progress:
    """The progress of a record whose forms and visit plan were summed up (on any day) on `today`."""
    schedule = dated(plan, today)
    pending = [visit for visit in schedule if visit.state in ("due", "overdue", "upcoming")]
    return Progress(
        complete=complete,
        total=total,
        next_visit=pending[0] if pending else None,
        overdue=sum(visit.state == "overdue" for visit in schedule),
        flags=flags,
    )
