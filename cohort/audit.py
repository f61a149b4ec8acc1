"""The audit trail (SPEC section 4): who and why attached to the events the triggers write
(`audit_context`), and the trail read once for every reader: the casebook page and its history,
the casebook PDF and the audit CSV export.

pghistory writes one event row per insert, update and removal of an audited row, in one event table
per model, with the context (who, why, from where) in a table of its own. The event tables are read
directly in one query: pghistory's Events.references() inlines every patient key per table and
finds each previous state with a correlated subquery, which took a minute for 2,000 patients; a
window function over the same rows takes well under a second.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import uuid
from collections.abc import Iterable, Iterator

import pghistory
import pghistory.runtime
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection, models

from cohort import crf
from cohort.models import FlagConfirmation, Patient, Query, QueryMessage, Signature, Verification


@contextlib.contextmanager
def audit_context(*, user: User | None, reason: str = "", source: str = "", own: bool = False) -> Iterator[None]:
    """Attach who and why to every audit event written inside (SPEC section 4).

    pghistory merges a context opened inside another into it: one who and why for the events of
    both. `own`: a context of its own even then, for work that is not the enclosing request's, such
    as the automatic data queries run in-process once a save commits (no broker): their events must
    neither take on the nurse's who nor write their why over her reason for change."""
    context: dict[str, object] = {}
    if user is not None:
        context["user"] = user.pk
        context["username"] = user.get_username()
    if reason:
        context["reason"] = reason
    if source:
        context["source"] = source
    outer = getattr(pghistory.runtime._tracker, "value", None)
    if own and outer is not None:
        # The enclosing context's hook stays installed and injects whichever context is current.
        pghistory.runtime._tracker.value = pghistory.runtime.Context(id=uuid.uuid4(), metadata=context)
        try:
            yield
        finally:
            pghistory.runtime._tracker.value = outer
        return
    with pghistory.context(**context):
        yield


# The audited models whose rows belong to a patient: the CRF forms, the flag confirmations and the
# monitoring of the casebook (SPEC section 10: queries and their messages, source data
# verification, signatures).
PATIENT_MODELS: tuple[type[models.Model], ...] = (
    *crf.MODELS,
    FlagConfirmation,
    Query,
    QueryMessage,
    Verification,
    Signature,
)
# Where an event table names its patient, when not in a patient_id column: the column, and the join
# that brings it. A query message's patient is its query's, joined so that the patients' queries are
# found by index and then their messages' events (a subquery per event filtered every message event
# of the cohort: 22 ms for one casebook with AMC's 5,480 queries at 100,000 patients, and growing).
_PATIENT_OF = {
    Patient: ("e.pgh_obj_id", ""),
    QueryMessage: ("q.patient_id", f' JOIN "{Query._meta.db_table}" q ON q.id = e.query_id'),
}


def _hidden(model: type[models.Model]) -> frozenset[str]:
    """Columns no reader shows: the app's bookkeeping, which the event's who and when say again."""
    return crf.attnames(model, crf.BOOKKEEPING)


def _kind(model: type[models.Model]) -> str:
    """The model's name in the trail's order: its data dictionary form, or its class name."""
    return next((name for name, form in crf.FILES.items() if form.model is model), model.__name__)


def _sql(tracked: Iterable[type[models.Model]]) -> str:
    """Every event of the patients (%(ids)s) across the models' event tables, with the previous
    state of the same record (the event before it), the context and the patient's study ID; by
    time, then form (the order the audit CSV has always had), then event."""
    context_table = apps.get_model("pghistory", "Context")._meta.db_table
    patient_table = Patient._meta.db_table
    selects = []
    for model in tracked:
        table = apps.get_model(model._meta.app_label, f"{model.__name__}Event")._meta.db_table
        patient, via = _PATIENT_OF.get(model, ("e.patient_id", ""))
        selects.append(
            f"SELECT '{_kind(model)}' AS kind, e.pgh_id, e.pgh_created_at, e.pgh_label, e.pgh_obj_id,"
            " p.study_id, to_jsonb(e)::text AS data,"
            " (lag(to_jsonb(e)) OVER (PARTITION BY e.pgh_obj_id ORDER BY e.pgh_id))::text AS previous,"
            " c.metadata::text AS context"
            f' FROM "{table}" e{via} JOIN "{patient_table}" p ON p.id = {patient}'
            f' LEFT JOIN "{context_table}" c ON c.id = e.pgh_context_id'
            f" WHERE {patient} = ANY(%(ids)s)"
        )
    return " UNION ALL ".join(selects) + " ORDER BY pgh_created_at, kind, pgh_id"


