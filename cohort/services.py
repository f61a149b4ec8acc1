"""Writes that touch several rows or need the audit context (STYLE: services)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Callable
from decimal import Decimal

from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import DEFAULT_DB_ALIAS, models, transaction
from django.db.models import IntegerField, Max
from django.db.models.functions import Cast, Substr
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from cohort import audit, crf, display, locks, prepared, signals, validators
from cohort.audit import audit_context
from cohort.crf import PatientRecord
from cohort.models import (
    ACTIVE_PATIENT_SQL,
    REASON_MAX_LENGTH,
    Centre,
    FlagConfirmation,
    Lock,
    LockKind,
    Patient,
)

SYSTEM_USERNAME = "system"


def system_user() -> User:
    """The account that commands act as when no --user is given (audit entries need a who)."""
    user, _ = User.objects.get_or_create(
        username=SYSTEM_USERNAME, defaults={"is_active": False, "first_name": "System"}
    )
    return user


def centre_create(*, code: str, name: str, by: User | None = None) -> Centre:
    centre = Centre(code=code, name=name)
    centre.full_clean()
    with transaction.atomic(), audit_context(user=by, source="create_centre"):
        centre.save()
    return centre


def next_study_id(centre: Centre) -> str:
    """The centre's next free study ID. Call inside a transaction holding the centre's row lock."""
    prefix = f"{centre.code}-"
    highest = (
        Patient.all_objects.filter(centre=centre, study_id__startswith=prefix)
        .annotate(number=Cast(Substr("study_id", len(prefix) + 1), IntegerField()))
        .aggregate(highest=Max("number"))["highest"]
    )
    return f"{prefix}{(highest or 0) + 1:03d}"


def _data_changed(patient: Patient) -> None:
    """The database has asked for a recompute (trigger), and the caller for the patient's automatic
    data queries (locked_record, request_data_checks); say so to whoever listens (reports wakes
    workers once this commits) for the whole cohort and the patient's centre, and for the patient."""
    signals.outcomes_changed(patient.centre.code, patients=[patient.pk])


def patient_enrol(*, centre: Centre, by: User, **data) -> Patient:
    """Enrol a patient: the study ID is assigned here, never taken from the caller.

    Two nurses enrolling at once both lock the centre row first, so the second waits for the
    first to commit and then sees its number (no duplicate study IDs, no retry loop).
    """
    with transaction.atomic(), audit_context(user=by, source="enrol"):
        centre = Centre.objects.select_for_update().get(pk=centre.pk)
        patient = Patient(centre=centre, created_by=by, **data)
        locks.refuse_if_locked(Patient(centre=centre))
        patient.study_id = next_study_id(centre)
        validators.raise_for(validators.check(PatientRecord(patient)), patient)
        patient.save()
        request_data_checks([patient.pk])
        _data_changed(patient)
    return patient


def with_forms(
    patients: models.QuerySet[Patient], *, by_id: bool = False, confirmations: bool = True
) -> models.QuerySet[Patient]:
    """The patients with every row of their CRF (and their flag confirmations), in a fixed number
    of queries whatever their number. `by_id`: a repeating form's rows in the order they were
    entered, not the model's (the importer compares them with a file's rows)."""
    single = [form.attribute for form in crf.FILES.values() if not form.many and form.model is not Patient]
    many = [form for form in crf.FILES.values() if form.many]
    prefetch = [
        models.Prefetch(
            form.attribute, queryset=form.model.objects.order_by(*("id",) if by_id else _within_patient(form.model))
        )
        for form in many
    ]
    if confirmations:
        prefetch.append("flag_confirmations")
    return patients.select_related("centre", *single).prefetch_related(*prefetch)


