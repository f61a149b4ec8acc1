"""The study data as plain rows for reports/outcomes.py, in a fixed number of queries (one per
form) whatever the number of patients. Soft-deleted patients are left out (SPEC section 4).

The one loader of the study data: the cohort report reads a scope (all, or a centre), an export
reads the queryset of patients its user may see (`patients=`); `load_records` adds what the wide
export writes beyond the outcome module's view (the forms' values as entered), in the same queries.
The outcome recompute reads a scope as columns instead (`load_columns`, below: numpy arrays for
reports/outcome_columns.py, sent by PostgreSQL in its binary COPY format).

The queries do the cheap reshaping in PostgreSQL (codes to booleans, decimals to floats, the HBI
total, doses reduced to the two induction dates and a count) so that 100,000 patients load in a
couple of seconds: per-row Python work is what costs at that size (docs/benchmarks.md)."""

from __future__ import annotations

import contextlib
import gc
import io
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import QuerySet
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

from cohort import crf
from cohort.access import ALL_SCOPE
from cohort.models import ACTIVE_PATIENT_SQL
from reports import outcome_columns
from reports.outcomes import ANTI_TNF_AGENTS, NONRESPONSE, AdverseEventData, AssessmentData, FollowUpData, PatientData

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
# A patient's doses as PatientData has them: the two induction dates and the maintenance count.
DOSE_VALUES = (
    "min(x.dose_date) FILTER (WHERE x.phase = 'initial_induction')",
    "min(x.dose_date) FILTER (WHERE x.phase = 'reinduction')",
    "count(*) FILTER (WHERE x.phase = 'maintenance')",
)
DOSES = "SELECT x.patient_id, " + ", ".join(DOSE_VALUES) + FORM + " GROUP BY x.patient_id"
REINDUCTION = (
    "SELECT x.patient_id, x.interval_before, x.interval_after, x.corticosteroids = 'yes', x.immunomodulator" + FORM
)
# hbi: the SQL form of the model's rule (cohort/models.py Assessment.hbi_total): the component sum
# when all five are given, else the entered total. The other values as AssessmentData has them.
ASSESSMENT_VALUES = {
    "not_done": "{x}.not_done = 'yes'",
    "assessment_date": "{x}.assessment_date",
    "hbi": "CASE WHEN {x}.hbi_wellbeing IS NOT NULL AND {x}.hbi_pain IS NOT NULL AND {x}.hbi_stools IS NOT NULL"
    " AND {x}.hbi_mass IS NOT NULL AND {x}.hbi_complications IS NOT NULL"
    " THEN {x}.hbi_wellbeing + {x}.hbi_pain + {x}.hbi_stools + {x}.hbi_mass + {x}.hbi_complications ELSE {x}.hbi END",
    "crp_mg_l": "{x}.crp_mg_l::float8",
    "fcal_ug_g": "{x}.fcal_ug_g::float8",
    "endoscopy_done": "CASE WHEN {x}.endoscopy_done = '' THEN NULL ELSE {x}.endoscopy_done = 'yes' END",
    "ses_cd": "{x}.ses_cd",
    "corticosteroids": "CASE WHEN {x}.corticosteroids = '' THEN NULL ELSE {x}.corticosteroids = 'yes' END",
}
assert tuple(ASSESSMENT_VALUES) == AssessmentData._fields[1:]
ASSESSMENTS = (
    "SELECT x.patient_id, x.visit, "
    + ", ".join(value.format(x="x") for value in ASSESSMENT_VALUES.values())
    + " {details}"
    + FORM
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
        # An array computed once (an InitPlan), not IN (subquery): PostgreSQL then reads the chunk's
        # patients through the primary key and their forms through the patient_id indexes, where
        # the semi-join read all the patients for every query of every chunk of an export (140
        # scans of 100,000 rows at 100,000 patients; docs/benchmarks.md).
        return f"AND p.id = ANY(ARRAY({sql}))", list(params)
    return ("", []) if scope == ALL_SCOPE else ("AND c.code = %s", [scope])


def load_patients(scope: str = ALL_SCOPE, *, patients: QuerySet | None = None) -> list[PatientData]:
    """Every (not deleted) patient of the scope ('all' or a centre code), or of the queryset when one
    is given, ordered by study ID."""
    return _load(_where(scope, patients), details=False)[0]


def load_records(patients: QuerySet) -> list[Record]:
    """The (not deleted) patients of the queryset with their entered values, ordered by study ID."""
    return _records(*_load(_where(ALL_SCOPE, patients), details=True))


def _records(data: list[PatientData], entered: list[tuple[dict, dict]]) -> list[Record]:
    return [Record(patient, *values) for patient, values in zip(data, entered, strict=True)]


# Patients per chunk of `iter_records`: memory for 5,000 records, 7 queries per chunk.
CHUNK = 5000
# Stands for the previous chunk's last study ID in the keyset query compiled once (`iter_records`).
_AFTER = "\uffffafter\uffff"


def iter_records(patients: QuerySet, *, chunk: int = CHUNK) -> Iterator[Record]:
    """`load_records` of the queryset in chunks of patients by study ID (keyset: each chunk the next
    `chunk` study IDs), so an export of 100,000 patients holds one chunk's records at a time. The
    same rows in the same order as `load_records`; with fewer patients than `chunk`, the same 7
    queries.

    While the caller works through a chunk's records, the next chunk's 7 queries run on this
    connection from a second thread (one chunk ahead, so two chunks' rows at most): PostgreSQL
    produces them on the other core instead of the export waiting for it (2.7 of the wide CSV's 8.5
    CPU seconds at 100,000 patients, docs/benchmarks.md). The caller must not use this connection
    between records; the writers of reports/exports.py never do.

    Python's cyclic garbage collector is off until the last record: the export allocates some
    hundred million tuples, dicts and dates, none in a reference cycle (refcounting frees them), and
    each allocation-counted collection walked every live one of them: reading and assembling 10,000
    patients' records 0.50 -> 0.24 s CPU; the 100,000-patient wide CSV 8.6-9.1 -> 5.8 s of Python."""
    with _no_cycle_collection():
        yield from _iter_records(patients, chunk)


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _iter_records(patients: QuerySet, chunk: int) -> Iterator[Record]:
    patients = patients.active().order_by("study_id")
    first = _where(ALL_SCOPE, patients[:chunk])
    if first is None:
        return
    # The keyset query compiled here, once: the thread runs SQL, it never compiles a queryset.
    keyset, keyset_params = _where(ALL_SCOPE, patients.filter(study_id__gt=_AFTER)[:chunk])
    at = keyset_params.index(_AFTER)

    def after(study_id: str) -> tuple[str, list]:
        return keyset, [*keyset_params[:at], study_id, *keyset_params[at + 1 :]]

    with connection.cursor() as cursor, ThreadPoolExecutor(max_workers=1) as ahead:
        pending = ahead.submit(_read, cursor, first, details=True)
        while pending is not None:
            rows = pending.result()
            base = rows["base"]
            # A full chunk may have a next one; its study IDs follow this chunk's last (column 1).
            pending = ahead.submit(_read, cursor, after(base[-1][1]), details=True) if len(base) == chunk else None
            yield from _records(*_patient_data(rows, details=True))


def _load(where: tuple[str, list] | None, *, details: bool) -> tuple[list[PatientData], list[tuple[dict, dict]]]:
    """PatientData per patient, and with `details` (entered patient values, entered assessments)."""
    if where is None:
        return [], []
    with connection.cursor() as cursor:
        return _patient_data(_read(cursor, where, details=details), details=details)


def _read(cursor, where: tuple[str, list], *, details: bool) -> dict[str, list[tuple]]:
    """The 7 queries' rows, as psycopg2 returns them."""
    patient_fields = crf.FILES["patients"].fields if details else ()
    assessment_fields = crf.FILES["assessments"].fields if details else ()
    return {
        "base": _fetch(cursor, PATIENTS, None, where, "".join(f", p.{name}" for name in patient_fields)),
        "agents": _fetch(cursor, PRIOR_AGENTS, "cohort_priorbiologic", where),
        "doses": _fetch(cursor, DOSES, "cohort_ustekinumabdose", where),
        "forms": _fetch(cursor, REINDUCTION, "cohort_reinduction", where),
        "assessments": _fetch(
            cursor, ASSESSMENTS, "cohort_assessment", where, "".join(f", x.{name}" for name in assessment_fields)
        ),
        "follow_ups": _fetch(cursor, FOLLOW_UP, "cohort_followup", where),
        "events": _fetch(cursor, ADVERSE_EVENTS, "cohort_adverseevent", where),
    }


def _patient_data(rows: dict[str, list[tuple]], *, details: bool) -> tuple[list[PatientData], list[tuple[dict, dict]]]:
    """`_read`'s rows as PatientData per patient, and with `details` (entered patient values,
    entered assessments)."""
    patient_fields = crf.FILES["patients"].fields if details else ()
    assessment_fields = crf.FILES["assessments"].fields if details else ()
    agents = dict(rows["agents"])
    doses = {row[0]: row[1:] for row in rows["doses"]}
    forms = {row[0]: row[1:] for row in rows["forms"]}
    assessments = defaultdict(list)
    entered: dict[int, dict[str, dict]] = defaultdict(dict)
    width = len(AssessmentData._fields) + 1
    for row in rows["assessments"]:
        assessments[row[0]].append(AssessmentData._make(row[1:width]))
        if details:
            entered[row[0]].setdefault(row[1], dict(zip(assessment_fields, row[width:], strict=True)))
    follow_ups = {row[0]: FollowUpData._make(row[1:]) for row in rows["follow_ups"]}
    events = defaultdict(list)
    for row in rows["events"]:
        events[row[0]].append(AdverseEventData._make(row[1:]))

    no_doses = (None, None, 0)
    no_form = (None, None, None, None)
    result, details_of = [], []
    for pk, *values in rows["base"]:
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


# ---------------------------------------------------------------------------------------------
# The scope as columns (reports/outcome_columns.py) for the recompute. What costs at 100,000
# patients is per-row work, in PostgreSQL as in Python: joining and grouping 2 million form rows
# in SQL took longer than reading them. So each table is read once, in its own plain query, and
# sent in PostgreSQL's binary COPY format with every value a fixed-width int4 or float8 (NULL
# replaced by outcome_columns' sentinels): a query's answer is one numpy structured array, read
# without a Python object per value. numpy then puts each form row on its patient's row (a table
# from patient ID to row) and counts per patient (`np.bincount`). Five queries whatever the number
# of patients; a centre's rows are found through the patient_id indexes, not by reading every row.
# In the worker's snapshot the five are split over two connections sharing it (load_columns), so
# PostgreSQL produces them on two cores; the induction dates come from their doses' unique indexes
# alone (cohort migration 0015), never from the table of every dose.

NULL_INT = outcome_columns.NULL_INT
NULL_SQL = {"i4": f"{outcome_columns.NULL_INT}", "f8": "'NaN'"}
SQL_TYPE = {"i4": "int4", "f8": "float8"}
VISITS = ("week_0", *outcome_columns.FOLLOW_UP_VISITS)
# The codes the other forms' rows are sent as (position + 1; 0 for another value).
AGENTS = (*sorted(ANTI_TNF_AGENTS), "vedolizumab")


def _days(value: str) -> str:
    """A date as days since 1970-01-01 (outcome_columns' dates)."""
    return f"({value}) - DATE '1970-01-01'"


def _code(value: str, codes: tuple[str, ...]) -> tuple[str, list]:
    """The value's position in `codes` plus one, 0 for another value (NULL stays NULL). A CASE of
    comparisons: per row cheaper than array_position over an array of the codes."""
    positions = " ".join(f"WHEN {value} = %s THEN {position}" for position in range(1, len(codes) + 1))
    return f"CASE WHEN {value} IS NULL THEN NULL {positions} ELSE 0 END", list(codes)


def _patient_columns() -> list[tuple[str, str, str, list]]:
    """(column, type, SQL expression, parameters) of the patients query: the patient and the
    one-per-patient rows (the induction doses i and t, reinduction r, follow_up f)."""
    codes = outcome_columns.CODES
    columns = [("id", "i4", "p.id", []), ("centre_id", "i4", "p.centre_id", [])]
    for name, value in (
        ("sex", "p.sex"),
        ("birth_year", "p.birth_year"),
        ("diagnosis_year", "p.diagnosis_year"),
        ("montreal_location", "p.montreal_location"),
        ("upper_gi", "p.upper_gi = 'yes'"),
        ("montreal_behaviour", "p.montreal_behaviour"),
        ("perianal", "p.perianal = 'yes'"),
        ("prior_resection", "p.prior_resection = 'yes'"),
        ("smoking", "p.smoking"),
        ("initial_induction_date", _days("i.dose_date")),
        ("reinduction_date", _days("t.dose_date")),
        ("interval_before", "r.interval_before"),
        ("interval_after", "r.interval_after"),
        ("corticosteroids_at_reinduction", "r.corticosteroids = 'yes'"),
        ("immunomodulator", "r.immunomodulator"),
        ("follow_up", "f.id IS NOT NULL"),
        ("discontinued", "f.status = 'discontinued'"),
        ("last_follow_up_date", _days("f.last_follow_up_date")),
        ("discontinuation_date", _days("f.discontinuation_date")),
    ):
        expression, params = _code(value, codes[name]) if name in codes else (value, [])
        columns.append((name, "i4", expression, params))
    columns.append(("nonresponse", "i4", "f.discontinuation_reason = %s", [NONRESPONSE]))
    return columns


def _assessment_columns() -> list[tuple[str, str, str, list]]:
    visit, params = _code("x.visit", VISITS)
    columns = [("patient_id", "i4", "x.patient_id", []), ("visit", "i4", visit, params)]
    for name in outcome_columns.VISIT_VALUES[1:]:
        value = ASSESSMENT_VALUES[name].format(x="x")
        kind = "f8" if name in outcome_columns.FLOAT_VALUES else "i4"
        columns.append((name, kind, _days(value) if name == "assessment_date" else value, []))
    return columns


def _queries() -> dict[str, tuple[list[tuple[str, str, str, list]], str, list]]:
    """Per query: its columns, its FROM clause ({scope}: the rows of the scope's patients) and
    that clause's own parameters (after the scope's)."""
    agent, agent_params = _code("x.agent", AGENTS)
    category, category_params = _code("x.category", outcome_columns.AE_CATEGORIES)
    done = f"({ASSESSMENT_VALUES['not_done'].format(x='x')}) IS NOT TRUE"
    return {
        "patients": (
            _patient_columns(),
            "FROM cohort_patient p JOIN cohort_centre c ON c.id = p.centre_id"
            " LEFT JOIN cohort_reinduction r ON r.patient_id = p.id LEFT JOIN cohort_followup f ON f.patient_id = p.id"
            # At most one of each induction dose per patient: read through their unique indexes.
            " LEFT JOIN cohort_ustekinumabdose i ON i.patient_id = p.id AND i.phase = 'initial_induction'"
            " LEFT JOIN cohort_ustekinumabdose t ON t.patient_id = p.id AND t.phase = 'reinduction'"
            " WHERE p.{active} {condition} ORDER BY p.id",
            [],
        ),
        # The number of doses per patient, from the patient_id index alone: those that are not
        # one of the two induction doses (on the patients query's rows) are maintenance doses,
        # the phase being one of three (a check constraint).
        "doses": (
            [("patient_id", "i4", "x.patient_id", []), ("doses", "i4", "count(*)", [])],
            "FROM cohort_ustekinumabdose x {scope} GROUP BY x.patient_id",
            [],
        ),
        "agents": (
            [("patient_id", "i4", "x.patient_id", []), ("agent", "i4", agent, agent_params)],
            "FROM cohort_priorbiologic x {scope}",
            [],
        ),
        "adverse_events": (
            [
                ("patient_id", "i4", "x.patient_id", []),
                ("category", "i4", category, category_params),
                ("serious", "i4", "x.serious = 'yes'", []),
                ("led_to_discontinuation", "i4", "x.led_to_discontinuation = 'yes'", []),
            ],
            "FROM cohort_adverseevent x {scope}",
            [],
        ),
        "assessments": (_assessment_columns(), "FROM cohort_assessment x {scope} AND " + done, []),
    }


def _query(
    columns: list[tuple[str, str, str, list]], sources: str, source_params: list, scope: str
) -> tuple[str, list, np.dtype]:
    """COPY of the query in binary, its parameters, and the numpy type of its rows."""
    select = ", ".join(
        f"coalesce(({expression})::{SQL_TYPE[kind]}, {NULL_SQL[kind]})" for _name, kind, expression, _params in columns
    )
    params = [param for *_rest, column_params in columns for param in column_params]
    condition, scope_params = ("", []) if scope == ALL_SCOPE else ("AND c.code = %s", [scope])
    patients = (
        "SELECT p.id FROM cohort_patient p JOIN cohort_centre c ON c.id = p.centre_id"
        f" WHERE p.{ACTIVE_PATIENT_SQL} {condition}"
    )
    # All: every row (those of deleted patients find no patient row and are left out below).
    # A centre: its patients' rows, found through the patient_id index (one bitmap scan).
    rows_of_scope = "WHERE true" if scope == ALL_SCOPE else f"WHERE x.patient_id = ANY(ARRAY({patients}))"
    sql = sources.format(active=ACTIVE_PATIENT_SQL, condition=condition, scope=rows_of_scope)
    params += scope_params + source_params
    dtype = np.dtype([(name, kind) for name, kind, *_rest in columns])
    return f"COPY (SELECT {select} {sql}) TO STDOUT (FORMAT binary)", params, dtype


# The tables read on the second connection when the load is split (load_columns): together they
# cost PostgreSQL about what the other three do (EXPLAIN ANALYZE at 100,000 patients).
SECOND_CONNECTION = ("assessments", "doses")


def load_columns(scope: str = ALL_SCOPE, *, share_snapshot: bool = False) -> dict[str, np.ndarray]:
    """Every (not deleted) patient of the scope ('all' or a centre code) in outcome_columns'
    columns, ordered by the patients' primary key.

    With `share_snapshot`, the caller's transaction must see committed data only, in a snapshot
    another connection may import (services.data_snapshot's own REPEATABLE READ READ ONLY
    transaction): the queries are then split over this connection and a second one that imports
    the snapshot (`pg_export_snapshot`), so PostgreSQL produces the two halves on two cores at
    once. The same rows either way; one more query (the export)."""
    queries = {table: _query(*query, scope) for table, query in _queries().items()}
    with connection.cursor() as cursor:
        if share_snapshot:
            return _assemble(_load_on_two_connections(cursor, queries))
        return _assemble({table: _copy_rows(cursor, *query) for table, query in queries.items()})


def _copy_rows(cursor, sql: str, params: list, dtype: np.dtype, raw=None) -> dict[str, np.ndarray]:
    return _binary_rows(_copy_binary(cursor, sql, params, raw), dtype)


def _load_on_two_connections(cursor, queries: dict[str, tuple[str, list, np.dtype]]) -> dict[str, dict]:
    """The queries' rows, SECOND_CONNECTION's read by a thread on a second connection in this
    transaction's snapshot while this one reads the others."""
    cursor.execute("SELECT pg_export_snapshot()")
    (snapshot,) = cursor.fetchone()
    with connection.wrap_database_errors:
        second = connection.get_new_connection(connection.get_connection_params())
    try:
        second.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        raw = second.cursor()
        with connection.wrap_database_errors:
            raw.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])

        def read_second() -> dict[str, dict]:
            return {table: _copy_rows(cursor, *queries[table], raw=raw) for table in SECOND_CONNECTION}

        with ThreadPoolExecutor(max_workers=1) as pool:
            of_second = pool.submit(read_second)
            tables = {
                table: _copy_rows(cursor, *query) for table, query in queries.items() if table not in SECOND_CONNECTION
            }
            tables.update(of_second.result())
    finally:
        second.close()
    return tables