def _json(text: str | None) -> dict:
    # Numbers as pghistory's own JSON gives them (floats); the CSV renders them as decimals.
    return {} if text is None else json.loads(text)


@functools.lru_cache(maxsize=4096)
def _context(text: str | None) -> dict:
    """A context's metadata, parsed once: a request's or a command's events share it (a seeded
    cohort's two million events have one). Read only, never changed by the callers."""
    return _json(text)


# Rows fetched from the server-side cursor at a time: the trail of 100,000 patients is two million
# events, read and handed on in chunks so memory stays that of a chunk (docs/benchmarks.md).
CHUNK = 5000


def entries(patient_ids: Iterable[int], *, tracked: Iterable[type[models.Model]] = PATIENT_MODELS) -> list[dict]:
    """Every audit event of these patients and of their rows, oldest first (then by model and event),
    in one query: `iter_entries` as a list, for the readers of one patient's trail."""
    return list(iter_entries(patient_ids, tracked=tracked))


def iter_entries(
    patient_ids: Iterable[int], *, tracked: Iterable[type[models.Model]] = PATIENT_MODELS
) -> Iterator[dict]:
    """Every audit event of these patients and of their rows, oldest first (then by model and event),
    in one query read through a server-side cursor. An entry: at (aware, UTC), action (insert, update,
    delete), model (class name), form (its verbose name), file (the data dictionary form, None for a
    model outside it), event (the event's id in its table), record (the row's id, text), visit (an
    assessment's), study_id, user, user_id, reason, source, and changes {column: (old, new)} without
    the bookkeeping columns."""
    ids = list(patient_ids)
    tracked = tuple(tracked)
    if not ids or not tracked:
        return
    by_kind = {_kind(model): model for model in tracked}
    files = {form.model: name for name, form in crf.FILES.items()}
    hidden = {model: _hidden(model) for model in tracked}
    with connection.chunked_cursor() as cursor:
        cursor.execute(_sql(tracked), {"ids": ids})
        while events := cursor.fetchmany(CHUNK):
            for event in events:
                yield _entry(event, by_kind, files, hidden)


def _entry(event: tuple, by_kind: dict, files: dict, hidden: dict) -> dict:
    kind, event_id, created_at, action, record_id, study_id, data_text, previous_text, context_text = event
    model = by_kind[kind]
    data, previous, context = _json(data_text), _json(previous_text), _context(context_text)
    if action == "update":
        changes = {key: (previous.get(key), value) for key, value in data.items() if previous.get(key) != value}
    elif action == "insert":
        changes = {key: (None, value) for key, value in data.items()}
    else:
        changes = {key: (value, None) for key, value in data.items()}
    return {
        "at": created_at.astimezone(dt.UTC),
        "action": action,
        "model": model.__name__,
        "form": str(model._meta.verbose_name),
        "file": files.get(model),
        "event": event_id,
        "record": str(record_id),
        "visit": data.get("visit") or previous.get("visit"),
        "study_id": study_id,
        "user": context.get("username"),
        "user_id": context.get("user"),
        "reason": context.get("reason", ""),
        "source": context.get("source") or context.get("url", ""),
        "changes": {
            key: change for key, change in changes.items() if not key.startswith("pgh_") and key not in hidden[model]
        },
    }
