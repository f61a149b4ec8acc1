"""The patient list's row of each casebook, summed up once and stored (models.CasebookSummary).

A row of the list shows how far the casebook is (forms complete, flags, the next visit, overdue
visits), its source data verification and whether it is signed as it stands. Made from the whole
casebook, that is every row of every form of each of a page's 25 patients, the same work on every
view of the page. The automatic data checks (cohort.data_checks), which read each casebook anyway,
after every save and every hour, sum it up here and store it; the list reads 25 small rows.

A stored summary is used only while it is current: the database raises a patient's data stamp
with every statement that changes what the summary is made from (migration 0021), and a summary
holds the stamp it was made at and `RULES`, the fingerprint of the code that made it. Anything
else (a save the checks have not seen yet, a new release) is summed up from the casebook there and
then, as before. What depends on the day (which visits are due or overdue) is never stored: the
summary holds the visit plan and the list dates it (casebook.dated_progress).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from django.db import connection
from django.db.models import F, OuterRef, QuerySet

from cohort import casebook, sdv, signatures
from cohort.choices import Visit
from cohort.crf import PatientRecord
from cohort.models import CasebookSummary, Verification

# The code a summary is made by: a summary made by other code (an older release) is not used.
_MADE_BY = (
    "cohort.casebook",
    "cohort.choices",
    "cohort.crf",
    "cohort.csvformat",
    "cohort.listing",
    "cohort.models",
    "cohort.sdv",
    "cohort.signatures",
    "cohort.validators",
)


@functools.cache
def rules() -> str:
    """The fingerprint of the code that sums a casebook up (its modules' source)."""
    digest = hashlib.sha256()
    for name in _MADE_BY:
        digest.update(Path(sys.modules[name].__file__).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Row:
    """A casebook as a row of the patient list shows it on a day."""

    progress: casebook.Progress
    verified: tuple[int, int]  # (forms verified, forms with rows)
    data_hash: str | None  # signatures.data_hash of the casebook: signed if a valid signature has it


def summary(record: PatientRecord, marks: dict[tuple[str, int], Verification], *, hashed: bool = True) -> dict:
    """The casebook summed up, as JSON: what the list shows of it on any day. `hashed`: with the
    data's hash (a summary to show at once may leave it out when the casebook has no valid signature
    that could match it; a summary stored has it)."""
    return {
        **casebook.form_totals(record),
        "plan": [
            [visit.visit, _day(visit.nominal), _day(visit.window_start), _day(visit.window_end), visit.state]
            for visit in casebook.visit_plan(record)
        ],
        "verified": list(sdv.progress(record, marks)),
        "data_hash": signatures.data_hash(record) if hashed else None,
    }


def row(summed: dict, today: dt.date) -> Row:
    """The list's row of a summary, on `today`."""
    plan = [
        casebook.ScheduledVisit(
            visit=visit,
            label=Visit(visit).label,
            nominal=_date(nominal),
            window_start=_date(start),
            window_end=_date(end),
            assessment_date=None,  # not shown in the list
            state=state,
        )
        for visit, nominal, start, end, state in summed["plan"]
    ]
    totals = {key: summed[key] for key in ("complete", "total", "flags")}
    progress = casebook.dated_progress(**totals, plan=plan, today=today)
    return Row(progress=progress, verified=tuple(summed["verified"]), data_hash=summed["data_hash"])


def _day(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _date(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def stamps(patient_ids: list[int]) -> dict[int, int]:
    """The patients' data stamps now. Read before their casebooks, a summary made from them is
    stored with a stamp no newer than its data (a change in between makes it stale, never wrong)."""
    return dict(CasebookSummary.objects.filter(pk__in=patient_ids).values_list("pk", "data_stamp"))


def store(summaries: list[tuple[int, int, dict]]) -> int:
    """Store (patient id, the stamp read before the casebook, its summary) where that stamp is still
    the data's and the summary is not already stored; one statement. How many were written."""
    if not summaries:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE cohort_casebooksummary s SET summary_stamp = v.stamp, rules = %s, summary = v.summary"
            " FROM unnest(%s::bigint[], %s::bigint[], %s::text[]::jsonb[]) AS v(patient_id, stamp, summary)"
            " WHERE s.patient_id = v.patient_id AND s.data_stamp = v.stamp"
            " AND (s.summary_stamp IS DISTINCT FROM v.stamp OR s.rules <> %s OR s.summary IS DISTINCT FROM v.summary)",
            [
                rules(),
                [pk for pk, _stamp, _summed in summaries],
                [stamp for _pk, stamp, _summed in summaries],
                [json.dumps(summed) for _pk, _stamp, summed in summaries],
                rules(),
            ],
        )
        return cursor.rowcount


def current() -> QuerySet[CasebookSummary]:
    """In a query over patients (OuterRef "pk"): the patient's summary if it is current."""
    return CasebookSummary.objects.filter(patient_id=OuterRef("pk"), summary_stamp=F("data_stamp"), rules=rules())