def _assemble(tables: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One value per patient and column: the patients query's values, and the other tables' rows
    put on their patient's row (rows of patients outside the scope, such as deleted ones, are left
    out)."""
    patients = tables["patients"]
    ids = patients["id"]
    count = len(ids)
    columns = outcome_columns.null_columns(count)
    columns.update((name, values) for name, values in patients.items() if name != "id")

    # Row number by patient ID: a direct table (IDs are a sequence; deleted ones are gaps).
    row_of = np.full(int(ids.max(initial=0)) + 2, -1, dtype=np.int64)
    row_of[ids] = np.arange(count)

    def place(table: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The table's rows that belong to a patient of the scope, and that patient's row number."""
        position = row_of[np.minimum(table["patient_id"], len(row_of) - 1)]
        found = position >= 0
        return {name: values[found] for name, values in table.items()}, position[found]

    doses, at = place(tables["doses"])
    inductions = (columns["initial_induction_date"] != NULL_INT).astype(np.int32)
    inductions += columns["reinduction_date"] != NULL_INT
    all_doses = np.bincount(at, weights=doses["doses"], minlength=count).astype(np.int32)
    columns["maintenance_doses"] = all_doses - inductions

    # outcomes.distinct_anti_tnf (each agent once) and 'vedolizumab in prior_agents'.
    agents, at = place(tables["agents"])
    given = np.zeros((count, len(AGENTS) + 1), dtype=bool)
    given[at, agents["agent"]] = True
    columns["anti_tnf_agents"] = given[:, 1 : len(AGENTS)].sum(axis=1, dtype=np.int32)
    columns["vedolizumab"] = given[:, len(AGENTS)].astype(np.int32)

    events, at = place(tables["adverse_events"])

    def per_patient(rows: np.ndarray) -> np.ndarray:
        return np.bincount(rows, minlength=count).astype(np.int32)

    columns["adverse_events"] = per_patient(at)
    columns["serious_adverse_events"] = per_patient(at[events["serious"] == 1])
    columns["adverse_events_led_to_discontinuation"] = per_patient(at[events["led_to_discontinuation"] == 1])
    for code, category in enumerate(outcome_columns.AE_CATEGORIES, start=1):
        columns[f"adverse_events_{category}"] = per_patient(at[events["category"] == code])
    columns["adverse_events_unknown_category"] = per_patient(at[events["category"] == 0])

    # Each visit's done assessment (at most one per patient and visit: a database constraint).
    assessments, at = place(tables["assessments"])
    for code, visit in enumerate(VISITS, start=1):
        of_visit = assessments["visit"] == code
        here = at[of_visit]
        columns[f"{visit}_done"][here] = 1
        names = outcome_columns.WEEK_0_VALUES if visit == "week_0" else outcome_columns.VISIT_VALUES[1:]
        for name in names:
            columns[f"{visit}_{name}"][here] = assessments[name][of_visit]
    return columns


