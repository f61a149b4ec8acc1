"""Issue 13's "done when": a Dutch nurse on a tablet (768 px, a Dutch browser) enrols a patient and
fills the casebook to complete, typing decimal commas, meeting one error on the way. On every page
she sees: no English (tests/test_dutch.py's checker), no raw variable name, no doubled error, and
axe-core finds no WCAG 2.1 A/AA violation (tests/test_accessibility.py's run). The database is
checked at the end; screenshots go to test-output/screenshots/ (40-49)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from cohort.models import Assessment, FollowUp, Patient
from tests.base import personae
from tests.test_browser import TIMEOUT_MS, cell, fill_form, page, shot  # noqa: F401 (page is a fixture)

VARIABLES = ("last_follow_up_date", "stop_date", "endoscopy_done", "agent_other", "crp_mg_l", "form_status", "hbi_")


def seen_well(browser_page, where: str, msgids) -> None:
    """What the nurse sees here: Dutch only, no variable name in the text, each error once, and
    nothing axe-core calls a WCAG violation."""
    from tests.test_accessibility import violations
    from tests.test_dutch import assert_dutch, visible_texts

    html = browser_page.content()
    assert_dutch(html, where, msgids)
    text = " ".join(visible_texts(html))
    assert not [name for name in VARIABLES if name in text], f"a variable name on {where}"
    errors = [e.strip() for e in browser_page.locator(".invalid-feedback").all_inner_texts() if e.strip()]
    assert len(errors) == len(set(errors)), f"a doubled error on {where}: {errors}"
    assert violations(browser_page) == [], f"axe on {where}"


def save_and_next(browser_page) -> None:
    browser_page.locator('form.crf-form button[name="next"]').click()


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_a_dutch_nurse_on_a_tablet_fills_a_casebook_to_complete(page, live_server):  # noqa: F811
    from playwright.sync_api import expect

    from tests.test_dutch import english_msgids

    expect.set_options(timeout=TIMEOUT_MS)
    msgids = english_msgids()
    people = personae()
    for centre, name in ((people["centre_a"], "Synthetisch centrum A"), (people["centre_b"], "Synthetisch centrum B")):
        centre.name = name  # a Dutch study's centres have Dutch names (data, not interface)
        centre.save()
    url = live_server.url
    page.set_viewport_size({"width": 768, "height": 1024})

    # Sign in and enrol.
    page.goto(f"{url}/accounts/login/")
    seen_well(page, "the sign-in page", msgids)
    page.locator('[name="username"]').fill("nurse_a")
    page.locator('[name="password"]').fill("correct-horse-battery")
    page.get_by_role("button", name="Inloggen").click()
    expect(page).to_have_url(f"{url}/patients/")
    seen_well(page, "the empty patient list", msgids)
    page.goto(f"{url}/patients/new/")
    seen_well(page, "enrolment", msgids)
    fill_form(
        page,
        {
            "enrolment_date": "2022-02-01",
            "consent": "yes",
            "sex": "F",
            "birth_year": "1985",
            "smoking": "never",
            "diagnosis_year": "2005",
            "montreal_location": "L3",
            "upper_gi": "no",
            "montreal_behaviour": "B1",
            "perianal": "no",
            "prior_resection": "no",
            "form_status": "complete",
        },
    )
    shot(page, "40-nl-tablet-enrol")
    page.locator('form.crf-form button[type="submit"]').click()
    expect(page).to_have_url(f"{url}/patients/AMC-001/")
    seen_well(page, "the new casebook", msgids)
    shot(page, "41-nl-tablet-casebook-new")

    # Prior biologics, doses (a decimal comma), re-induction.
    cell(page, "prior_biologics").click()
    seen_well(page, "prior biologics", msgids)
    fill_form(
        page,
        {
            "agent": "infliximab",
            "start_date": "2015-01-01",
            "stop_date": "2018-01-01",
            "stop_reason": "loss_of_response",
            "form_status": "complete",
        },
    )
    save_and_next(page)
    expect(page).to_have_url(f"{url}/patients/AMC-001/rows/doses/")
    seen_well(page, "the doses", msgids)
    for values in (
        {"dose_date": "2021-03-02", "phase": "initial_induction", "weight_kg": "70"},
        {"dose_date": "2022-03-01", "phase": "reinduction", "weight_kg": "72,5"},
    ):
        fill_form(page, values | {"route": "iv", "dose_mg": "390", "form_status": "complete"})
        page.locator('form.crf-form button[name="save"]').click()
        expect(page.locator(".alert-success").first).to_be_visible()
    save_and_next(page)  # the add-row is empty: on to the next form
    expect(page).to_have_url(f"{url}/patients/AMC-001/forms/reinduction/")
    seen_well(page, "the re-induction", msgids)
    fill_form(
        page,
        {
            "initial_response": "yes",
            "lor_date": "2022-02-09",
            "lor_clinical": "yes",
            "lor_biochemical": "no",
            "lor_endoscopic": "no",
            "interval_before": "q8w",
            "interval_after": "q4w",
            "corticosteroids": "no",
            "immunomodulator": "none",
            "form_status": "complete",
        },
    )
    save_and_next(page)

    # The four visits; at week 8 one error, beside its field, in Dutch, once; a CRP of 4,5.
    visits = {"week_0": "2022-03-01", "week_8": "2022-04-26", "week_20": "2022-07-19", "week_52": "2023-02-28"}
    for visit, day in visits.items():
        expect(page).to_have_url(f"{url}/patients/AMC-001/forms/{visit}/")
        seen_well(page, f"the {visit} form", msgids)
        values = {"not_done": "no", "assessment_date": day, "hbi_wellbeing": "1", "hbi_pain": "1"}
        values |= {"hbi_stools": "1", "hbi_mass": "0", "hbi_complications": "0", "crp_mg_l": "4,5"}
        values |= {"fcal_ug_g": "150", "endoscopy_done": "no", "corticosteroids": "no", "form_status": "complete"}
        if visit == "week_8":
            fill_form(page, values | {"hbi_pain": "7"})
            page.locator('form.crf-form button[name="save"]').click()
            expect(page.locator("#error-summary")).to_be_focused()
            beside = page.locator('form.crf-form .mb-3:has([name="hbi_pain"]) .invalid-feedback')
            expect(beside).to_have_text("moet tussen 0 en 3 liggen.")
            expect(page.locator('[name="crp_mg_l"]')).to_have_value("4,5")  # what she typed is kept
            seen_well(page, "the week 8 form with an error", msgids)
            shot(page, "42-nl-tablet-error-beside-its-field")
        fill_form(page, values)
        save_and_next(page)

    # Follow-up: no adverse events is an answer, and the casebook is complete.
    expect(page).to_have_url(f"{url}/patients/AMC-001/forms/follow_up/")
    seen_well(page, "the follow-up", msgids)
    fill_form(
        page,
        {
            "status": "ongoing",
            "last_follow_up_date": "2023-03-01",
            "adverse_events_any": "no",
            "form_status": "complete",
        },
    )
    page.locator('form.crf-form button[name="save"]').click()
    expect(page).to_have_url(f"{url}/patients/AMC-001/")
    for form in ("patient", "prior_biologics", "doses", "reinduction", *visits, "follow_up", "adverse_events"):
        expect(cell(page, form)).to_have_attribute("data-status", "complete")
    seen_well(page, "the complete casebook", msgids)
    shot(page, "43-nl-tablet-casebook-complete")
    page.goto(f"{url}/patients/")
    seen_well(page, "the patient list", msgids)
    expect(page.locator("#patients")).to_contain_text("10/10")
    shot(page, "44-nl-tablet-patient-list")
    page.goto(f"{url}/patients/AMC-001/history/")
    seen_well(page, "the history", msgids)
    shot(page, "45-nl-tablet-history")

    patient = Patient.objects.get(study_id="AMC-001")
    assert patient.doses.get(phase="reinduction").weight_kg == Decimal("72.5")
    assert {a.crp_mg_l for a in Assessment.objects.filter(patient=patient)} == {Decimal("4.5")}
    follow_up = FollowUp.objects.get(patient=patient)
    assert (follow_up.adverse_events_any, follow_up.last_follow_up_date) == ("no", dt.date(2023, 3, 1))
