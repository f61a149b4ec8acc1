"""Every database constraint of the study tables is enforced by PostgreSQL itself (SPEC section 3,
issue 2): a bulk QuerySet.update() or a plain INSERT that breaks it is refused, naming it. The
constraints are read from the models, so a new one cannot be left out: the rules with a message of
their own are tested in tests/test_rules.py (ROW_RULES), the dictionary's codes, ranges and
minimum dates are generated here, and the rest have a case below."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.apps import apps
from django.db import IntegrityError, models, transaction

from cohort.models import (
    AdverseEvent,
    Assessment,
    Centre,
    FlagConfirmation,
    FollowUp,
    Lock,
    Membership,
    Patient,
    PriorBiologic,
    Query,
    QueryMessage,
    Reinduction,
    Signature,
    UstekinumabDose,
    Verification,
)
from tests.base import T0
from tests.test_rules import ROW_RULES

pytestmark = pytest.mark.django_db

ROWS = {  # a stored row of each study form of the `patient` fixture (tests/base.py make_record)
    Patient: lambda patient: Patient.objects.filter(pk=patient.pk),
    PriorBiologic: lambda patient: PriorBiologic.objects.filter(patient=patient, agent="infliximab"),
    UstekinumabDose: lambda patient: UstekinumabDose.objects.filter(patient=patient, phase="initial_induction"),
    Reinduction: lambda patient: Reinduction.objects.filter(patient=patient),
    Assessment: lambda patient: Assessment.objects.filter(patient=patient, visit="week_8"),
    FollowUp: lambda patient: FollowUp.objects.filter(patient=patient),
    AdverseEvent: lambda patient: AdverseEvent.objects.filter(patient=patient),
    Membership: lambda patient: Membership.objects.filter(centre=patient.centre),
    Centre: lambda patient: Centre.objects.filter(pk=patient.centre_id),
    Lock: lambda patient: _a_lock(patient),
    Query: lambda patient: _a_query(patient),
    QueryMessage: lambda patient: QueryMessage.objects.filter(query__in=_a_query(patient)),
    Signature: lambda patient: _a_signature(patient),
}
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _a_query(patient):
    """An open query on the patient's week-8 CRP, with its first message (made on first use)."""
    if not Query.objects.filter(patient=patient).exists():
        query = Query.objects.create(
            patient=patient, form="week_8", field="crp", raised_by=patient.created_by, raised_at=NOW, updated_at=NOW
        )
        QueryMessage.objects.create(
            query=query, action="raise", text="CRP?", author=query.raised_by, at=NOW, state="open"
        )
    return Query.objects.filter(patient=patient)


def _a_message(patient, **changes):
    fields = {"action": "note", "text": "note", "author": patient.created_by, "at": NOW, "state": "open"} | changes
    QueryMessage.objects.create(query=_a_query(patient).get(), **fields)


def _a_signature(patient):
    if not Signature.objects.filter(patient=patient).exists():
        Signature.objects.create(
            patient=patient, signed_by=patient.created_by, signed_at=NOW, meaning="I confirm.", data_hash="0" * 64
        )
    return Signature.objects.filter(patient=patient)


def _system_query_twice(patient):
    for _ in range(2):
        Query.objects.create(
            patient=patient, form="week_8", rule="overdue_visit", cause="overdue:1", raised_at=NOW, updated_at=NOW
        )


def _a_lock(patient):
    """An active casebook lock of the patient (made on first use)."""
    if not Lock.objects.filter(patient=patient).exists():
        Lock.objects.create(kind="patient", patient=patient, reason="monitoring visit", locked_by=patient.created_by)
    return Lock.objects.filter(patient=patient)


def _lower_bound(condition):
    for child in condition.children:
        if isinstance(child, models.Q):
            found = _lower_bound(child)
            if found is not None:
                return found
        elif child[0].endswith("__gte"):
            return child[1]
    return None


def _generated(constraint) -> dict | None:
    """A value breaking a constraint made by models.one_of / between / not_before."""
    field = getattr(constraint, "field", None)
    if constraint.name.endswith("_code"):
        return {field: "!"}
    if constraint.name.endswith(("_range", "_min")):
        low = _lower_bound(constraint.condition)
        if isinstance(low, dt.date):
            return {field: low - dt.timedelta(days=1)}
        return {field: Decimal(low) - 1 if isinstance(low, Decimal) else low - 1}
    return None


def _duplicate(model, **changes):
    def write(patient):
        row = ROWS[model](patient).first()
        row.pk = None
        for name, value in changes.items():
            setattr(row, name, value)
        row.save()

    return write