def records_of(patients: list[Patient]) -> list[PatientRecord]:
    """The whole CRF of each of these patients (read with their centres: a page of a list), in
    their order and in one query whatever their number: every form's rows and the confirmed flags
    of all of them in one statement, as JSON (`read_record`'s columns per patient). The same
    records as `with_forms` then `patient_record`: Django's prefetch cloned a queryset per patient
    and form (a list page of 25 at 100,000 patients: 12 ms of CPU), the six queries of a query per
    form grouped here about half that."""
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(_read_many_sql(), [[patient.pk for patient in patients]])
        found = {row[0]: row[1:] for row in cursor.fetchall()}
    records = []
    for patient in patients:
        *forms_json, confirmed_json = found[patient.pk]
        confirmed = frozenset(tuple(key) for key in json.loads(confirmed_json or "[]"))
        records.append(PatientRecord(patient=patient, **_attach(patient, forms_json), confirmed=confirmed))
    return records


def _within_patient(model: type[models.Model]) -> list[str]:
    """A repeating form's order within one patient: the model's, less its leading "patient". That
    is Patient's study_id, which made every prefetch join the whole patient table to sort by it,
    while a prefetch groups the rows by patient anyway (the same order, 34 ms less at 100,000)."""
    return [field for field in model._meta.ordering if field != "patient"]


def patient_record(patient: Patient, *, confirmations: bool = True) -> PatientRecord:
    """A patient's whole CRF from the database (7 queries, fewer for what is prefetched).
    `confirmations`: read the confirmed flags too (what shows flags needs them; a save does not)."""
    rows = {
        form.attribute: list(getattr(patient, form.attribute).all()) if form.many else _one(patient, form.attribute)
        for form in crf.FILES.values()
        if form.model is not Patient
    }
    return PatientRecord(
        patient=patient,
        **rows,
        confirmed=frozenset(c.key for c in patient.flag_confirmations.all()) if confirmations else frozenset(),
    )


def _one(patient: Patient, relation: str):
    try:
        return getattr(patient, relation)
    except ObjectDoesNotExist:
        return None


def patient_soft_delete(*, patient: Patient, by: User, reason: str) -> None:
    """Remove a patient from every list and analysis; the row and its audit trail stay. The reason
    is required and kept whole in the audit trail: one too long is refused, never cut."""
    reason = reason.strip()
    if not reason:
        raise ValidationError(gettext("Give the reason for removing the patient; nothing was removed."))
    if len(reason) > REASON_MAX_LENGTH:
        raise ValidationError(
            gettext("The reason can be at most %(limit)d characters (this one has %(length)d); nothing was removed."),
            params={"limit": REASON_MAX_LENGTH, "length": len(reason)},
        )
    locks.refuse_if_locked(patient)
    with transaction.atomic(), audit_context(user=by, reason=reason, source="delete"):
        Patient.all_objects.filter(pk=patient.pk).update(deleted_at=timezone.now())
        _data_changed(patient)


class NothingToConfirm(Exception):
    """The flag is gone (the value was changed) or was confirmed already."""


def flag_confirm(*, patient: Patient, form: str, row_id: int, field: str, by: User, comment: str = ""):
    """Confirm a soft flag as it stands now: the values it was raised on are recorded with it. The
    comment is kept whole: one longer than the confirmation holds is refused, never cut."""
    limit = FlagConfirmation._meta.get_field("comment").max_length
    if len(comment) > limit:
        raise ValidationError(
            gettext(
                "The comment can be at most %(limit)d characters (this one has %(length)d); the flag was not confirmed."
            ),
            params={"limit": limit, "length": len(comment)},
        )
    with transaction.atomic(), audit_context(user=by, reason=comment, source="flag"):
        record, _locks = locked_record(patient.pk)
        confirmed = FlagConfirmation.objects.filter(patient=record.patient)
        record = dataclasses.replace(record, confirmed=frozenset(c.key for c in confirmed))
        flag = next(
            (f for f in validators.soft_flags(record) if f.key[:3] == (form, row_id, field)),
            None,
        )
        if flag is None:
            raise NothingToConfirm(field)
        signals.flag_confirmed(record.patient.pk)
        return FlagConfirmation.objects.create(
            patient=record.patient,
            form=form,
            row_id=row_id,
            field=field,
            basis=flag.basis,
            comment=comment,
            confirmed_by=by,
        )


