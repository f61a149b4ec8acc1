"""The cohort report's enrolment and completeness table (SPEC section 7): per centre, patients
enrolled, with a re-induction dose, with a follow-up form and included in the outcomes; visits
recorded of those expected; CRF rows marked complete; the last change.

The patients are the ones the outcomes were computed from, in the same data snapshot: the very
columns (loaders.load_columns) the outcome dict was computed from (services.scope_columns), counted
with the outcome columns' own facts (inclusion, t0, the end of follow-up) and reports/outcomes.py's
visit days, so the table adds up to the outcome tables by construction. `patient_counts_of` is the
same count per patient with reports/outcomes.py's definitions (a test holds the two equal).
Two queries whatever the number of patients: the centres, and the form status of every CRF row;
and cohort.monitoring's four for the monitoring columns (SPEC section 10: queries not closed, rows
verified, casebooks signed, locks), which the dashboard prints too (`monitoring_rows`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from cohort import crf, monitoring
from cohort.access import ALL_SCOPE
from cohort.models import ACTIVE_PATIENT_SQL, Centre, LockKind, Patient
from reports import outcome_columns, outcomes
from reports.presentation import share


def _forms_sql() -> str:
    """Every CRF row's patient, status and last change, one SELECT per dictionary form."""
    rows = " UNION ALL ".join(
        f"SELECT {'id' if form.model is Patient else 'patient_id'} AS patient_id, form_status, updated_at"
        f" FROM {form.model._meta.db_table}"
        for form in crf.FILES.values()
    )
    return f"""
        WITH form AS ({rows})
        SELECT c.code, count(*), count(*) FILTER (WHERE x.form_status = 'complete'), max(x.updated_at)
        FROM form x JOIN cohort_patient p ON p.id = x.patient_id JOIN cohort_centre c ON c.id = p.centre_id
        WHERE p.{ACTIVE_PATIENT_SQL} {{scope}}
        GROUP BY c.code
    """


_FORMS = _forms_sql()


def centre_completeness(scope: str, columns: outcome_columns.Columns) -> list[dict]:
    """One row per centre of the scope that is active or has patients, in code order. `columns`:
    the scope's (not deleted) patients as the outcomes were computed from them
    (loaders.load_columns)."""
    centres = Centre.objects.order_by("code").values_list("pk", "code", "name", "active")
    if scope != ALL_SCOPE:
        centres = centres.filter(code=scope)
    condition, params = ("", []) if scope == ALL_SCOPE else ("AND c.code = %s", [scope])
    with connection.cursor() as cursor:
        cursor.execute(_FORMS.format(scope=condition), params)
        forms = {code: (total, complete, last) for code, total, complete, last in cursor.fetchall()}
    progress = monitoring.by_scope(scope)
    centres = list(centres)

    counts = patient_counts(columns, {pk: code for pk, code, _name, _active in centres})
    enrolled, with_t0, with_follow_up, included, recorded, expected = counts

    rows = []
    for _pk, code, name, active in centres:
        if not (active or enrolled[code]):
            continue
        total, complete, last = forms.get(code, (0, 0, None))
        visit_counts = [(recorded[code, visit], expected[code, visit]) for visit in outcomes.VISIT_DAY]
        rows.append(
            {
                "code": code,
                "name": name,
                "enrolled": enrolled[code],
                "with_reinduction": with_t0[code],
                "with_follow_up": with_follow_up[code],
                "included": included[code],
                "visits": [visit_cell(*counts) for counts in visit_counts],
                "visit_counts": visit_counts,
                "forms": f"{complete}/{total}",
                "forms_percent": share(complete, total),
                "forms_counts": (complete, total),
                "last_change": timezone.localtime(last) if last else None,
                "progress": progress.get(code, monitoring.CentreProgress()),
                "monitoring": monitoring_cells(progress.get(code, monitoring.CentreProgress())),
            }
        )
    return rows


def patient_counts(columns: outcome_columns.Columns, codes: Mapping[int, str]) -> tuple[Counter, ...]:
    """`patient_counts_of` over the columns (`codes`: the centre code of each centre key): the same
    counts without a Python object per patient (tests/test_completeness_columns.py holds the two
    equal). Each fact is the outcome columns' own: inclusion as outcome_columns.compute has it,
    the follow-up's end as outcome_columns.survival_times, a visit recorded when it has a done
    assessment."""
    keys, centre = np.unique(columns["centre_id"], return_inverse=True)

    def per_centre(counter: Counter, rows: np.ndarray, key=lambda code: code) -> None:
        for position, n in enumerate(np.bincount(centre[rows], minlength=len(keys)).tolist()):
            if n:
                counter[key(codes[int(keys[position])])] += n

    everyone = np.ones(len(centre), dtype=bool)
    has_t0 = columns["reinduction_date"] != outcome_columns.NULL_INT
    has_follow_up = columns["follow_up"] == 1
    is_included = has_t0 & has_follow_up
    days, _stopped = outcome_columns.survival_times(columns)
    enrolled: Counter[str] = Counter()
    with_t0: Counter[str] = Counter()
    with_follow_up: Counter[str] = Counter()
    included: Counter[str] = Counter()
    recorded: Counter[tuple[str, str]] = Counter()
    expected: Counter[tuple[str, str]] = Counter()
    for counter, rows in ((enrolled, everyone), (with_t0, has_t0), (with_follow_up, has_follow_up)):
        per_centre(counter, rows)
    per_centre(included, is_included)
    for visit, day in outcomes.VISIT_DAY.items():
        done = columns[f"{visit}_done"] == 1
        per_centre(recorded, is_included & done, lambda code, visit=visit: (code, visit))
        per_centre(expected, is_included & (done | (days >= day)), lambda code, visit=visit: (code, visit))
    return enrolled, with_t0, with_follow_up, included, recorded, expected


