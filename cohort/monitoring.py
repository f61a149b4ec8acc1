"""Monitoring progress where people look (SPEC section 10): the patient list's filters, and the
figures per centre that the dashboard and the cohort report print (queries not closed, form rows
verified, casebooks signed, locks).

Each rule keeps its home: what waits for the site is cohort.queries, what is verified cohort.sdv,
what a lock covers cohort.locks. This module puts them side by side, in SQL, so a filtered list
pages right and the figures cost the same few queries whatever the number of patients.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.core.paginator import Paginator
from django.db import connection, transaction
from django.db.models import BigIntegerField, Count, Exists, F, OuterRef, QuerySet, Sum, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils.translation import gettext_lazy as _

from cohort import locks, queries, sdv, signatures
from cohort.access import ALL_SCOPE
from cohort.models import (
    ACTIVE_PATIENT_SQL,
    Centre,
    CrfRowTally,
    Lock,
    LockKind,
    Patient,
    Signature,
)

# The patient list's filters: the GET value, its label, and the patients it keeps.
FILTERS = {
    "open_queries": (_("with open queries"), queries.with_open),
    "not_verified": (_("not verified"), sdv.not_verified),
    "not_signed": (_("not signed"), signatures.without_valid_signature),
    "locked": (_("locked"), locks.locked),
}


# The filters counted from the set of patient ids they leave out, while it is small: "not signed"
# and "not verified" are every patient but the few signed or verified, for most of a study. (Each
# filter's rule stays in its module; tests/test_monitoring_progress.py holds both counts equal.)
COUNTED_FROM = {
    "not_signed": lambda: signatures.validly_signed_ids().query.sql_with_params(),
    "not_verified": sdv.verified_patients,
}


@functools.cache
def _set_sql(name: str) -> tuple[str, tuple]:
    """A COUNTED_FROM set's SQL, composed once per process."""
    return COUNTED_FROM[name]()


# Past this many ids in the set, the list is counted instead: each id costs a lookup of its patient.
SMALL_SET = 5000


def filtered_count(centre_ids: set[int] | None, chosen: list[str]) -> int | None:
    """How many patients (not removed) of these centres (None: every centre) the one filter chosen
    keeps, where the list's count probes every patient (the coordinator's, at 100,000 patients:
    10-13 ms). "With open queries": the centres' tally of patients with a waiting query (migration
    0022). The others of COUNTED_FROM: the centres' tallied patients less those of the filter's set,
    each id of the set looking its patient up (0.6-1.6 ms). None for no filter, several, one
    counted otherwise, or a set of more than SMALL_SET ids: the list is counted then."""
    if chosen == ["open_queries"]:
        return tallied(centre_ids, "patients with open queries")
    if len(chosen) != 1 or chosen[0] not in COUNTED_FROM:
        return None
    ids_sql, ids_params = _set_sql(chosen[0])
    # OFFSET 0 keeps each lookup a subplan run for one id of the set: as a join, the planner would
    # rather read every patient and hash the set.
    sql = (
        f"SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM cohort_patient p"
        f" WHERE p.id = s.patient_id AND p.{ACTIVE_PATIENT_SQL}"
        f"{'' if centre_ids is None else ' AND p.centre_id = ANY(%s)'} OFFSET 0))"
        f" FROM ({ids_sql} LIMIT %s) AS s (patient_id)"
    )
    scope = [] if centre_ids is None else [list(centre_ids)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*scope, *ids_params, SMALL_SET + 1])
        read, held = cursor.fetchone()
    if read > SMALL_SET:
        return None
    return tallied(centre_ids, "patients") - held


def filtered(patients: QuerySet[Patient], chosen: list[str]) -> QuerySet[Patient]:
    """The patients every chosen filter keeps (unknown names are ignored)."""
    for name in chosen:
        if name in FILTERS:
            patients = FILTERS[name][1](patients)
    return patients


@dataclass(frozen=True)
class CentreProgress:
    """A centre's monitoring figures."""

    name: str = ""
    active: bool = True
    patients: int = 0
    open_queries: int = 0  # open or re-opened: the site's turn
    answered_queries: int = 0  # answered: the coordinator's turn
    rows_verified: int = 0
    rows: int = 0
    signed: int = 0  # casebooks with a valid signature
    casebooks_locked: int = 0  # casebook locks of its patients (beyond a centre or study lock)
    lock: str = ""  # LockKind.STUDY or LockKind.CENTRE when one covers the whole centre, else ""
    centres_locked: int = 0  # of several centres added up (total): how many a centre lock covers


def by_centre(centres: QuerySet[Centre]) -> dict[str, CentreProgress]:
    """Each centre's figures by code, over its patients (not removed). Three queries: the centres
    with their locks; the patients and queries not closed (tallied), signatures and casebook locks;
    the rows (tallied) and rows verified."""
    listed, counted, verified = _queries(centres)
    return _figures(list(listed), _counted_by_centre(counted), sdv.verified_totals(verified))


