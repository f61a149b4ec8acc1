"""Data entry through HTTP: enrolment, the casebook, every form's validation, forged fields,
the reason for change and the concurrent-edit conflict. Each test checks the response and then the
database."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from cohort.models import AdverseEvent, Assessment, FollowUp, Patient, PriorBiologic, UstekinumabDose
from cohort.services import patient_audit_trail
from tests.base import PATIENT_DATA, T0, login_as, make_patient, make_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def nurse(client, people):
    client.force_login(people["nurse_a"])
    return client


def post_data(**values) -> dict:
    return {name: "" if value is None else str(value) for name, value in values.items()}


def enrol_data(people, **overrides) -> dict:
    data = {**PATIENT_DATA, "centre": people["centre_a"].pk, "form_status": "complete", **overrides}
    return post_data(**data)


def test_it_enrols_a_patient_and_lands_on_the_casebook(nurse, people):
    response = nurse.post(reverse("cohort:patient-enrol"), enrol_data(people))
    patient = Patient.objects.get()
    assert patient.study_id == "AMC-001"
    assert response.status_code == 302
    assert response["Location"] == reverse("cohort:patient-detail", args=["AMC-001"])
    casebook = nurse.get(response["Location"]).content.decode()
    assert "Casebook AMC-001" in casebook
    assert 'data-form="patient" data-status="complete"' in casebook
    assert 'data-form="week_8" data-status="not_started"' in casebook


def test_enrolment_ignores_forged_fields_and_refuses_another_centre(nurse, people):
    response = nurse.post(
        reverse("cohort:patient-enrol"),
        {**enrol_data(people), "study_id": "AMC-999", "version": "42", "created_by": people["coordinator"].pk},
    )
    assert response.status_code == 302
    patient = Patient.objects.get()
    assert (patient.study_id, patient.version, patient.created_by) == ("AMC-001", 1, people["nurse_a"])

    response = nurse.post(reverse("cohort:patient-enrol"), enrol_data(people, centre=people["centre_b"].pk))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert Patient.objects.count() == 1


def test_enrolment_errors_appear_at_the_field_and_write_nothing(nurse, people):
    response = nurse.post(
        reverse("cohort:patient-enrol"), enrol_data(people, consent="no", birth_year=1990, diagnosis_year=1980)
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert errors["consent"] == ["must be yes: a patient can only be entered with documented consent or waiver."]
    assert errors["diagnosis_year"] == ["must be on or after the year of birth."]
    assert Patient.objects.count() == 0


def assessment_data(**overrides) -> dict:
    data = {
        "not_done": "no",
        "not_done_reason": "",
        "assessment_date": (T0 + dt.timedelta(days=56)).isoformat(),
        "hbi_wellbeing": 1,
        "hbi_pain": 1,
        "hbi_stools": 2,
        "hbi_mass": 0,
        "hbi_complications": 0,
        "hbi": "",
        "crp_mg_l": "3.2",
        "fcal_ug_g": "",
        "endoscopy_done": "",
        "ses_cd": "",
        "corticosteroids": "no",
        "form_status": "incomplete",
    }
    return post_data(**{**data, **overrides})


def form_url(patient, key):
    return reverse("cohort:form", args=[patient.study_id, key])


def test_a_visit_saves_with_the_hbi_computed_from_its_components(nurse, people):
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    Assessment.objects.filter(patient=patient, visit="week_8").delete()
    response = nurse.post(form_url(patient, "week_8"), assessment_data())
    assert response.status_code == 302
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    assert (week_8.hbi, week_8.hbi_total, str(week_8.crp_mg_l)) == (4, 4, "3.2")


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"hbi": "9"}, "hbi", "must equal the sum of its five components when all are given."),
        ({"hbi_pain": "7"}, "hbi_pain", "must be between 0 and 3."),
        ({"assessment_date": "2022-13-01"}, "assessment_date", "Enter a valid date."),
        ({"assessment_date": ""}, "assessment_date", "is required unless the visit was not done."),
        ({"assessment_date": (T0 - dt.timedelta(days=1)).isoformat()}, "assessment_date", "must be on or after the"),
        ({"not_done": "yes", "not_done_reason": "missed"}, "not_done", "a visit that was not done has no measurements"),
        ({"ses_cd": "4"}, "ses_cd", "may only be given when an endoscopy was done."),
        ({"crp_mg_l": "abc"}, "crp_mg_l", "Enter a number, such as 12.5, without thousands separators."),
    ],
)
def test_each_invalid_visit_is_refused_at_its_field_and_nothing_written(nurse, patient, overrides, field, message):
    before = list(Assessment.objects.filter(patient=patient).values())
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    response = nurse.post(form_url(patient, "week_8"), assessment_data(version=week_8.version, **overrides))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert any(message in error for error in errors.get(field, [])), errors
    assert list(Assessment.objects.filter(patient=patient).values()) == before


def test_an_out_of_window_visit_is_saved_with_a_visible_flag(nurse, patient):
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    data = assessment_data(version=week_8.version, assessment_date=(T0 + dt.timedelta(days=90)).isoformat())
    assert nurse.post(form_url(patient, "week_8"), data).status_code == 302
    week_8.refresh_from_db()
    assert week_8.assessment_date == T0 + dt.timedelta(days=90)
    casebook = nurse.get(reverse("cohort:patient-detail", args=[patient.study_id])).content.decode()
    assert 'data-form="week_8" data-status="flagged"' in casebook
    assert "outside the week 8 window (days 42 to 84)" in casebook
    assert 'data-visit="week_8" data-state="out_of_window"' in casebook


def test_editing_a_complete_form_requires_a_reason_that_goes_into_the_audit_trail(nurse, patient):
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    Assessment.objects.filter(pk=week_8.pk).update(form_status="complete")
    week_8.refresh_from_db()
    page = nurse.get(form_url(patient, "week_8")).content.decode()
    assert 'name="reason_for_change"' in page
    response = nurse.post(form_url(patient, "week_8"), assessment_data(version=week_8.version, crp_mg_l="9"))
    assert response.status_code == 200
    assert response.context["form"].errors["reason_for_change"] == [
        "a reason for change is required: this form was marked complete."
    ]
    week_8.refresh_from_db()
    assert str(week_8.crp_mg_l) == "4.5"

    response = nurse.post(
        form_url(patient, "week_8"),
        assessment_data(version=week_8.version, crp_mg_l="9", reason_for_change="lab report corrected"),
    )
    assert response.status_code == 302
    week_8.refresh_from_db()
    assert str(week_8.crp_mg_l) == "9.0" and week_8.version == 2
    history = nurse.get(reverse("cohort:patient-history", args=[patient.study_id])).content.decode()
    assert "lab report corrected" in history


def test_the_later_of_two_concurrent_edits_is_refused_showing_what_changed(client, people, patient):
    from django.test import Client

    first, second = Client(), Client()
    first.force_login(people["nurse_a"])
    second.force_login(people["nurse_a"])
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    opened = week_8.version  # both open the form now
    assert first.post(form_url(patient, "week_8"), assessment_data(version=opened, crp_mg_l="11")).status_code == 302
    response = second.post(form_url(patient, "week_8"), assessment_data(version=opened, crp_mg_l="22"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Someone else saved this form after you opened it" in page
    assert response.context["form"].conflict == [("C-reactive protein (mg/L)", "4.5", "11.0")] or (
        ("C-reactive protein (mg/L)", "4.5", "11.0") in response.context["form"].conflict
    )
    week_8.refresh_from_db()
    assert str(week_8.crp_mg_l) == "11.0"


def test_repeating_forms_are_added_edited_and_removed_in_place(nurse, patient):
    url = reverse("cohort:rows", args=[patient.study_id, "adverse_events"])
    data = post_data(
        onset_date=(T0 + dt.timedelta(days=60)).isoformat(),
        category="headache",
        description="Mild headache after infusion",
        serious="no",
        causality="possible",
        outcome="resolved",
        led_to_discontinuation="no",
        form_status="complete",
    )
    assert nurse.post(url, data).status_code == 302
    event = AdverseEvent.objects.get(patient=patient, category="headache")
    page = nurse.get(url + f"?edit={event.pk}").content.decode()
    assert "Mild headache after infusion" in page
    edited = {**data, "row": event.pk, "version": event.version, "outcome": "resolving", "reason_for_change": "update"}
    assert nurse.post(url, edited).status_code == 302
    event.refresh_from_db()
    assert event.outcome == "resolving"
    delete = reverse("cohort:row-delete", args=[patient.study_id, "adverse_events", event.pk])
    assert nurse.get(delete).status_code == 405  # no change on GET
    response = nurse.post(delete, {"version": event.version, "reason_for_change": "entered twice"})
    assert response.status_code == 302
    assert not AdverseEvent.objects.filter(pk=event.pk).exists()


def test_removing_a_row_the_record_depends_on_is_refused_and_nothing_removed(nurse, patient):
    dose = UstekinumabDose.objects.get(patient=patient, phase="reinduction")
    delete = reverse("cohort:row-delete", args=[patient.study_id, "doses", dose.pk])
    response = nurse.post(delete, {"version": dose.version, "reason_for_change": "entered twice"}, follow=True)
    page = response.content.decode()
    assert "cannot be removed: the rest of the record depends on it" in page
    assert "must be on or after the re-induction dose date" in page or "record the re-induction dose first" in page
    assert UstekinumabDose.objects.filter(pk=dose.pk).exists()
    # A maintenance dose nothing depends on goes.
    maintenance = UstekinumabDose.objects.get(patient=patient, phase="maintenance")
    delete = reverse("cohort:row-delete", args=[patient.study_id, "doses", maintenance.pk])
    nurse.post(delete, {"version": maintenance.version, "reason_for_change": "not given"})
    assert not UstekinumabDose.objects.filter(pk=maintenance.pk).exists()


def test_a_flag_shows_on_its_own_row_only(nurse, patient):
    """Row ids repeat across the forms' tables: a visit's flag must not appear on the dose or
    prior-biologic row that happens to have the same id."""
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    Assessment.objects.filter(pk=week_8.pk).update(assessment_date=T0 + dt.timedelta(days=90))
    for model in (UstekinumabDose, PriorBiologic, AdverseEvent):
        row = model.objects.filter(patient=patient).first()
        model.objects.filter(pk=row.pk).update(id=week_8.pk)  # the same id in another table
    for key in ("doses", "prior_biologics", "adverse_events"):
        page = nurse.get(reverse("cohort:rows", args=[patient.study_id, key])).content.decode()
        assert "outside the week 8 window" not in page, key
    assert "outside the week 8 window" in nurse.get(form_url(patient, "week_8")).content.decode()


def test_save_and_next_goes_to_the_next_form(nurse, patient):
    follow_up = FollowUp.objects.get(patient=patient)
    data = post_data(
        status="ongoing",
        last_follow_up_date=follow_up.last_follow_up_date.isoformat(),
        discontinuation_date="",
        discontinuation_reason="",
        next_therapy="",
        form_status="incomplete",
        version=follow_up.version,
        next="1",
    )
    response = nurse.post(form_url(patient, "follow_up"), data)
    assert response.status_code == 302
    assert response["Location"] == reverse("cohort:rows", args=[patient.study_id, "adverse_events"])


def test_cross_form_rule_from_the_browser(nurse, patient):
    url = reverse("cohort:rows", args=[patient.study_id, "prior_biologics"])
    data = post_data(
        agent="golimumab",
        agent_other="",
        start_date="2020-01-01",
        stop_date="2021-06-01",
        stop_reason="intolerance",
        form_status="complete",
    )
    response = nurse.post(url, data)
    assert response.status_code == 200
    assert response.context["form"].errors["stop_date"] == ["must be before the first ustekinumab dose (2 Mar 2021)."]
    assert PriorBiologic.objects.filter(patient=patient).count() == 2


def test_a_coordinator_reads_but_cannot_write(client, people, patient):
    login_as(client, people["coordinator"])
    assert client.get(reverse("cohort:patient-detail", args=[patient.study_id])).status_code == 200
    dose = UstekinumabDose.objects.filter(patient=patient).first()
    response = client.post(reverse("cohort:row-delete", args=[patient.study_id, "doses", dose.pk]), {"version": 1})
    assert response.status_code == 403
    assert UstekinumabDose.objects.filter(pk=dose.pk).exists()


def test_pages_remind_not_to_enter_identifiers_and_say_demo_only_on_a_demo_install(nurse, patient, settings):
    url = reverse("cohort:patient-detail", args=[patient.study_id])
    settings.DEMO_DATA = False
    page = nurse.get(url).content.decode()
    assert "Do not enter names, hospital numbers or other identifiers." in page
    assert "Synthetic demo data" not in page
    settings.DEMO_DATA = True
    assert "Synthetic demo data only." in nurse.get(url).content.decode()


def test_a_nurse_removes_a_patient_with_a_reason_and_the_audit_trail_stays(nurse, client, people, patient):
    url = reverse("cohort:patient-delete", args=[patient.study_id])
    casebook = reverse("cohort:patient-detail", args=[patient.study_id])
    assert 'id="remove-patient"' in nurse.get(casebook).content.decode()
    assert nurse.get(url).status_code == 405  # no change on GET

    refused = nurse.post(url, {"reason_for_change": "  "}, follow=True)
    assert "Give the reason for removing the patient; nothing was removed." in refused.content.decode()
    assert Patient.objects.filter(pk=patient.pk).exists()

    response = nurse.post(url, {"reason_for_change": "entered twice"})
    assert response.status_code == 302 and response["Location"] == reverse("cohort:patient-list")
    assert not Patient.objects.filter(pk=patient.pk).exists()
    assert Patient.all_objects.get(pk=patient.pk).deleted_at is not None
    assert nurse.get(casebook).status_code == 404
    assert f'href="{casebook}"' not in nurse.get(reverse("cohort:patient-list")).content.decode()
    last = patient_audit_trail(patient)[-1]
    assert (last["action"], last["user"], last["reason"]) == ("update", "nurse_a", "entered twice")
    assert last["changes"]["deleted_at"][0] is None
    # The next patient of the centre gets a new number: a removed study ID is not given out again.
    response = nurse.post(reverse("cohort:patient-enrol"), enrol_data(people))
    assert Patient.objects.get().study_id == "AMC-002"


def test_a_reason_too_long_for_the_audit_trail_is_refused_whole_and_nothing_is_removed(nurse, patient):
    url = reverse("cohort:patient-delete", args=[patient.study_id])
    refused = nurse.post(url, {"reason_for_change": "r" * 250}, follow=True)
    assert (
        "The reason can be at most 200 characters (this one has 250); nothing was removed." in refused.content.decode()
    )
    assert refused.redirect_chain[-1][0] == reverse("cohort:patient-detail", args=[patient.study_id])
    assert Patient.objects.filter(pk=patient.pk).exists()
    assert all(entry["reason"] != "r" * 200 for entry in patient_audit_trail(patient))

    nurse.post(url, {"reason_for_change": "r" * 200})  # at the limit: removed, the reason kept whole
    assert not Patient.objects.filter(pk=patient.pk).exists()
    assert patient_audit_trail(patient)[-1]["reason"] == "r" * 200


def test_a_flag_comment_too_long_to_keep_is_refused_and_the_flag_stays(nurse, patient):
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    Assessment.objects.filter(pk=week_8.pk).update(assessment_date=T0 + dt.timedelta(days=90))
    confirm = reverse("cohort:flag-confirm", args=[patient.study_id])
    data = {"form": "assessment", "row": week_8.pk, "field": "assessment_date", "next": form_url(patient, "week_8")}
    refused = nurse.post(confirm, {**data, "comment": "c" * 201}, follow=True)
    assert (
        "The comment can be at most 200 characters (this one has 201); the flag was not confirmed."
        in refused.content.decode()
    )
    assert not patient.flag_confirmations.exists()
    nurse.post(confirm, {**data, "comment": "c" * 200})
    assert patient.flag_confirmations.get().comment == "c" * 200


def test_a_flagged_value_is_confirmed_and_stops_counting_until_it_changes(nurse, client, people, patient):
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    Assessment.objects.filter(pk=week_8.pk).update(assessment_date=T0 + dt.timedelta(days=90))
    casebook = reverse("cohort:patient-detail", args=[patient.study_id])
    assert 'data-form="week_8" data-status="flagged"' in nurse.get(casebook).content.decode()
    page = nurse.get(form_url(patient, "week_8")).content.decode()
    assert "Confirm value" in page
    confirm = reverse("cohort:flag-confirm", args=[patient.study_id])
    data = {"form": "assessment", "row": week_8.pk, "field": "assessment_date", "next": form_url(patient, "week_8")}
    assert nurse.get(confirm).status_code == 405

    response = nurse.post(confirm, {**data, "comment": "visit date checked in the chart"})
    assert response.status_code == 302 and response["Location"] == form_url(patient, "week_8")
    confirmation = patient.flag_confirmations.get()
    basis = f"{T0 + dt.timedelta(days=90)} day 90"  # the flagged values, the confirmation is tied to
    assert (confirmation.confirmed_by, confirmation.basis) == (people["nurse_a"], basis)
    assert confirmation.comment == "visit date checked in the chart"
    casebook_page = nurse.get(casebook).content.decode()
    assert 'data-form="week_8" data-status="incomplete"' in casebook_page  # no longer flagged
    assert "outside the week 8 window" not in casebook_page
    assert nurse.post(confirm, data).status_code == 302  # twice: 'no longer raised', nothing written
    assert patient.flag_confirmations.count() == 1

    # Another date outside the window is a new flag: it needs confirming again.
    Assessment.objects.filter(pk=week_8.pk).update(assessment_date=T0 + dt.timedelta(days=95))
    assert 'data-form="week_8" data-status="flagged"' in nurse.get(casebook).content.decode()

    # Coordinators (monitors) confirm too; another centre's nurse does not see the patient at all.
    login_as(client, people["coordinator"])
    assert client.post(confirm, data).status_code == 302
    assert patient.flag_confirmations.count() == 2
    client.force_login(people["nurse_b"])
    assert client.post(confirm, data).status_code == 404


def test_the_forms_speak_the_users_language(nurse, patient):
    """The CRF's labels, help and choices come from the data dictionary in English, and in Dutch for a
    user who chose Dutch; the stored codes are the same."""
    url = form_url(patient, "week_8")
    english = nurse.get(url).content.decode()
    assert "Date of assessment" in english and "Visit not done" in english and ">no</option>" in english
    nurse.post(reverse("language-set"), {"language": "nl", "next": url})
    dutch = nurse.get(url).content.decode()
    assert "Beoordeling week 8" in dutch and "Datum van beoordeling" in dutch and "Visite niet verricht" in dutch
    assert '<option value="no" selected>nee</option>' in dutch
    assert "Berekend uit de vijf onderdelen." in dutch  # the live HBI total's note
    doses = nurse.get(reverse("cohort:rows", args=[patient.study_id, "doses"])).content.decode()
    assert "initiële IV-inductie" in doses and "Toedieningsweg" in doses