def patient_audit_trail(patient: Patient) -> list[dict]:
    """Every audit event of the patient and of the rows of their forms, oldest first: when (UTC),
    who, why, which record, and per field the old and the new value (SPEC section 4); one query."""
    # Oldest first by event, as pghistory's own reader ordered the casebook's trail.
    return sorted(audit.entries([patient.pk]), key=lambda entry: (entry["at"], entry["event"]))


class EditConflict(Exception):
    """Someone else saved the form after this user opened it (optimistic lock)."""

    def __init__(self, changes: list[tuple[str, str, str]]):
        super().__init__("The form was changed by someone else after you opened it.")
        self.changes = changes  # (field label, value when opened, value now)


REASON_REQUIRED = gettext_noop("a reason for change is required: this form was marked complete.")


def check_edit(row, stored, *, expected_version: int | None, reason: str) -> None:
    """Whether `row` may be written over (or remove) `stored`, what the database holds now: the
    version the user opened must still be the stored one (optimistic lock; else EditConflict with
    what changed meanwhile), and a form marked complete needs a reason for change. The casebook's
    save and removal and the admin's form all ask here."""
    model = type(row)
    if stored is None and row.pk:
        raise EditConflict(_changes(model, _snapshot(model, row.pk, expected_version), None))
    if stored is not None and not row.pk:
        raise EditConflict(_changes(model, None, stored))
    if stored is not None and stored.version != expected_version:
        raise EditConflict(_changes(model, _snapshot(model, row.pk, expected_version), stored))
    if stored is not None and stored.needs_reason_for_change and not reason.strip():
        raise ValidationError({"reason_for_change": gettext(REASON_REQUIRED)})


def crf_row_save(*, row, by: User, expected_version: int | None, reason: str = "", source: str = "web"):
    """Save one CRF row from the web: validate it against the patient's whole record, refuse a
    stale version, require a reason to change a completed form, and audit who and why.

    Saves of one patient are serialised by locking the patient row, so cross-form rules are
    checked against what the other forms hold at that moment.
    """
    with transaction.atomic(), audit_context(user=by, reason=reason, source=source):
        record, active_locks = locked_record(row.pk if isinstance(row, Patient) else row.patient_id)
        patient = record.patient
        stored = record.stored(row)
        locks.refuse_if_locked(patient, stored, among=active_locks)
        missing_reason = {}
        try:
            check_edit(row, stored, expected_version=expected_version, reason=reason)
        except ValidationError as error:  # reported with the rules' problems: one save, every problem
            missing_reason = error.message_dict
        if not isinstance(row, Patient):
            row.patient = patient
        record = record.with_row(row)
        validators.raise_for(validators.check(record, [row]), row, also=missing_reason)
        _data_changed(patient)
        if stored is None:
            row.save()
            return row
        updated = _update_row(row, expected_version)
        if updated != 1:  # cannot happen under the patient lock; kept as the last line of defence
            raise EditConflict([])
        row.version = expected_version + 1
    return row


def _update_row(row, expected_version: int) -> int:
    """Write the row's entered fields if it is still at `expected_version`, as the ORM's
    `filter(pk=..., version=...).update(**values, version=F("version") + 1, updated_at=now)` would
    (each value prepared by its field, as the ORM does); the number of rows written."""
    model = type(row)
    sql, fields = _update_statement(model)
    connection = transaction.get_connection()
    params = [field.get_db_prep_save(getattr(row, field.attname), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, timezone.now(), row.pk, expected_version])
        return cursor.rowcount