def _update(model, lookup=None, **changes):
    def write(patient):
        rows = ROWS[model](patient) if lookup is None else model.objects.filter(patient=patient, **lookup)
        rows.update(**changes)

    return write


def _confirm_twice(patient):
    for _ in range(2):
        FlagConfirmation.objects.create(
            patient=patient,
            form="assessment",
            row_id=1,
            field="assessment_date",
            basis="x",
            confirmed_by=patient.created_by,
        )


CUSTOM = {
    "centre_code_pattern": _update(Centre, code="amc"),
    "membership_one_role_per_centre": _duplicate(Membership),
    "dose_one_initial_induction": _duplicate(UstekinumabDose, dose_date=T0 - dt.timedelta(days=30)),
    "dose_one_reinduction": _duplicate(UstekinumabDose, phase="reinduction", dose_date=T0 + dt.timedelta(days=1)),
    "assessment_one_per_visit": _duplicate(Assessment),
    "assessment_not_done_reason_only_if_not_done": _update(Assessment, not_done_reason="missed"),
    "followup_discontinuation_date_only_if_discontinued": _update(FollowUp, discontinuation_date=T0),
    "followup_discontinuation_reason_required": _update(FollowUp, status="discontinued", discontinuation_date=T0),
    "flag_confirmed_once": _confirm_twice,
    "lock_target_matches_kind": _update(Lock, kind="study"),
    "lock_unlock_needs_reason": _update(Lock, unlocked_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
    "lock_one_active_per_target": _duplicate(Lock),
    "query_rule_valid": _update(Query, rule="?", cause="x"),
    "query_author_or_cause": _update(Query, raised_by=None),
    "query_one_not_closed_per_cause": _system_query_twice,
    # Messages are append-only (updates are refused first): a new message breaks these.
    "query_message_action_code": lambda patient: _a_message(patient, action="!"),
    "query_message_state_code": lambda patient: _a_message(patient, state="!"),
    "signature_one_valid_per_patient": _duplicate(Signature),
    "signature_invalidated_says_why": _update(Signature, invalidated_at=NOW),
    "verification_one_per_row": lambda patient: [
        Verification.objects.create(
            patient=patient,
            form="assessments",
            row_id=1,
            row_version=1,
            verified_by=patient.created_by,
            verified_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        )
        for _ in range(2)
    ],
}
# A generated value that would break another constraint first (PostgreSQL checks them in name
# order) comes with the changes that keep the rest of the row valid, or on another row.
COMPANIONS = {
    "patient_diagnosis_year_range": (None, {"birth_year": 1925}),
    "priorbiologic_stop_date_min": (None, {"start_date": None}),
    "dose_route_code": ({"phase": "maintenance"}, {}),
    "assessment_ses_cd_range": (None, {"endoscopy_done": "yes"}),
}
COVERED_BY_ROW_RULES = {case[6] for case in ROW_RULES}


def _constraints():
    for model in apps.get_app_config("cohort").get_models():
        for constraint in model._meta.constraints:
            yield model, constraint


CASES = [
    (model, constraint.name) for model, constraint in _constraints() if constraint.name not in COVERED_BY_ROW_RULES
]


def test_every_constraint_has_a_case():
    missing = [name for model, name in CASES if name not in CUSTOM and _generated(_named(model, name)) is None]
    assert missing == [], f"add a case for {missing} (CUSTOM) or a rule with its message (test_rules.ROW_RULES)"


def _named(model, name):
    return next(constraint for constraint in model._meta.constraints if constraint.name == name)


@pytest.mark.parametrize("model, name", CASES, ids=[name for _model, name in CASES])
def test_postgresql_refuses_a_write_that_breaks_it(patient, model, name):
    write = CUSTOM.get(name)
    if write is None:
        lookup, companions = COMPANIONS.get(name, (None, {}))
        write = _update(model, lookup, **_generated(_named(model, name)), **companions)
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        write(patient)
    assert name in str(refused.value)


def test_a_query_message_is_never_changed_or_removed(patient):
    """Messages are append-only (SPEC section 10): PostgreSQL refuses an update or a delete."""
    messages = QueryMessage.objects.filter(query__in=_a_query(patient))
    for write in (lambda: messages.update(text="edited"), lambda: messages.delete()):
        with pytest.raises(Exception, match="query_message_append_only"), transaction.atomic():
            write()
    assert list(messages.values_list("text", flat=True)) == ["CRP?"]
