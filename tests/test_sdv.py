"""Source data verification (SPEC section 10): a coordinator marks a form, or every form of a
visit, verified; a later change to a row shows "changed since verified" until it is verified again.
Through HTTP, checking the database afterwards."""

from __future__ import annotations

import pytest
from django.urls import reverse

from cohort.models import Assessment, Verification, VerificationEvent
from tests.base import login_as

pytestmark = pytest.mark.django_db


def sdv_of(client, patient) -> dict[str, str]:
    page = client.get(reverse("cohort:patient-detail", args=[patient.study_id])).content.decode()
    found = {}
    for chunk in page.split('data-form="')[1:]:
        key = chunk.split('"', 1)[0]
        cell = chunk.split("</a>", 1)[0]
        found[key] = cell.split('data-sdv="', 1)[1].split('"', 1)[0] if 'data-sdv="' in cell else ""
    return found


def test_a_coordinator_verifies_a_form_and_a_change_shows_until_verified_again(client, patient, people):
    login_as(client, people["coordinator"])
    assert sdv_of(client, patient)["week_8"] == "not_verified"
    client.post(reverse("cohort:verify", args=[patient.study_id]), {"key": "week_8"})
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    mark = Verification.objects.get()
    assert (mark.form, mark.row_id, mark.row_version, mark.verified_by.username) == (
        "assessments",
        week_8.pk,
        week_8.version,
        "coordinator",
    )
    assert sdv_of(client, patient)["week_8"] == "verified"
    assert sdv_of(client, patient)["week_20"] == "not_verified"

    Assessment.objects.filter(pk=week_8.pk).update(crp_mg_l=12, version=week_8.version + 1)  # a later save
    assert sdv_of(client, patient)["week_8"] == "changed"
    client.post(reverse("cohort:verify", args=[patient.study_id]), {"key": "week_8"})
    assert sdv_of(client, patient)["week_8"] == "verified"
    assert Verification.objects.get().row_version == week_8.version + 1
    assert VerificationEvent.objects.filter(pgh_obj_id=mark.pk).count() == 2  # audited: marked, re-marked


def test_verify_all_forms_of_a_visit_column(client, patient, people):
    login_as(client, people["coordinator"])
    client.post(reverse("cohort:verify", args=[patient.study_id]), {"column": "baseline"})
    states = sdv_of(client, patient)
    assert {states[key] for key in ("patient", "prior_biologics", "doses", "reinduction")} == {"verified"}
    assert states["week_8"] == "not_verified"
    assert Verification.objects.filter(form="prior_biologics").count() == patient.prior_biologics.count()


def test_nurses_see_the_marks_but_do_not_verify(client, patient, people):
    client.force_login(people["nurse_a"])
    assert client.post(reverse("cohort:verify", args=[patient.study_id]), {"key": "week_8"}).status_code == 403
    assert not Verification.objects.exists()
    assert "data-verify" not in client.get(reverse("cohort:patient-detail", args=[patient.study_id])).content.decode()


def test_the_patient_list_shows_each_patients_verification_progress(client, patient, people):
    login_as(client, people["coordinator"])
    client.post(reverse("cohort:verify", args=[patient.study_id]), {"column": "baseline"})
    page = client.get(reverse("cohort:patient-list")).content.decode()
    # The 4 baseline forms are verified, of every form that has rows.
    forms_with_rows = sum(1 for key, state in sdv_of(client, patient).items() if state)
    assert f'data-sdv-progress="4/{forms_with_rows}"' in page