@functools.cache
def _update_statement(model) -> tuple[str, list[models.Field]]:
    """_update_row's statement, composed once per process and model: composing it with the ORM at
    every save cost about 5% of a save's CPU. tests/test_record_read.py holds it to the ORM's update."""
    fields = crf.entered_fields(model)
    quote = transaction.get_connection().ops.quote_name
    table = quote(model._meta.db_table)
    version, updated_at = (quote(model._meta.get_field(name).column) for name in ("version", "updated_at"))
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = (
        f"UPDATE {table} SET {assignments}, {version} = {version} + 1, {updated_at} = %s"
        f" WHERE {quote(model._meta.pk.column)} = %s AND {version} = %s"
    )
    return sql, fields


def crf_row_delete(*, row, by: User, expected_version: int | None, reason: str = "") -> None:
    """Remove one row of a repeating form; the audit trail keeps it."""
    with transaction.atomic(), audit_context(user=by, reason=reason, source="web"):
        record, active_locks = locked_record(row.patient_id)
        patient = record.patient
        stored = record.stored(row)
        locks.refuse_if_locked(patient, stored, among=active_locks)
        check_edit(row, stored, expected_version=expected_version, reason=reason)
        # Refuse a removal that would break a rule of the rest of the record (the re-induction dose
        # that every later form's dates depend on, say); what was broken before is not its fault.
        before = {_problem_key(problem) for problem in validators.cross_form_problems(record)}
        after = [p for p in validators.cross_form_problems(record.without_row(stored)) if _problem_key(p) not in before]
        if after:
            raise ValidationError([gettext(REMOVAL_BREAKS) % {"row": stored}] + [str(problem) for problem in after])
        stored.delete()
        _data_changed(patient)


REMOVAL_BREAKS = gettext_noop("%(row)s cannot be removed: the rest of the record depends on it.")


def _problem_key(problem) -> tuple:
    return (type(problem.row), problem.row.pk, problem.field, problem.message)


def locked_record(patient_id: int) -> tuple[PatientRecord, list[Lock]]:
    """The patient's whole record, read after taking the patient's row lock (held until the
    transaction ends: saves of one patient are serialised), and the active locks that may cover it
    (locks.all_covering), in one round trip. Every caller is about to change the record (a save,
    a removal, a flag confirmed), so the locking statement also requests the patient's automatic
    data queries (models.DataCheckRequest; rolled back with a change that fails).

    Two statements in one string on purpose: a row read in the locking statement itself could be
    the version from before the lock was granted; the second statement (its own snapshot, as each
    statement has in READ COMMITTED) sees what the lock holder committed."""
    with transaction.get_connection().cursor() as cursor:
        prepared.execute(
            cursor,
            (_REQUEST_CHECKS_SQL % "id = %s", _record_sql()),
            [patient_id, LockKind.STUDY, LockKind.CENTRE, patient_id],
        )
        found = cursor.fetchone()
    if found is None:
        raise Patient.DoesNotExist(patient_id)
    patient_json, centre_json, *forms_json, locks_json = found
    patient = _instances(Patient, patient_json)[0]
    patient.centre = _instances(Centre, centre_json)[0]
    return PatientRecord(patient=patient, **_attach(patient, forms_json)), _instances(Lock, locks_json)


# Locks the patients (not removed) it selects, in id order as the data checks do (no deadlock), and
# requests their data checks: taken under the lock that the check of a patient takes too, a request
# is never removed by a check that read the record from before the change that made it.
_REQUEST_CHECKS_SQL = (
    "INSERT INTO cohort_datacheckrequest (patient_id)"
    f" SELECT id FROM cohort_patient WHERE %s AND {ACTIVE_PATIENT_SQL} ORDER BY id FOR UPDATE"
    " ON CONFLICT (patient_id) DO NOTHING"
)


def request_data_checks(patient_ids: list[int]) -> None:
    """Ask for these patients' automatic data queries (cohort/data_checks.py) once the current
    transaction commits: their row locks are taken (held until it ends) and a request written
    for each; the worker woken by the data_changed signal runs them. A save asks through
    locked_record instead, in the statement that takes its lock."""
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(_REQUEST_CHECKS_SQL % "id = ANY(%s)", [sorted(set(patient_ids))])