def _copy_binary(cursor, sql: str, params: list, raw=None) -> bytes:
    """COPY ... TO STDOUT through psycopg2 (on `raw`, a cursor of a second connection, when given),
    logged and error-wrapped as cursor.execute would be (so the query counts of the tests and the
    benchmark see it)."""
    raw = raw or cursor.cursor
    statement = raw.mogrify(sql, params).decode()
    buffer = io.BytesIO()
    logged = cursor.debug_sql(statement) if hasattr(cursor, "debug_sql") else contextlib.nullcontext()
    with logged, connection.wrap_database_errors:
        raw.copy_expert(statement, buffer)
    return buffer.getvalue()


COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _binary_rows(data: bytes, dtype: np.dtype) -> dict[str, np.ndarray]:
    """PostgreSQL's binary COPY stream (a header, then per row a field count and each field's
    length and big-endian value; a trailer) as one array per field of `dtype`, every field
    fixed-width."""
    if not data.startswith(COPY_SIGNATURE):
        raise ValueError("not a binary COPY stream")
    start = 19 + int.from_bytes(data[15:19], "big")
    wire = np.dtype(
        [("fields", ">i2")]
        + [item for name in dtype.names for item in ((f"{name}__length", ">i4"), (name, dtype[name].newbyteorder(">")))]
    )
    count = (len(data) - start - 2) // wire.itemsize
    if start + count * wire.itemsize + 2 != len(data):
        raise ValueError("binary COPY stream of an unexpected row width")
    rows = np.frombuffer(data, dtype=wire, count=count, offset=start)
    for name in dtype.names:
        if np.any(rows[f"{name}__length"] != dtype[name].itemsize):
            raise ValueError(f"binary COPY stream: {name} is not a fixed-width value")
    return {name: rows[name].astype(dtype[name]) for name in dtype.names}
