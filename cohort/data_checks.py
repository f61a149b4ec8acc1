"""Automatic data queries (SPEC section 10): `python manage.py data_checks` runs them now, beat
runs them every hour, and a save of a patient's record runs them for that patient once it commits:
the save writes a request (models.DataCheckRequest) and reports, listening to
cohort.signals.data_changed, wakes a worker for the requests (once per burst of saves).

Three rules, each opening one system query per cause through cohort.queries:

- a flagged value left unconfirmed (validators.soft_flags): on the flagged field of its row. Its
  cause is the flag confirmation's own key, "flag:<model>:<row id>:<field>:<basis>", so a changed
  value is a new cause (it needs confirming again) and a confirmation ends the old one;
- a visit overdue past its window (casebook.visit_schedule: "overdue", no assessment recorded): on
  the visit's form as a whole, no row. Cause "overdue:<patient id>:<visit>";
- a form left incomplete after its visit's window closed: a row marked incomplete the day after
  the last day of its window. An assessment's window is its visit's; the baseline forms'
  (enrolment, prior biologics, doses, re-induction) is week 0's, since they describe the patient
  up to the re-induction; the end forms' (follow-up, adverse events) is the last visit's (week 52),
  since they are kept up while the patient is followed. On the row as a whole. Cause
  "incomplete:<patient id>:<form key>:<row id>".

Windows count from the re-induction dose: a patient without one has no windows yet, so nothing of
theirs is overdue or late.

A query whose cause is gone (flag confirmed or value changed, visit entered, form completed, row
removed) closes itself with a note saying why. While the cause stands, people decide:

- a query the site answered stays answered: the coordinator closes or re-opens it;
- a query the check closed and a coordinator re-opened (the fix did not settle it) is left to
  the coordinator: the check does not close it again;
- a query a coordinator closed is the monitor's decision ("acceptable as it is"), and the check
  does not raise it again. When the cause goes, a note on the closed query says so; should the
  cause come back after that, it is a new occurrence and opens a new query;
- a record covered by a lock (study, centre, casebook, or the row's own) gets no new query: its
  data are frozen and the site could not act on one. Its queries still close when their cause goes.

Removed patients are left alone. Messages are stored text, written in English like the flags.

Safe to run twice, and beside saves: each chunk of patients is checked under their row locks,
the lock every save of a patient takes (services._lock_patient), so a check never reads a record
half-way through a save, and the check a save queues sees what it committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone, translation
from django.utils.translation import gettext_noop

from cohort import casebook, crf, listing, locks, queries, sdv, services, validators
from cohort.choices import FormStatus, Visit
from cohort.crf import PatientRecord
from cohort.models import (
    VISIT_SCHEDULE,
    DataCheckRequest,
    Lock,
    Patient,
    Query,
    QueryAction,
    QueryCheck,
    QueryMessage,
    QueryState,
)
from cohort.queries import Wording

# Patients checked per transaction: their records are loaded in a fixed number of queries, and
# saves of these patients wait for the chunk (a second or so), never for the whole cohort.
CHUNK = 200
CAUSE_MAX_LENGTH = Query._meta.get_field("cause").max_length
# The window that closes a form's rows, by casebook column; an assessment's is its own visit's.
WINDOW_OF_COLUMN = {"baseline": Visit.WEEK_0, "end": list(Visit)[-1]}
# Why an overdue visit's query closes, by the visit's state now.
VISIT_SETTLED = {
    "done": gettext_noop("the visit was entered"),
    "out_of_window": gettext_noop("the visit was entered"),
    "not_done": gettext_noop("the visit was recorded as not done"),
    "ended": gettext_noop("follow-up ended, so the visit is no longer expected"),
}
# The automatic messages' wordings (cohort.queries.Wording), each read in the reader's language.
CLOSED = gettext_noop("Closed automatically: %(why)s.")
GONE = gettext_noop("The cause is gone: %(why)s. Should it come back, a new query opens.")
FLAG = gettext_noop(
    "Flagged value not confirmed: %(flag)s Correct it if it is wrong; if it is right, confirm the flag."
)
OVERDUE = gettext_noop(
    "The %(visit)s visit is overdue: its window (days %(low)s to %(high)s after the re-induction dose) ended on "
    "%(end)s, and no assessment is recorded. Enter the visit, or record it as not done."
)
INCOMPLETE = gettext_noop(
    "%(form)s is marked incomplete, and the %(window)s window ended on %(end)s. Complete the form and mark it complete."
)
INCOMPLETE_ROW = gettext_noop(
    "%(form)s (%(row)s) is marked incomplete, and the %(window)s window ended on %(end)s. Complete the form and "
    "mark it complete."
)


@dataclass(frozen=True)
class Finding:
    """A cause present now, and the query it opens: on which form, row and field, saying what."""

    rule: str
    cause: str
    form: str
    row_id: int | None
    field: str
    text: Wording = field(compare=False)
    row: Any = field(default=None, compare=False)  # the row itself, for its locks


@dataclass
class Summary:
    opened: int = 0
    closed: int = 0
    open_now: int = 0  # automatic queries not closed after the run, of the patients it checked

    def __str__(self) -> str:
        return f"{self.opened} opened, {self.closed} closed, {self.open_now} open"


def run(patients: Iterable[int] | None = None, today: dt.date | None = None) -> Summary:
    """Check these patients (ids; None: every patient) as of `today`: open a query for each new
    cause, close those whose cause is gone. About ten queries per CHUNK patients, plus the writes."""
    today = today or timezone.localdate()
    scope = Patient.objects.all()
    if patients is not None:
        scope = scope.filter(pk__in=list(patients))
    ids = list(scope.order_by("pk").values_list("pk", flat=True))
    summary = Summary()
    for start in range(0, len(ids), CHUNK):
        _check_chunk(ids[start : start + CHUNK], today, summary)
    automatic = Query.objects.exclude(rule=QueryCheck.MANUAL).exclude(state=QueryState.CLOSED)
    summary.open_now = automatic.filter(patient__in=scope).count()
    return summary


def run_requested(today: dt.date | None = None) -> Summary:
    """Check the patients whose checks were requested (models.DataCheckRequest: by their saves,
    committed by now); each request goes as its patient is checked. What the worker woken after a
    save runs (reports.tasks.requested_data_checks)."""
    requested = list(DataCheckRequest.objects.values_list("patient_id", flat=True))
    if not requested:
        return Summary()
    # Removed patients are left alone: their requests go unchecked.
    DataCheckRequest.objects.filter(patient_id__in=requested).exclude(patient__in=Patient.objects.all()).delete()
    return run(requested, today)


def findings(record: PatientRecord, today: dt.date) -> list[Finding]:
    """The causes present in a patient's record today."""
    schedule = {visit.visit: visit for visit in casebook.visit_schedule(record, today)}
    with translation.override("en"):  # stored text, in English like the flags
        return [
            *_unconfirmed_flags(record),
            *_overdue_visits(record, schedule),
            *_incomplete_forms(record, schedule, today),
        ]