# by_scope's three statements, composed by the ORM once per process for each shape of scope (every
# centre, or the one centre whose code takes the place of SCOPE_CODE): composing them cost more CPU
# than running them.
_by_scope: dict[bool, list[tuple[str, tuple]]] = {}
SCOPE_CODE = "\x00scope code"


def by_scope(scope: str) -> dict[str, CentreProgress]:
    """by_centre of a scope's centres: every centre ("all") or the one with this code."""
    one = scope != ALL_SCOPE
    statements = _by_scope.get(one)
    if statements is None:
        centres = Centre.objects.filter(code=SCOPE_CODE) if one else Centre.objects.all()
        statements = [query.query.sql_with_params() for query in _queries(centres)]
        assert all(SCOPE_CODE in params for _sql, params in statements) == one
        _by_scope[one] = statements
    fetched = []
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, [scope if value == SCOPE_CODE else value for value in params])
            fetched.append(cursor.fetchall())
    listed, counted, verified = fetched
    return _figures(listed, _counted_by_centre(counted), sdv.verified_totals(verified))


def _queries(centres: QuerySet[Centre]) -> tuple[QuerySet, QuerySet, QuerySet]:
    active = Lock.objects.filter(unlocked_at__isnull=True)
    listed = centres.order_by("code").annotate(
        study_lock=Exists(active.filter(kind=LockKind.STUDY)),
        centre_lock=Exists(active.filter(kind=LockKind.CENTRE, centre_id=OuterRef("pk"))),
    )
    listed = listed.values_list("pk", "code", "name", "active", "study_lock", "centre_lock")
    patients = Patient.objects.filter(centre__in=centres.values("pk"))
    return listed, _patients_signed_locked(centres, patients, active), sdv.rows_verified_query(centres)


def _figures(listed, counted: dict, verified: dict) -> dict[str, CentreProgress]:
    figures = {}
    for pk, code, name, active_centre, study_lock, centre_lock in listed:
        n, signed, casebooks, waiting, answered = counted.get(pk, (0, 0, 0, 0, 0))
        done, rows = verified.get(pk, (0, 0))
        figures[code] = CentreProgress(
            name=name,
            active=active_centre,
            patients=n,
            open_queries=waiting,
            answered_queries=answered,
            rows_verified=done,
            rows=rows,
            signed=signed,
            casebooks_locked=casebooks,
            lock=LockKind.STUDY if study_lock else LockKind.CENTRE if centre_lock else "",
            centres_locked=int(centre_lock),
        )
    return figures


def _patients_signed_locked(centres: QuerySet[Centre], patients: QuerySet[Patient], active) -> QuerySet:
    """(centre id, patients, casebooks with a valid signature, casebooks locked, queries waiting for
    the site, queries answered) parts to add up by centre (_counted_by_centre), in one query whose
    cost is that of the signatures and locks, not of the patients or queries: those come from the
    centres' tallies (CrfRowTally), the others are counted from the valid signatures and active
    casebook locks themselves. By centre id, not code: the tallies (one per write statement between
    folds) summed as they are, with no join of the centres."""
    zero = Value(0, output_field=BigIntegerField())
    columns = ("n", "signed", "casebooks", "waiting", "answered")

    def per_centre(rows: QuerySet, centre: str, **figures):
        figures = {column: figures.get(column, zero) for column in columns}
        return rows.order_by().values(centre).annotate(**figures).values_list(centre, *columns)

    def total(field: str):
        return Cast(Sum(field), BigIntegerField())

    parts = [
        per_centre(
            CrfRowTally.objects.filter(centre__in=centres.values("pk")),
            "centre_id",
            n=total("patients"),
            waiting=total("waiting_queries"),
            answered=total("answered_queries"),
        ),
        per_centre(
            Signature.objects.filter(invalidated_at__isnull=True, patient__in=patients.values("pk")),
            "patient__centre_id",
            signed=Count("patient", distinct=True),
        ),
        per_centre(
            active.filter(kind=LockKind.PATIENT, patient__in=patients.values("pk")),
            "patient__centre_id",
            casebooks=Count("patient", distinct=True),
        ),
    ]
    return parts[0].union(*parts[1:], all=True)


def _counted_by_centre(parts) -> dict[int, tuple[int, ...]]:
    counted: dict[int, tuple[int, ...]] = {}
    for centre, *figures in parts:
        before = counted.get(centre, (0,) * 5)
        counted[centre] = tuple(a + b for a, b in zip(before, figures, strict=True))
    return counted


