"""The audit trail (SPEC section 4): written by PostgreSQL triggers whatever the write path, with
who and why attached, readable per patient, and impossible to edit or delete."""

from __future__ import annotations

import datetime as dt

import pghistory.models
import pytest
from django.apps import apps
from django.db import DatabaseError, connection, transaction

from cohort.audit import audit_context
from cohort.models import Assessment, Membership, Patient
from cohort.services import patient_audit_trail, patient_soft_delete

pytestmark = pytest.mark.django_db


def test_a_bulk_queryset_update_is_audited_with_old_and_new_values_and_context(patient, people):
    with audit_context(user=people["nurse_a"], reason="transcription error"):
        updated = Assessment.objects.filter(patient=patient, visit__in=["week_8", "week_20"]).update(hbi=12)
    assert updated == 2

    updates = [entry for entry in patient_audit_trail(patient) if entry["action"] == "update"]
    assert {(u["model"], u["changes"]["hbi"]) for u in updates} == {
        ("Assessment", (4, 12)),
        ("Assessment", (3, 12)),
    }
    assert {(u["user"], u["reason"]) for u in updates} == {("nurse_a", "transcription error")}
    assert all(set(u["changes"]) == {"hbi"} for u in updates)


def test_raw_sql_is_audited_too(patient):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE cohort_patient SET smoking = 'current' WHERE id = %s", [patient.pk])
    updates = [entry for entry in patient_audit_trail(patient) if entry["action"] == "update"]
    assert updates[-1]["changes"] == {"smoking": ("never", "current")}


def test_the_trail_shows_inserts_and_deletes_of_form_rows(patient, people):
    with audit_context(user=people["nurse_a"], reason="entered twice"):
        patient.adverse_events.all().delete()
    trail = patient_audit_trail(patient)
    actions = [(entry["model"], entry["action"]) for entry in trail]
    assert actions.count(("Assessment", "insert")) == 4
    assert ("AdverseEvent", "delete") in actions
    deleted = next(entry for entry in trail if entry["action"] == "delete")
    assert deleted["changes"]["description"] == ("Upper respiratory tract infection", None)
    assert deleted["user"] == "nurse_a" and deleted["reason"] == "entered twice"
    enrolled = trail[0]
    assert (enrolled["model"], enrolled["action"], enrolled["user"]) == ("Patient", "insert", "nurse_a")
    assert enrolled["at"].tzinfo is not None


def test_an_unchanged_save_writes_no_audit_entry(patient):
    before = len(patient_audit_trail(patient))
    Assessment.objects.filter(patient=patient, visit="week_8").update(hbi=4)
    assert len(patient_audit_trail(patient)) == before


@pytest.mark.parametrize("statement", ["UPDATE {table} SET pgh_label = 'forged'", "DELETE FROM {table}"])
def test_audit_rows_cannot_be_edited_or_deleted(patient, statement):
    event_model = apps.get_model("cohort", "AssessmentEvent")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement.format(table=event_model._meta.db_table))
    assert event_model.objects.filter(patient_id=patient.pk).count() == 4


def test_a_deleted_patient_leaves_every_list_but_keeps_the_trail(patient, people):
    patient_soft_delete(patient=patient, by=people["nurse_a"], reason="withdrew consent")
    assert not Patient.objects.filter(pk=patient.pk).exists()
    assert Patient.all_objects.filter(pk=patient.pk, deleted_at__isnull=False).exists()
    last = patient_audit_trail(patient)[-1]
    assert (last["model"], last["action"], last["reason"]) == ("Patient", "update", "withdrew consent")
    assert last["changes"]["deleted_at"][0] is None


def test_membership_and_role_changes_are_audited(people):
    membership = Membership.objects.get(user=people["nurse_a"])
    with audit_context(user=people["admin"], reason="promoted"):
        Membership.objects.filter(pk=membership.pk).update(role="coordinator")
    events = pghistory.models.Events.objects.tracks(membership).order_by("pgh_created_at", "pgh_id")
    last = list(events.values("pgh_label", "pgh_diff", "pgh_context"))[-1]
    assert last["pgh_label"] == "update"
    assert last["pgh_diff"] == {"role": ["nurse", "coordinator"]}
    assert last["pgh_context"]["username"] == "admin"


def test_account_deactivation_is_audited(people):
    user = people["nurse_b"]
    user.is_active = False
    user.save()
    events = apps.get_model("cohort", "UserEvent").objects.filter(pgh_obj_id=user.pk).order_by("pgh_id")
    assert [(e.pgh_label, e.is_active) for e in events] == [("insert", True), ("update", False)]
    assert not hasattr(events[0], "password")  # the password hash stays out of the trail


def test_audit_time_is_utc(patient):
    entry = patient_audit_trail(patient)[0]
    assert entry["at"].utcoffset() == dt.timedelta(0)