def patient_counts_of(patients: Sequence[outcomes.PatientData]) -> tuple[Counter, ...]:
    """Per centre: patients enrolled, with a re-induction dose, with a follow-up form, included;
    per (centre, visit): visits recorded and expected of the included patients. The readable
    form, per patient with reports/outcomes.py's definitions; the report counts with
    `patient_counts`, which a test holds equal to this.

    The patients are tallied by their facts first (a C-level Counter over a few distinct tuples:
    centres times the combinations of the facts), then the tallies are added up."""
    facts = Counter(
        (
            patient.centre,
            patient.reinduction_date is not None,
            patient.follow_up is not None,
            outcomes.visits_followed(patient) if outcomes.is_included(patient) else None,
        )
        for patient in patients
    )
    enrolled: Counter[str] = Counter()
    with_t0: Counter[str] = Counter()
    with_follow_up: Counter[str] = Counter()
    included: Counter[str] = Counter()
    recorded: Counter[tuple[str, str]] = Counter()
    expected: Counter[tuple[str, str]] = Counter()
    for (centre, has_t0, has_follow_up, visits), n in facts.items():
        enrolled[centre] += n
        with_t0[centre] += n * has_t0
        with_follow_up[centre] += n * has_follow_up
        if visits is None:
            continue
        included[centre] += n
        for visit, (done, due) in zip(outcomes.VISIT_DAY, visits, strict=True):
            recorded[centre, visit] += n * done
            expected[centre, visit] += n * due
    return enrolled, with_t0, with_follow_up, included, recorded, expected


def monitoring_rows(scope: str) -> list[dict]:
    """The monitoring figures of each centre of the scope that is active or has patients, in code
    order, as the dashboard prints them (`monitoring_cells`). Three queries."""
    return [
        {"code": code, "name": figures.name, **monitoring_cells(figures)}
        for code, figures in monitoring.by_scope(scope).items()
        if figures.active or figures.patients
    ]


def monitoring_cells(figures: monitoring.CentreProgress) -> dict:
    """A centre's (or the total's) monitoring figures as the dashboard and the report print them."""
    return {
        "patients": figures.patients,
        "open_queries": figures.open_queries,
        "answered_queries": figures.answered_queries,
        "verified": f"{figures.rows_verified}/{figures.rows}",
        "verified_percent": share(figures.rows_verified, figures.rows),
        "signed": f"{figures.signed}/{figures.patients}",
        "signed_percent": share(figures.signed, figures.patients),
        "lock": lock_text(figures),
        "lock_kind": figures.lock,
    }


def lock_text(figures: monitoring.CentreProgress) -> str:
    """What is locked: the study, the centre (or how many centres, in a total), how many casebooks."""
    if figures.lock == LockKind.STUDY:
        return _("study locked")
    parts = [_("centre locked")] if figures.lock == LockKind.CENTRE else []
    if figures.centres_locked and figures.lock != LockKind.CENTRE:
        parts.append(
            ngettext("%(n)s centre locked", "%(n)s centres locked", figures.centres_locked)
            % {"n": figures.centres_locked}
        )
    if figures.casebooks_locked:
        parts.append(
            ngettext("%(n)s casebook locked", "%(n)s casebooks locked", figures.casebooks_locked)
            % {"n": figures.casebooks_locked}
        )
    return ", ".join(parts) or "–"


def visit_cell(recorded: int, expected: int) -> dict:
    return {"count": f"{recorded}/{expected}", "percent": share(recorded, expected)}


def totals(centres: list[dict]) -> dict:
    """The table's last line: every centre's counts added up."""
    visit_counts = [
        tuple(sum(values) for values in zip(*column, strict=True))
        for column in zip(*(centre["visit_counts"] for centre in centres), strict=True)
    ]
    complete = sum(centre["forms_counts"][0] for centre in centres)
    total = sum(centre["forms_counts"][1] for centre in centres)
    lasts = [centre["last_change"] for centre in centres if centre["last_change"]]
    progress = monitoring.total([centre["progress"] for centre in centres])
    return {
        "enrolled": sum(centre["enrolled"] for centre in centres),
        "with_reinduction": sum(centre["with_reinduction"] for centre in centres),
        "with_follow_up": sum(centre["with_follow_up"] for centre in centres),
        "included": sum(centre["included"] for centre in centres),
        "visits": [visit_cell(recorded, expected) for recorded, expected in visit_counts],
        "forms": f"{complete}/{total}",
        "forms_percent": share(complete, total),
        "last_change": max(lasts) if lasts else None,
        "monitoring": monitoring_cells(progress),
    }