def _check_chunk(ids: list[int], today: dt.date, summary: Summary) -> None:
    with transaction.atomic():
        # The lock each save of a patient takes first; in id order, so two runs never deadlock.
        list(Patient.objects.filter(pk__in=ids).order_by("pk").select_for_update().values_list("pk", flat=True))
        # Their checks are done by this one: a save that asks again after it waits for the lock.
        DataCheckRequest.objects.filter(patient_id__in=ids).delete()
        stamps = listing.stamps(ids)  # before the casebooks (listing.stamps)
        patients = list(services.with_forms(Patient.objects.filter(pk__in=ids)))
        existing = _automatic_queries(ids)
        active_locks = locks.active_for(patients)
        marks = sdv.marks_of_patients(patients)
        summed = []
        for patient in patients:
            record = services.patient_record(patient)
            _check_patient(record, existing.get(patient.pk, []), active_locks, today, summary)
            if patient.pk in stamps:
                summed.append((patient.pk, stamps[patient.pk], listing.summary(record, marks[patient.pk])))
        # The patient list's summaries, from the casebooks read for the checks (cohort.listing).
        listing.store(summed)


def _automatic_queries(ids: list[int]) -> dict[int, list[Query]]:
    """The patients' automatic queries, oldest first, each with its last message's action and
    author (a coordinator's close, or the check's own note) and whether the check ever closed it.
    One query."""
    messages = QueryMessage.objects.filter(query=OuterRef("pk"))
    last = messages.order_by("-at", "-id")
    found: dict[int, list[Query]] = {}
    annotated = (
        Query.objects.filter(patient_id__in=ids)
        .exclude(rule=QueryCheck.MANUAL)
        .annotate(
            last_action=Subquery(last.values("action")[:1]),
            last_author_id=Subquery(last.values("author_id")[:1]),
            closed_by_check=Exists(messages.filter(action=QueryAction.CLOSE, author__isnull=True)),
        )
    )
    for query in annotated.order_by("id"):
        found.setdefault(query.patient_id, []).append(query)
    return found


def _check_patient(
    record: PatientRecord, existing: list[Query], active_locks: list[Lock], today: dt.date, summary: Summary
) -> None:
    found = {finding.cause: finding for finding in findings(record, today)}
    # Per cause, its query not closed (at most one) or else the latest closed one.
    current: dict[str, Query] = {}
    for query in existing:
        if query.state != QueryState.CLOSED or current.get(query.cause, query).state == QueryState.CLOSED:
            current[query.cause] = query
    for cause, query in current.items():
        if cause in found:
            continue
        if query.state == QueryState.REOPENED and query.closed_by_check:
            continue  # re-opened by a coordinator after the check closed it: theirs to close
        if query.state != QueryState.CLOSED:
            summary.closed += _close(query, Wording(CLOSED, {"why": _why_gone(query, record, today)}))
        elif _closed_by_coordinator(query):
            reason = _why_gone(query, record, today)
            queries.note(query=query, text=Wording(GONE, {"why": reason}))
    for cause, finding in found.items():
        query = current.get(cause)
        if query is not None and (query.state != QueryState.CLOSED or _closed_by_coordinator(query)):
            continue
        if locks.all_covering(record.patient, finding.row, among=active_locks):
            continue
        queries.raise_query(
            patient=record.patient,
            form_key=finding.form,
            row_id=finding.row_id,
            field=finding.field,
            text=finding.text,
            by=None,
            rule=finding.rule,
            cause=cause,
        )
        summary.opened += 1