def _record_forms() -> list[crf.CaseForm]:
    """The forms of a record besides the patient's own, in the dictionary's order."""
    return [form for form in crf.FILES.values() if form.model is not Patient]


def read_record(patient: Patient, *, confirmations: bool = True) -> PatientRecord:
    """The same record as `patient_record` of a patient read without its forms, in one statement
    instead of seven: each form's rows as JSON, as `locked_record` reads them under its lock (the
    pages that show a record; composing and running the seven ORM queries was about a tenth of
    a form page's CPU)."""
    with transaction.get_connection().cursor() as cursor:
        prepared.execute(cursor, _read_sql(), [patient.pk])
        found = cursor.fetchone()
    *forms_json, confirmed_json = found if found is not None else [None] * (len(_record_forms()) + 1)
    rows = _attach(patient, forms_json)
    confirmed = frozenset(tuple(key) for key in json.loads(confirmed_json or "[]")) if confirmations else frozenset()
    return PatientRecord(patient=patient, **rows, confirmed=confirmed)


def _attach(patient: Patient, forms_json) -> dict:
    """Each form's rows (`_form_columns`' JSON) as model instances of `patient`, as a prefetch
    leaves them: no query to reach the patient or a one-row form from it."""
    rows = {}
    for form, text in zip(_record_forms(), forms_json, strict=True):
        held = _instances(form.model, text)
        for row in held:
            # What `row.patient = patient` leaves (its patient_id is already patient.pk), without
            # the descriptor's checks and database router on each of a list page's 450 rows.
            row._state.fields_cache["patient"] = patient
        if not form.many:
            held = held[0] if held else None
            patient._meta.get_field(form.attribute).set_cached_value(patient, held)
        rows[form.attribute] = held
    return rows


_CONFIRMED_COLUMN = (
    "(SELECT json_agg(json_build_array(f.form, f.row_id, f.field, f.basis))::text"
    " FROM cohort_flagconfirmation f WHERE f.patient_id = p.id)"
)


@functools.cache
def _read_sql() -> str:
    return f"SELECT {', '.join([*_form_columns(), _CONFIRMED_COLUMN])} FROM cohort_patient p WHERE p.id = %s"


@functools.cache
def _read_many_sql() -> str:
    return f"SELECT p.id, {', '.join([*_form_columns(), _CONFIRMED_COLUMN])} FROM cohort_patient p WHERE p.id = ANY(%s)"


def _form_columns() -> list[str]:
    """Per form of a record, its rows of patient `p` as JSON: an array in the model's order (as a
    prefetch would read them) for a repeating form, the row or NULL for a one-row form."""
    columns = []
    for form in _record_forms():
        table = form.model._meta.db_table
        if form.many:
            order = ", ".join(_order_by(form.model))
            columns.append(f"(SELECT json_agg(x ORDER BY {order})::text FROM {table} x WHERE x.patient_id = p.id)")
        else:
            columns.append(f"(SELECT row_to_json(x)::text FROM {table} x WHERE x.patient_id = p.id)")
    return columns


@functools.cache
def _record_sql() -> str:
    """One statement for a patient's whole record: the patient and its centre as JSON, each form's
    rows as a JSON array in the model's order (as a prefetch would read them), and the active
    locks that may cover the patient. Built once per process: composing it with the ORM at every
    save cost about as much time as running it."""
    columns = ["row_to_json(p)::text", "(SELECT row_to_json(c)::text FROM cohort_centre c WHERE c.id = p.centre_id)"]
    columns += _form_columns()
    columns.append(
        "(SELECT json_agg(l ORDER BY l.id)::text FROM cohort_lock l"
        " WHERE l.unlocked_at IS NULL AND (l.kind IN (%s, %s) OR l.patient_id = p.id))"
    )
    return f"SELECT {', '.join(columns)} FROM cohort_patient p WHERE p.id = %s AND p.{ACTIVE_PATIENT_SQL}"