# What the tallies count (CrfRowTally): of a centre's patients not removed, all, or those with a query
# waiting for the site (the "with open queries" filter's count); its data queries not closed.
TALLIED = {
    "patients": F("patients"),
    "patients with open queries": F("patients_waiting"),
    "queries not closed": F("waiting_queries") + F("answered_queries"),
}


def tallied(centre_ids: set[int] | None, figure: str) -> int:
    """One of the TALLIED figures of these centres (None: every centre), from their tallies: one
    query reading a few rows per centre, where a count reads an entry per patient or query (the
    patient list's and the query list's totals)."""
    return _tallies(centre_ids).aggregate(n=Sum(TALLIED[figure]))["n"] or 0


def _tallies(centre_ids: set[int] | None) -> QuerySet[CrfRowTally]:
    return CrfRowTally.objects.all() if centre_ids is None else CrfRowTally.objects.filter(centre_id__in=centre_ids)


class TalliedPaginator(Paginator):
    """A Paginator given its count (`tallied`), so that the page costs no count of the rows."""

    def __init__(self, object_list, per_page, *, count: int):
        super().__init__(object_list, per_page)
        self.tallied_count = count

    @property
    def count(self) -> int:
        return self.tallied_count


class CentrePaginator(Paginator):
    """The pages of a patient list with no search and no filter: the centres in code order, each
    centre's patients in study ID order (the order of the study IDs themselves, each beginning with
    its centre's code), counted from the centres' tallies (`tallied`, per centre).

    A page reads only within the centres it falls in (an index-only scan of each from its offset in
    that centre, index patient_list_of_centre), skipping whole centres by their tallies: the
    coordinator's pages deep in every centre's patients skipped them all one by one (PostgreSQL
    2.7 -> 6 ms from 1,000 to 100,000 patients). A page's `object_list` is its patients' ids as SQL,
    for `pk__in` (the page's query reads them in its own statement)."""

    TALLIES = (
        "SELECT t.centre_id, sum(t.patients)::bigint FROM cohort_crfrowtally t"
        " JOIN cohort_centre c ON c.id = t.centre_id {where}"
        " GROUP BY t.centre_id, c.code HAVING sum(t.patients) > 0 ORDER BY c.code"
    )
    PART = (
        f"(SELECT id FROM cohort_patient WHERE centre_id = %s AND {ACTIVE_PATIENT_SQL}"
        " ORDER BY study_id OFFSET %s LIMIT %s)"
    )
    NONE = "SELECT id FROM cohort_patient WHERE false"

    def __init__(self, per_page: int, centre_ids: set[int] | None):
        super().__init__(Patient.objects.none(), per_page)
        where, params = ("", []) if centre_ids is None else ("WHERE t.centre_id = ANY(%s)", [list(centre_ids)])
        with connection.cursor() as cursor:
            cursor.execute(self.TALLIES.format(where=where), params)
            self.by_centre: list[tuple[int, int]] = cursor.fetchall()

    @property
    def count(self) -> int:
        return sum(n for _centre, n in self.by_centre)

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = min(bottom + self.per_page, self.count)
        parts, params, start = [], [], 0
        for centre_id, n in self.by_centre:
            if start < top and start + n > bottom:
                offset = max(0, bottom - start)
                parts.append(self.PART)
                params += [centre_id, offset, min(n, top - start) - offset]
            start += n
        return self._get_page(RawSQL(" UNION ALL ".join(parts) or self.NONE, params), number, self)


def fold_tallies() -> int:
    """Sum each centre's CRF row tallies into one (CrfRowTally; the triggers append one per write
    statement), so reading them stays a few rows per centre. Safe beside writers and another fold:
    it deletes only the tallies it sees and inserts their sums. Returns the tallies left."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "WITH folded AS (DELETE FROM cohort_crfrowtally RETURNING *)"
            " INSERT INTO cohort_crfrowtally"
            " (centre_id, crf_rows, patients, waiting_queries, answered_queries, patients_waiting)"
            " SELECT centre_id, sum(crf_rows), sum(patients), sum(waiting_queries), sum(answered_queries),"
            " sum(patients_waiting) FROM folded GROUP BY centre_id"
        )
        return CrfRowTally.objects.count()


def total(figures: list[CentreProgress]) -> CentreProgress:
    """Several centres' figures added up (a report's last line)."""
    return CentreProgress(
        patients=sum(f.patients for f in figures),
        open_queries=sum(f.open_queries for f in figures),
        answered_queries=sum(f.answered_queries for f in figures),
        rows_verified=sum(f.rows_verified for f in figures),
        rows=sum(f.rows for f in figures),
        signed=sum(f.signed for f in figures),
        casebooks_locked=sum(f.casebooks_locked for f in figures),
        lock=LockKind.STUDY if any(f.lock == LockKind.STUDY for f in figures) else "",
        centres_locked=sum(f.centres_locked for f in figures),
    )
