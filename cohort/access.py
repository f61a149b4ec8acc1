"""The one entry point for who may see and change which patient (SPEC section 2, STYLE: Access).

Views, exports and downloads never query patients any other way. A patient of a centre the user
has no role at answers 404, exactly like a patient that does not exist; a read-only role that tries
to change data gets 403.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, Group, User
from django.contrib.postgres.expressions import ArraySubquery
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.query import get_related_populators
from django.http import Http404

from cohort import prepared
from cohort.choices import Role
from cohort.models import Centre, Membership, Patient, Query


def memberships(user: User | AnonymousUser) -> list[tuple[int, str, bool]]:
    """(centre id, role, whether the centre is active) of every membership of the user, read once per
    request: the access rules below use those at active centres, the second-factor rule
    (accounts.mfa_required_for, checked on every request) all of them, so one query serves both."""
    if not user.is_authenticated:
        return []
    cached = getattr(user, "_ecrf_memberships", None)
    if cached is None:
        cached = list(user.memberships.values_list("centre_id", "role", "centre__active"))
        user._ecrf_memberships = cached  # type: ignore[union-attr]
    return cached


def _roles(user: User | AnonymousUser) -> list[tuple[int, str]]:
    """(centre id, role) of the user's memberships at active centres."""
    if not user.is_authenticated or not user.is_active:
        return []
    cached = getattr(user, "_ecrf_roles", None)
    if cached is None:
        # The rule of _memberships below (active centres), applied to the memberships read once.
        cached = [(centre_id, role) for centre_id, role, active in memberships(user) if active]
        user._ecrf_roles = cached  # type: ignore[union-attr]
    return cached


def _memberships(user: User | int) -> QuerySet[Membership]:
    """The memberships that give the user (or the user of this id) a role: those at active centres."""
    return Membership.objects.filter(user=user, centre__active=True)


def _roles_unread(user: User | AnonymousUser) -> bool:
    return user.is_authenticated and user.is_active and getattr(user, "_ecrf_roles", None) is None


def is_coordinator(user: User | AnonymousUser) -> bool:
    return any(role == Role.COORDINATOR for _, role in _roles(user))


def readable_centre_ids(user: User | AnonymousUser) -> set[int] | None:
    """Centres whose data the user may read; None means every centre (coordinators)."""
    if is_coordinator(user):
        return None
    return {centre_id for centre_id, _ in _roles(user)}


def writable_centre_ids(user: User | AnonymousUser) -> set[int]:
    """Only research nurses enter and change study data, at their own centres."""
    return {centre_id for centre_id, role in _roles(user) if role == Role.NURSE}


def reads_any_centre(user: User | AnonymousUser) -> bool:
    """Whether the user has a role at an active centre: the patients, outcomes, reports and queries
    pages have nothing to show anyone else."""
    return bool(_roles(user))


def can_use_admin(user: User | AnonymousUser) -> bool:
    """Whether Django's admin would show the user anything: staff with at least one permission
    (a staff account without any gets only "You don't have permission to view or edit anything")."""
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return False
    return user.is_superuser or _has_any_permission(user)


def _has_any_permission(user: User) -> bool:
    """Whether ModelBackend.get_all_permissions would find any: one of the user's own, or of one of
    their groups. One statement, written once per process, and once per request: the navbar asks
    on every page of a staff user, and the two ORM queries get_all_permissions composes and runs
    cost more than the rest of the navbar."""
    found = getattr(user, "_ecrf_any_permission", None)
    if found is None:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(_any_permission_sql(), [user.pk, user.pk])
            found = user._ecrf_any_permission = cursor.fetchone()[0]  # type: ignore[union-attr]
    return found


