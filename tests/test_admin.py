"""The Django admin: every model is listed, saves go through the validation layer, the audit trail
is read-only."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from cohort import services
from cohort.models import Assessment, FollowUp
from tests.base import T0, login_as

pytestmark = pytest.mark.django_db


def test_every_model_is_in_the_admin(client, people, patient):
    login_as(client, people["admin"])
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    for model in apps.get_app_config("cohort").get_models():
        if model._meta.proxy:  # AuditedUser: the accounts, listed by django.contrib.auth's admin
            assert admin.site.is_registered(model._meta.concrete_model)
            continue
        assert admin.site.is_registered(model), model
        url = reverse(f"admin:cohort_{model._meta.model_name}_changelist")
        assert url in index.content.decode()
        assert client.get(url).status_code == 200, url


def test_an_admin_save_runs_the_cross_form_rules(client, people, patient):
    login_as(client, people["admin"])
    follow_up = FollowUp.objects.get(patient=patient)
    url = reverse("admin:cohort_followup_change", args=[follow_up.pk])
    response = client.post(
        url,
        {
            "patient": patient.pk,
            "loaded_version": follow_up.version,
            "form_status": "complete",
            "status": "ongoing",
            "last_follow_up_date": (T0 + dt.timedelta(days=100)).isoformat(),
            "discontinuation_date": "",
            "discontinuation_reason": "",
            "next_therapy": "",
        },
    )
    assert response.status_code == 200
    assert "must be on or after every assessment date" in response.content.decode()
    follow_up.refresh_from_db()
    assert follow_up.last_follow_up_date == T0 + dt.timedelta(days=400)


def test_an_admin_save_shows_a_constraint_message_at_its_field(client, people, patient):
    login_as(client, people["admin"])
    assessment = Assessment.objects.get(patient=patient, visit="week_8")
    url = reverse("admin:cohort_assessment_change", args=[assessment.pk])
    data = {
        "patient": patient.pk,
        "loaded_version": assessment.version,
        "form_status": "complete",
        "visit": "week_8",
        "not_done": "no",
        "not_done_reason": "",
        "assessment_date": assessment.assessment_date.isoformat(),
        "hbi_wellbeing": "1",
        "hbi_pain": "1",
        "hbi_stools": "1",
        "hbi_mass": "0",
        "hbi_complications": "0",
        "hbi": "9",
        "crp_mg_l": "",
        "fcal_ug_g": "",
        "endoscopy_done": "",
        "ses_cd": "",
        "corticosteroids": "",
    }
    response = client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["hbi"] == ["must equal the sum of its five components when all are given."]
    data["hbi"] = "3"
    response = client.post(url, data)
    assert response.status_code == 302
    assessment.refresh_from_db()
    assert (assessment.hbi, assessment.version) == (3, 2)


def test_the_admin_reads_numbers_as_the_casebook_does(client, people, patient):
    """In Dutch 12,5 is 12.5 and shows as 12,5; in English it is refused, never saved as 125."""
    login_as(client, people["admin"])
    assessment = Assessment.objects.get(patient=patient, visit="week_8")
    url = reverse("admin:cohort_assessment_change", args=[assessment.pk])
    data = {
        "patient": patient.pk,
        "loaded_version": assessment.version,
        "form_status": "incomplete",
        "visit": "week_8",
        "not_done": "no",
        "assessment_date": assessment.assessment_date.isoformat(),
        "hbi": "4",
        "crp_mg_l": "12,5",
        "fcal_ug_g": "150",
        "corticosteroids": "no",
    }
    refused = client.post(url, data)
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["crp_mg_l"] == [
        "Write decimals with a point, as in 12.5; a comma is not read as part of a number."
    ]
    assert Assessment.objects.get(pk=assessment.pk).crp_mg_l == Decimal("4.5")

    client.post(reverse("language-set"), {"language": "nl", "next": url})
    assert client.post(url, data).status_code == 302
    assessment.refresh_from_db()
    assert (assessment.crp_mg_l, assessment.version) == (Decimal("12.5"), 2)
    page = client.get(url).content.decode()
    assert 'type="text" name="crp_mg_l" value="12,5"' in page
    assert 'type="number"' not in page


def test_an_admin_save_is_a_casebook_save_version_reason_and_audit(client, people, patient):
    """The admin saves through services.crf_row_save: a stale version is refused, a completed form
    needs a reason, and the audit trail names the admin, the reason and the source."""
    login_as(client, people["admin"])
    follow_up = FollowUp.objects.get(patient=patient)
    FollowUp.objects.filter(pk=follow_up.pk).update(form_status="complete")
    url = reverse("admin:cohort_followup_change", args=[follow_up.pk])
    data = {
        "patient": patient.pk,
        "loaded_version": follow_up.version,
        "form_status": "complete",
        "status": "ongoing",
        "last_follow_up_date": (T0 + dt.timedelta(days=410)).isoformat(),
        "discontinuation_date": "",
        "discontinuation_reason": "",
        "next_therapy": "",
        "reason_for_change": "",
    }
    page = client.get(url).content.decode()
    assert 'name="reason_for_change"' in page and f'name="loaded_version" value="{follow_up.version}"' in page
    refused = client.post(url, data)
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["reason_for_change"] == [services.REASON_REQUIRED]

    stale = client.post(url, {**data, "loaded_version": follow_up.version - 1, "reason_for_change": "typo"})
    assert "Someone else saved this record after you opened it" in stale.content.decode()
    follow_up.refresh_from_db()
    assert follow_up.last_follow_up_date == T0 + dt.timedelta(days=400)

    saved = client.post(url, {**data, "reason_for_change": "date corrected from the chart"})
    assert saved.status_code == 302
    follow_up.refresh_from_db()
    assert (follow_up.last_follow_up_date, follow_up.version) == (T0 + dt.timedelta(days=410), 2)
    last = services.patient_audit_trail(patient)[-1]
    assert (last["user"], last["reason"], last["source"]) == ("admin", "date corrected from the chart", "admin")
    assert last["changes"]["last_follow_up_date"][1] == (T0 + dt.timedelta(days=410)).isoformat()


def test_study_data_are_not_added_or_removed_in_the_admin(client, people, patient):
    login_as(client, people["admin"])
    follow_up = FollowUp.objects.get(patient=patient)
    assert client.get(reverse("admin:cohort_patient_add")).status_code == 403
    assert client.post(reverse("admin:cohort_followup_delete", args=[follow_up.pk]), {"post": "yes"}).status_code == 403
    assert FollowUp.objects.filter(pk=follow_up.pk).exists()


def test_the_audit_trail_cannot_be_changed_in_the_admin(client, people, patient):
    login_as(client, people["admin"])
    event_model = apps.get_model("cohort", "AssessmentEvent")
    event = event_model.objects.first()
    change = client.post(reverse("admin:cohort_assessmentevent_change", args=[event.pk]), {"pgh_label": "x"})
    delete = client.post(reverse("admin:cohort_assessmentevent_delete", args=[event.pk]), {"post": "yes"})
    assert change.status_code == 403
    assert delete.status_code == 403
    assert event_model.objects.filter(pk=event.pk, pgh_label="insert").exists()


def test_a_removed_patient_and_the_rows_of_their_forms_leave_the_admin_lists(client, people, patient):
    login_as(client, people["admin"])
    follow_up = FollowUp.objects.get(patient=patient)
    assert patient.study_id in client.get(reverse("admin:cohort_followup_changelist")).content.decode()
    services.patient_soft_delete(patient=patient, by=people["nurse_a"], reason="entered twice")
    patients = client.get(reverse("admin:cohort_patient_changelist")).content.decode()
    follow_ups = client.get(reverse("admin:cohort_followup_changelist")).content.decode()
    assert patient.study_id not in patients and patient.study_id not in follow_ups
    assert client.get(reverse("admin:cohort_followup_change", args=[follow_up.pk])).status_code == 302