def _closed_by_coordinator(query: Query) -> bool:
    """Closed by a coordinator, and the check has not noted since that the cause went."""
    return query.state == QueryState.CLOSED and query.last_action == QueryAction.CLOSE and bool(query.last_author_id)


def _close(query: Query, text: Wording) -> bool:
    try:
        queries.act(query=query, action=QueryAction.CLOSE, text=text, by=None)
    except PermissionDenied:  # a coordinator closed it a moment ago
        return False
    return True


def _why_gone(query: Query, record: PatientRecord, today: dt.date) -> str:
    """What became of the cause of `query`, which the record no longer has."""
    if query.rule == QueryCheck.FLAG:
        flags = validators.soft_flags(record, include_confirmed=True)
        confirmed = {_flag_cause(flag) for flag in flags if flag.key in record.confirmed}
        if query.cause in confirmed:
            return gettext_noop("the flag was confirmed")
        return gettext_noop("the flagged value was changed or removed")
    if query.rule == QueryCheck.OVERDUE_VISIT:
        states = {visit.visit: visit.state for visit in casebook.visit_schedule(record, today)}
        return VISIT_SETTLED.get(
            states.get(query.form), gettext_noop("the visit is no longer overdue (its window moved)")
        )
    if query.rule == QueryCheck.INCOMPLETE_FORM:
        case_form = crf.BY_KEY.get(query.form)
        rows = case_form.rows(record) if case_form else []
        row = next((row for row in rows if row.pk == query.row_id), None)
        if row is None:
            return gettext_noop("the row was removed")
        if row.form_status == FormStatus.COMPLETE:
            return gettext_noop("the form was marked complete")
        return gettext_noop("its window is open again (the re-induction date changed)")
    return gettext_noop("the cause is gone")


# --- the rules -----------------------------------------------------------------------------------


def _cause(*parts: object) -> str:
    """A cause as stored: its parts joined by colons; one longer than the column ends in a hash of
    the whole, so it still names exactly one cause."""
    cause = ":".join(str(part) for part in parts)
    if len(cause) <= CAUSE_MAX_LENGTH:
        return cause
    digest = hashlib.sha256(cause.encode()).hexdigest()
    return f"{cause[: CAUSE_MAX_LENGTH - len(digest) - 1]}#{digest}"


def _flag_cause(flag: validators.Problem) -> str:
    return _cause("flag", *flag.key)


def _unconfirmed_flags(record: PatientRecord) -> Iterator[Finding]:
    for flag in validators.soft_flags(record):
        yield Finding(
            rule=QueryCheck.FLAG,
            cause=_flag_cause(flag),
            form=crf.form_of(flag.row).key,
            row_id=flag.row.pk,
            field=flag.field,
            text=Wording(FLAG, {"flag": str(flag.message)}),
            row=flag.row,
        )


def _overdue_visits(record: PatientRecord, schedule: dict[str, casebook.ScheduledVisit]) -> Iterator[Finding]:
    for visit in schedule.values():
        if visit.state != "overdue":
            continue
        _, low, high = VISIT_SCHEDULE[visit.visit]
        yield Finding(
            rule=QueryCheck.OVERDUE_VISIT,
            cause=_cause("overdue", record.patient.pk, visit.visit),
            form=visit.visit,
            row_id=None,
            field="",
            text=Wording(
                OVERDUE, {"visit": visit.visit, "low": low, "high": high, "end": visit.window_end.isoformat()}
            ),
        )


def _window(form: crf.CaseForm) -> str:
    return form.visit or WINDOW_OF_COLUMN[form.column]


def _incomplete_forms(
    record: PatientRecord, schedule: dict[str, casebook.ScheduledVisit], today: dt.date
) -> Iterator[Finding]:
    for form in crf.FORMS:
        window = schedule[_window(form)]
        if window.window_end is None or today <= window.window_end:  # no window yet, or still open
            continue
        for row in form.rows(record):
            if row.form_status != FormStatus.INCOMPLETE:
                continue
            yield Finding(
                rule=QueryCheck.INCOMPLETE_FORM,
                cause=_cause("incomplete", record.patient.pk, form.key, row.pk),
                form=form.key,
                row_id=row.pk,
                field="",
                text=Wording(
                    INCOMPLETE_ROW if form.repeating else INCOMPLETE,
                    {"form": form.key, "window": window.visit, "end": window.window_end.isoformat()}
                    | ({"row": queries.row_names(row)} if form.repeating else {}),
                ),
                row=row,
            )