@functools.cache
def _any_permission_sql() -> str:
    own, groups = User.user_permissions.through._meta, User.groups.through._meta
    granted = Group.permissions.through._meta
    return (
        f'SELECT EXISTS (SELECT 1 FROM "{own.db_table}" WHERE {own.get_field("user").column} = %s)'
        f' OR EXISTS (SELECT 1 FROM "{groups.db_table}" m JOIN "{granted.db_table}" g'
        f" ON g.{granted.get_field('group').column} = m.{groups.get_field('group').column}"
        f" WHERE m.{groups.get_field('user').column} = %s)"
    )


def menu_for_user(user: User | AnonymousUser) -> dict[str, bool]:
    """Which navbar items the user may use, so no item leads to a refusal."""
    reads = reads_any_centre(user)
    return {
        "patients": reads,
        "outcomes": reads,
        "reports": reads,
        "queries": reads,
        "locks": is_coordinator(user),
        # reports.imports.may_import: nurses (their centres) and coordinators.
        "imports": is_coordinator(user) or bool(writable_centre_ids(user)),
        "admin": can_use_admin(user),
    }


def centres_for_user(user: User | AnonymousUser, *, write: bool = False) -> QuerySet[Centre]:
    centres = Centre.objects.filter(active=True)
    if write:
        return centres.filter(pk__in=writable_centre_ids(user))
    readable = readable_centre_ids(user)
    return centres if readable is None else centres.filter(pk__in=readable)


def patients_for_user(user: User | AnonymousUser) -> QuerySet[Patient]:
    """Every (not deleted) patient the user may see."""
    readable = readable_centre_ids(user)
    patients = Patient.objects.all()
    return patients if readable is None else patients.filter(centre_id__in=readable)


def can_write(user: User | AnonymousUser, patient: Patient) -> bool:
    return patient.centre_id in writable_centre_ids(user)


def can_confirm_flags(user: User | AnonymousUser, patient: Patient) -> bool:
    """The centre's nurses and the coordinators (monitors) confirm flagged values: it changes no data."""
    return can_write(user, patient) or is_coordinator(user)


def can_sign(user: User | AnonymousUser, patient: Patient) -> bool:
    """The investigators of the patient's centre sign its casebooks (SPEC section 10), no one else."""
    return any(centre_id == patient.centre_id and role == Role.INVESTIGATOR for centre_id, role in _roles(user))


def get_patient_for_user(user: User | AnonymousUser, study_id: str, *, write: bool = False) -> Patient:
    """The (not deleted) patient of this study ID with its centre, if the user may read it: else
    404, as for a patient that does not exist. One query, composed once per process."""
    found = _patient_statement().run({_STUDY_ID: study_id})
    if not found or not _may_read(user, found[0]):
        raise Http404("No such patient.")
    patient = found[0]
    if write and not can_write(user, patient):
        raise PermissionDenied("Your role at this centre is read-only.")
    return patient


def _may_read(user: User | AnonymousUser, patient: Patient) -> bool:
    """patients_for_user's rule for one patient already read."""
    readable = readable_centre_ids(user)
    return readable is None or patient.centre_id in readable


def get_row_for_user(user: User | AnonymousUser, study_id: str, model, *, write: bool = False, **match):
    """The stored row of a one-row form of the patient (its follow-up, a visit's assessment: `match`)
    with the patient and its centre, if the user may read that patient (as get_patient_for_user);
    None when there is no such row, or no such patient for this user: then ask get_patient_for_user,
    which tells 404 from 403. One query: the user's roles, if this request has not read them yet,
    come with the row (both arrays in membership order)."""
    unread = _roles_unread(user)
    statement = _row_statement(model, tuple(sorted(match)), with_roles=unread)
    found = statement.run({_STUDY_ID: study_id, USER_ID: user.pk, **{placeholder(k): v for k, v in match.items()}})
    if not found:
        return None
    row = found[0]
    if unread:
        user._ecrf_roles = list(zip(row.ecrf_role_centres, row.ecrf_role_names, strict=True))  # type: ignore[union-attr]
    if not _may_read(user, row.patient):
        return None
    if write and not can_write(user, row.patient):
        raise PermissionDenied("Your role at this centre is read-only.")
    relation = model._meta.get_field("patient")
    if relation.one_to_one:
        # The patient must not hold the row as its own: a form changes the row before it is saved,
        # and the page shown again after a refused save reads the patient's stored record.
        relation.remote_field.delete_cached_value(row.patient)
    return row


