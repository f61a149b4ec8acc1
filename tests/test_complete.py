"""A record can be complete (issue 13, item 5): 'no adverse events' completes that form, each form
says its status at the top and suggests marking it complete, the casebook says what is missing,
and 'save and go to the next form' from an empty add-row moves on."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from cohort import casebook, services
from cohort.models import AdverseEvent, Assessment, FollowUp, Patient
from tests.base import make_patient, make_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def nurse(client, people):
    client.force_login(people["nurse_a"])
    return client


@pytest.fixture
def patient(people):
    return make_record(make_patient(people["centre_a"], people["nurse_a"]))


def record_of(patient):
    return services.patient_record(services.with_forms(Patient.objects.filter(pk=patient.pk)).get())


def test_no_adverse_events_answered_completes_the_adverse_events_form(nurse, patient):
    AdverseEvent.objects.filter(patient=patient).delete()
    Patient.objects.filter(pk=patient.pk).update(form_status="complete")
    for model in (Assessment, FollowUp):
        model.objects.filter(patient=patient).update(form_status="complete")
    cells = {cell.key: cell for cell in casebook.form_cells(record_of(patient))}
    assert cells["adverse_events"].status == "not_started"
    assert "follow-up form" in cells["adverse_events"].todo

    FollowUp.objects.filter(patient=patient).update(adverse_events_any="no")
    record = record_of(patient)
    cells = {cell.key: cell for cell in casebook.form_cells(record)}
    assert cells["adverse_events"].status == "complete"
    assert cells["adverse_events"].todo == ""
    progress = casebook.progress(record, timezone.localdate())
    assert progress.complete == progress.total - 3  # prior biologics, doses, re-induction left incomplete

    page = nurse.get(reverse("cohort:patient-detail", args=[patient.study_id])).content.decode()
    assert 'data-form="adverse_events" data-status="complete"' in page
    assert 'data-todo="doses"' in page and "Still to be marked complete." in page


def test_each_form_shows_its_status_at_the_top_and_suggests_complete(nurse, patient):
    url = reverse("cohort:form", args=[patient.study_id, "week_8"])
    page = nurse.get(url, HTTP_ACCEPT_LANGUAGE="nl").content.decode()
    top = page.split('id="crf-form"')[0]
    assert 'class="form-status-now' in top and 'data-status="incomplete"' in top
    assert "Alle verplichte velden zijn ingevuld: u kunt dit formulier als volledig markeren." in top
    Assessment.objects.filter(patient=patient, visit="week_8").update(form_status="complete")
    top = nurse.get(url).content.decode().split('id="crf-form"')[0]
    assert 'data-status="complete"' in top and 'data-suggest="complete"' not in top
    Assessment.objects.filter(patient=patient, visit="week_8").delete()
    top = nurse.get(url).content.decode().split('id="crf-form"')[0]
    assert 'data-status="not_started"' in top and "Nothing entered yet." in top


def test_save_and_next_from_an_empty_add_row_moves_on(nurse, patient):
    rows = AdverseEvent.objects.filter(patient=patient).count()
    url = reverse("cohort:rows", args=[patient.study_id, "doses"])
    data = {"dose_date": "", "phase": "", "route": "", "dose_mg": "", "weight_kg": "", "form_status": "incomplete"}
    response = nurse.post(url, {**data, "next": "1"})
    assert response.status_code == 302
    assert response["Location"] == reverse("cohort:form", args=[patient.study_id, "reinduction"])
    # With something typed it is a save, and its errors are shown.
    response = nurse.post(url, {**data, "dose_mg": "90", "next": "1"})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert AdverseEvent.objects.filter(patient=patient).count() == rows