def _order_by(model) -> list[str]:
    """The model's default ordering as columns of `x`; its patient (the same for every row of
    one record) left out."""
    order = []
    for name in model._meta.ordering:
        field = model._meta.get_field(name.lstrip("-"))
        if field.name != "patient":
            order.append(f"x.{field.column}{' DESC' if name.startswith('-') else ''}")
    return order


def _instances(model, text: str | None) -> list:
    """Model instances from row_to_json / json_agg output, with the values the ORM would give
    (decimals exact, dates and times parsed, times in UTC)."""
    if text is None:
        return []
    data = json.loads(text, parse_float=Decimal)
    names, readers = _json_readers(model)
    items = data if isinstance(data, list) else [data]
    if not _plain(model):
        return [
            model.from_db(DEFAULT_DB_ALIAS, names, [read(item[column]) for column, read in readers]) for item in items
        ]
    # What from_db makes of every column (Model.__init__ stores each in the instance's __dict__:
    # no field here has a data descriptor but the foreign keys' ids, which store it there too),
    # without __init__'s per-field loop: a list page's 450 rows cost a tenth of its CPU through it.
    new = model.__new__
    instances = []
    for item in items:
        instance = new(model)
        instance.__dict__.update(zip(names, [read(item[column]) for column, read in readers], strict=True))
        state = instance._state = models.base.ModelState()
        state.adding = False
        state.db = DEFAULT_DB_ALIAS
        instances.append(instance)
    return instances


@functools.cache
def _plain(model) -> bool:
    """Whether from_db's instance of `model` is its columns' values and a saved state only: no
    __init__ or from_db of its own, and nothing listening to its pre_init and post_init."""
    return (
        model.__init__ is models.Model.__init__
        and model.from_db.__func__ is models.Model.from_db.__func__
        and not models.signals.pre_init.has_listeners(model)
        and not models.signals.post_init.has_listeners(model)
    )


@functools.cache
def _json_readers(model) -> tuple[list[str], list[tuple[str, Callable]]]:
    """The model's attribute names and, per column, what turns its JSON value into the ORM's value:
    chosen once per process, not per value (a record has thousands)."""
    fields = model._meta.concrete_fields
    return [field.attname for field in fields], [(field.column, _json_reader(field)) for field in fields]


def _json_reader(field) -> Callable:
    if isinstance(field, models.DateTimeField):
        return lambda value: None if value is None else dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    if isinstance(field, models.DecimalField):
        return lambda value: value if value is None or isinstance(value, Decimal) else Decimal(value)
    # JSON already gives these their Python type (to_python would return the value itself).
    kept = _JSON_TYPES.get(type(field.target_field if field.is_relation else field))
    to_python = field.to_python
    if kept is not None:
        return lambda value: value if value is None or type(value) is kept else to_python(value)
    return lambda value: None if value is None else to_python(value)


_JSON_TYPES = {
    models.CharField: str,
    models.TextField: str,
    models.IntegerField: int,
    models.PositiveIntegerField: int,
    models.PositiveSmallIntegerField: int,
    models.SmallIntegerField: int,
    models.BigIntegerField: int,
    models.AutoField: int,
    models.BigAutoField: int,
    models.BooleanField: bool,
}


def _snapshot(model, pk, version) -> dict | None:
    """The row's values as they were at `version`, from the audit trail."""
    from django.apps import apps

    event_model = apps.get_model("cohort", f"{model.__name__}Event")
    event = event_model.objects.filter(pgh_obj_id=pk, version=version).order_by("-pgh_id").first()
    if event is None:
        return None
    return {f.attname: getattr(event, f.attname, None) for f in model._meta.concrete_fields}


def _changes(model, before: dict | None, after) -> list[tuple[str, str, str]]:
    changes = []
    for f in crf.entered_fields(model):
        then = None if before is None else before.get(f.attname)
        now = None if after is None else getattr(after, f.attname)
        if then != now:
            changes.append((str(f.verbose_name), display.value_text(f, then), display.value_text(f, now)))
    return changes