# Placeholder values the row query (and accounts.UserBackend's user) is compiled with, replaced by
# the request's values at each run.
_STUDY_ID = "\x00study_id"
USER_ID = -7_000_001
PATIENT_ID = -7_000_002
PATIENT_IDS = -7_000_003  # a list of patient ids (a page of the list), sent as one array


def any_patient_id() -> RawSQL:
    """In a compiled statement, `patient_id__in=any_patient_id()`: any of the PATIENT_IDS. One
    parameter whatever their number, so the statement is the same for every page."""
    return RawSQL("SELECT unnest(%s::bigint[])", (PATIENT_IDS,))


def placeholder(field: str) -> str:
    """The value a compiled statement (CompiledRows) holds in place of `field`'s, given at each run."""
    return f"\x00match:{field}"


@functools.cache
def _patient_statement() -> CompiledRows:
    """get_patient_for_user's query, composed by the ORM once per process (the study ID a
    placeholder): composing it cost more CPU than running it, on every page of a patient. Who may
    read the patient is asked of the row read (_may_read), as get_row_for_user does."""
    return CompiledRows.of(Patient.objects.select_related("centre").filter(study_id=_STUDY_ID).order_by())


@functools.cache
def _row_statement(model, match_fields: tuple[str, ...], *, with_roles: bool) -> CompiledRows:
    """get_row_for_user's query, composed by the ORM once per process and form (placeholders for the
    study ID, the user and the visit): composing it cost more CPU than running it. The rule of who
    has a role stays the one in _memberships."""
    rows = model.objects.select_related("patient__centre").filter(
        patient__in=Patient.objects.filter(study_id=_STUDY_ID), **{k: placeholder(k) for k in match_fields}
    )
    if with_roles:
        memberships = _memberships(USER_ID).order_by("pk")
        rows = rows.annotate(
            ecrf_role_centres=ArraySubquery(memberships.values("centre_id")),
            ecrf_role_names=ArraySubquery(memberships.values("role")),
        )
    # At most one row (one per patient, or per patient and visit): no ORDER BY ... LIMIT, which
    # could have the planner walk the table's primary key instead of the study ID's index.
    return CompiledRows.of(rows)


@dataclass(frozen=True)
class CompiledRows:
    """A model queryset's SQL compiled once, run with other values in place of its placeholders
    (USER_ID, PATIENT_ID, and get_row_for_user's study ID and visit);
    its rows become instances as the ORM's ModelIterable makes them (select_related, annotations)."""

    sql: str
    params: tuple
    slots: tuple[tuple[int, object], ...]  # (position in params, placeholder)
    compiled: tuple  # the compiler's select, klass_info, annotation_col_map and col_count
    init_list: list[str]  # the attribute names of the model's own columns, at `span` of each row
    span: tuple[int, int]
    populators: list  # the select_related objects (patient, centre) of each row
    # (position, (functions, expression)) of the columns the ORM converts (from_db_value: arrays,
    # JSON...), found once: results_iter found them again at every run, a third of its CPU.
    # PostgreSQL's backend adds none of its own, so none is bound to one thread's connection.
    converters: tuple = ()

    @classmethod
    def of(cls, queryset: QuerySet) -> CompiledRows:
        compiler = queryset.query.get_compiler(using=DEFAULT_DB_ALIAS)
        sql, params = compiler.as_sql()
        slots = _slots(params)
        select, klass_info = compiler.select, compiler.klass_info
        compiled = (select, klass_info, compiler.annotation_col_map, compiler.col_count)
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        init_list = [column[0].target.attname for column in select[start:end]]
        populators = get_related_populators(klass_info, select, DEFAULT_DB_ALIAS)
        columns = [column[0] for column in select[: compiler.col_count]]
        if compiler.has_composite_fields(columns):
            raise ValueError("CompiledRows reads no composite primary key")
        converters = tuple(compiler.get_converters(columns).items())
        return cls(sql, tuple(params), slots, compiled, init_list, (start, end), populators, converters)

    def run(self, values: dict) -> list:
        fetched = _fetch(self.sql, self.params, self.slots, values)
        connection = connections[DEFAULT_DB_ALIAS]
        model, annotations = self.compiled[1]["model"], self.compiled[2]
        start, end = self.span
        found = []
        for values_ in fetched:
            if self.converters:  # as SQLCompiler.apply_converters
                values_ = list(values_)
                for position, (functions, expression) in self.converters:
                    value = values_[position]
                    for function in functions:
                        value = function(value, expression, connection)
                    values_[position] = value
            obj = model.from_db(DEFAULT_DB_ALIAS, self.init_list, values_[start:end])
            for populator in self.populators:
                populator.populate(values_, obj)
            for name, position in annotations.items():
                setattr(obj, name, values_[position])
            found.append(obj)
        return found


@dataclass(frozen=True)
class CompiledValues:
    """A values_list queryset's SQL compiled once, as CompiledRows; its rows as the database gives
    them (for columns that need no conversion: ids, counts, text)."""

    sql: str
    params: tuple
    slots: tuple[tuple[int, object], ...]

    @classmethod
    def of(cls, queryset: QuerySet) -> CompiledValues:
        sql, params = queryset.query.get_compiler(using=DEFAULT_DB_ALIAS).as_sql()
        return cls(sql, tuple(params), _slots(params))

    def run(self, values: dict) -> list[tuple]:
        return _fetch(self.sql, self.params, self.slots, values)


def _slots(params) -> tuple[tuple[int, object], ...]:
    """Where a compiled statement's placeholders are among its parameters."""
    placeholders = (_STUDY_ID, USER_ID, PATIENT_ID, PATIENT_IDS)
    return tuple(
        (index, value)
        for index, value in enumerate(params)
        if value in placeholders or (isinstance(value, str) and value.startswith("\x00match:"))
    )


def _fetch(sql: str, params: tuple, slots, values: dict) -> list[tuple]:
    params = list(params)
    for index, placeholder in slots:
        params[index] = values[placeholder]
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        prepared.execute(cursor, sql, params)
        return cursor.fetchall()


ALL_SCOPE = "all"


def readable_scopes(user: User | AnonymousUser) -> list[str]:
    """Outcome/report scopes the user may read: 'all' (coordinators) and centre codes."""
    codes = list(centres_for_user(user).values_list("code", flat=True))
    return ([ALL_SCOPE] if is_coordinator(user) else []) + codes


def patients_in_scope(scope: str, *, removed: bool = False) -> QuerySet[Patient]:
    """The patients of a report scope ("all" or a centre code), for work a reader of that scope
    asked for (a report job, run later without the user). `removed`: soft-deleted patients too
    (only the audit trail keeps them)."""
    patients = (Patient.all_objects if removed else Patient.objects).all()
    return patients if scope == ALL_SCOPE else patients.filter(centre__code=scope)


def queries_for_user(user: User | AnonymousUser):
    """The data queries the user may see: those of the patients they may see (SPEC section 10)."""
    return Query.objects.filter(patient__in=patients_for_user(user))


def get_query_for_user(user: User | AnonymousUser, pk: int):
    """A query of a patient the user may see; another centre's query answers 404 like any record."""
    try:
        return queries_for_user(user).select_related("patient__centre", "raised_by").get(pk=pk)
    except Query.DoesNotExist:
        raise Http404("No such query.") from None
