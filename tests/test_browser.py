"""A research nurse's first patient, in a real browser (Debian's headless Chromium, driven by
Playwright against pytest-django's live server): sign in, enrol, prior biologics, the doses, the
re-induction, the week 0 and week 8 visits with a validation error corrected, and the casebook
updating along the way. The database is checked at the end.

Screenshots of the pages go to test-output/screenshots/ (full page), to be looked at.

Without /usr/bin/chromium or the `playwright` package the test is skipped with the reason; with
REQUIRE_SERVICES=1 (CI) that is a failure instead.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connections

from cohort.models import Assessment, Patient, PriorBiologic, Reinduction, UstekinumabDose
from tests.base import personae
from tests.conftest import skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
# Playwright's own browser download is not used: Debian's Chromium, without anything that would
# reach the network on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
TIMEOUT_MS = 10_000


@pytest.fixture
def page(request, monkeypatch):
    """A fresh browser page (1280 px wide, English); fails the test on any JavaScript error. Another
    browser language: `@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)`."""
    browser_locale = getattr(request, "param", "en-GB")
    if not os.access(CHROMIUM, os.X_OK):
        skip_or_fail(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None:
        skip_or_fail("the playwright package is not installed (pip install -e '.[dev]')")
    # Playwright's sync API runs an event loop in this thread, and Django then refuses the test's own
    # ORM calls as 'sync from async context'; the live server answers from its own thread anyway.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=browser_locale)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield page
        finally:
            browser.close()
            # Inside Playwright's context the test's ORM calls got connections of their own (Django's
            # connections are context-local); close them here, or the test database cannot be dropped.
            connections.close_all()
    assert errors == [], f"JavaScript errors on the pages: {errors}"


def shot(page, name: str) -> None:
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def fill_form(page, values: dict[str, str]) -> None:
    """Type into inputs and pick options in selects, by field name, as a user would."""
    for name, value in values.items():
        field = page.locator(f'form.crf-form [name="{name}"]')
        if field.evaluate("el => el.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)


def cell(page, form: str):
    return page.locator(f'#casebook a.casebook-cell[data-form="{form}"]')


def error_beside(page, name: str):
    """The validation message shown with a field (crispy's Bootstrap 5 .invalid-feedback)."""
    wrapper = page.locator(f'form.crf-form .mb-3:has([name="{name}"])')
    return wrapper.locator(".invalid-feedback")


@pytest.mark.django_db(transaction=True)
def test_it_takes_a_nurse_through_a_patient_record(page, live_server):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    personae()
    url = live_server.url

    # Sign in: the nurse lands on the (empty) patient list.
    page.goto(f"{url}/patients/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    shot(page, "00-login")
    page.locator('[name="username"]').fill("nurse_a")
    page.locator('[name="password"]').fill("correct-horse-battery")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{url}/patients/")
    expect(page.locator("#patients tbody")).to_contain_text("No patients yet.")
    shot(page, "01-patient-list")

    # Enrol: the study ID is assigned and the casebook opens with the enrolment form complete.
    page.get_by_role("link", name="Enrol a patient").click()
    expect(page).to_have_url(f"{url}/patients/new/")
    fill_form(
        page,
        {
            "centre": "AMC (Synthetic Centre A)",
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
    shot(page, "01b-enrol-form")
    page.get_by_role("button", name="Enrol", exact=True).click()
    expect(page).to_have_url(f"{url}/patients/AMC-001/")
    expect(page.get_by_role("alert")).to_contain_text("Patient AMC-001 enrolled.")
    expect(page.get_by_role("heading", name="Casebook AMC-001")).to_be_visible()
    expect(cell(page, "patient")).to_have_attribute("data-status", "complete")
    for form in ("prior_biologics", "doses", "reinduction", "week_0", "week_8", "follow_up", "adverse_events"):
        expect(cell(page, form)).to_have_attribute("data-status", "not_started")
        expect(cell(page, form)).to_contain_text("not started")
    expect(page.locator('#schedule tr[data-visit="week_8"]')).to_have_attribute("data-state", "unscheduled")
    shot(page, "02-casebook")

    # Prior biologics: two anti-TNF courses, each added on the same page.
    cell(page, "prior_biologics").click()
    expect(page.get_by_role("heading", name="Prior biologics")).to_be_visible()
    expect(page.locator("#rows")).to_contain_text("No rows yet.")
    # 'other' asks for the agent's name, hidden otherwise.
    other_name = page.locator('[name="agent_other"]')
    expect(other_name).to_be_hidden()
    page.locator('[name="agent"]').select_option("other")
    expect(other_name).to_be_visible()
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
    expect(other_name).to_be_hidden()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("Prior biologics saved.")
    expect(page.locator("#rows tbody tr")).to_have_count(1)
    expect(page.locator("#rows")).to_contain_text("infliximab")
    shot(page, "02b-prior-biologics")
    fill_form(
        page,
        {
            "agent": "adalimumab",
            "start_date": "2018-02-01",
            "stop_date": "2020-06-01",
            "stop_reason": "loss_of_response",
            "form_status": "complete",
        },
    )
    page.get_by_role("button", name="Save and go to the next form").click()

    # Doses: the initial induction, then the re-induction (day 0 of the visit schedule).
    expect(page.get_by_role("heading", name="Ustekinumab doses")).to_be_visible()
    fill_form(
        page,
        {
            "dose_date": "2021-03-02",
            "phase": "initial_induction",
            "route": "iv",
            "dose_mg": "390",
            "weight_kg": "70",
            "form_status": "complete",
        },
    )
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#rows tbody tr")).to_have_count(1)
    fill_form(
        page,
        {
            "dose_date": "2022-03-01",
            "phase": "reinduction",
            "route": "iv",
            "dose_mg": "390",
            "weight_kg": "72.5",
            "form_status": "complete",
        },
    )
    page.get_by_role("button", name="Save and go to the next form").click()

    # Re-induction: loss of response between the two IV doses.
    expect(page.get_by_role("heading", name="Loss of response and re-induction")).to_be_visible()
    expect(page.get_by_text("Re-induction (day 0): ")).to_contain_text("2022")
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
    page.get_by_role("button", name="Save and go to the next form").click()

    # Week 0: the HBI total fills itself in from the five components.
    expect(page).to_have_url(f"{url}/patients/AMC-001/forms/week_0/")
    total = page.locator('[name="hbi"]')
    fill_form(
        page,
        {
            "not_done": "no",
            "assessment_date": "2022-03-01",
            "hbi_wellbeing": "2",
            "hbi_pain": "2",
            "hbi_stools": "3",
            "hbi_mass": "1",
        },
    )
    expect(total).to_have_value("")
    page.locator('[name="hbi_complications"]').fill("1")
    expect(total).to_have_value("9")
    expect(total).not_to_be_editable()
    expect(page.locator(".js-hbi-note")).to_contain_text("Computed from the five components.")
    fill_form(
        page,
        {
            "crp_mg_l": "12.5",
            "fcal_ug_g": "450",
            "endoscopy_done": "no",
            "corticosteroids": "no",
            "form_status": "complete",
        },
    )
    page.get_by_role("button", name="Save and go to the next form").click()

    # Week 8, entered with two mistakes: an abdominal pain of 7 (range 0-3) and a date before the
    # re-induction. The field's own range is reported first; the cross-form date rule once the
    # fields are valid (the form refuses before the record is checked as a whole).
    expect(page).to_have_url(f"{url}/patients/AMC-001/forms/week_8/")
    fill_form(
        page,
        {
            "not_done": "no",
            "assessment_date": "2022-02-20",
            "hbi_wellbeing": "1",
            "hbi_pain": "7",
            "hbi_stools": "1",
            "hbi_mass": "0",
            "hbi_complications": "0",
            "crp_mg_l": "3.1",
            "form_status": "incomplete",
        },
    )
    expect(total).to_have_value("9")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page).to_have_url(f"{url}/patients/AMC-001/forms/week_8/")
    pain = page.locator('[name="hbi_pain"]')
    expect(error_beside(page, "hbi_pain")).to_have_text("must be between 0 and 3.")
    expect(pain).to_have_class(re.compile(r"\bis-invalid\b"))
    expect(pain).to_have_value("7")  # what was typed is kept
    expect(error_beside(page, "hbi_wellbeing")).to_have_count(0)
    shot(page, "03-form-error")

    pain.fill("1")
    expect(total).to_have_value("3")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(error_beside(page, "assessment_date")).to_have_text(
        "must be on or after the re-induction dose date (1 Mar 2022)."
    )
    expect(error_beside(page, "hbi_pain")).to_have_count(0)
    expect(total).to_have_value("3")
    shot(page, "03b-form-error-cross-form")

    # Corrected: the visit is saved (still marked incomplete) and the casebook opens.
    page.locator('[name="assessment_date"]').fill("2022-04-26")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page).to_have_url(f"{url}/patients/AMC-001/")
    expect(page.get_by_role("alert")).to_contain_text("saved.")

    # The casebook shows where the record stands.
    for form in ("patient", "prior_biologics", "doses", "reinduction", "week_0"):
        expect(cell(page, form)).to_have_attribute("data-status", "complete")
    expect(cell(page, "week_8")).to_have_attribute("data-status", "incomplete")
    expect(cell(page, "week_8")).to_contain_text("incomplete")
    for form in ("week_20", "week_52", "follow_up", "adverse_events"):
        expect(cell(page, form)).to_have_attribute("data-status", "not_started")
    expect(page.locator('#schedule tr[data-visit="week_0"]')).to_have_attribute("data-state", "done")
    expect(page.locator('#schedule tr[data-visit="week_8"]')).to_have_attribute("data-state", "done")
    expect(page.locator('#schedule tr[data-visit="week_8"]')).to_contain_text("26 Apr 2022")
    expect(page.locator('#schedule tr[data-visit="week_20"]')).to_have_attribute("data-state", "overdue")
    shot(page, "04-casebook-updated")

    page.get_by_role("navigation").get_by_role("link", name="Patients").first.click()
    row = page.locator("#patients tbody tr", has_text="AMC-001")
    expect(row).to_contain_text("5/10")
    shot(page, "05-patient-list-updated")

    # What the browser did is what the database holds.
    patient = Patient.objects.get()
    assert (patient.study_id, patient.centre.code, patient.created_by.username) == ("AMC-001", "AMC", "nurse_a")
    assert patient.enrolment_date == dt.date(2022, 2, 1)
    assert patient.form_status == "complete"
    assert list(PriorBiologic.objects.filter(patient=patient).values_list("agent", "stop_date")) == [
        ("infliximab", dt.date(2018, 1, 1)),
        ("adalimumab", dt.date(2020, 6, 1)),
    ]
    assert list(UstekinumabDose.objects.filter(patient=patient).values_list("phase", "dose_date", "weight_kg")) == [
        ("initial_induction", dt.date(2021, 3, 2), Decimal("70.0")),
        ("reinduction", dt.date(2022, 3, 1), Decimal("72.5")),
    ]
    assert Reinduction.objects.get(patient=patient).lor_date == dt.date(2022, 2, 9)
    week_0, week_8 = Assessment.objects.filter(patient=patient).order_by("visit")
    assert (week_0.visit, week_0.assessment_date, week_0.hbi, week_0.form_status) == (
        "week_0",
        dt.date(2022, 3, 1),
        9,
        "complete",
    )
    assert (week_8.visit, week_8.assessment_date, week_8.hbi_pain, week_8.hbi, week_8.form_status) == (
        "week_8",
        dt.date(2022, 4, 26),
        1,
        3,
        "incomplete",
    )
    assert week_8.version == 1  # the refused save wrote nothing


@pytest.mark.django_db(transaction=True)
def test_what_a_nurse_hides_by_changing_her_mind_is_not_sent(page, live_server, people, patient):
    """'Visit not done' after typing the measurements, 'other' agent then a listed one: the hidden
    values are cleared before sending, so the save is not refused over fields she cannot see."""
    from django.test import Client
    from playwright.sync_api import expect

    from tests.base import T0

    expect.set_options(timeout=TIMEOUT_MS)
    Assessment.objects.filter(patient=patient, visit="week_20").delete()
    client = Client()
    client.force_login(people["nurse_a"])
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )

    page.goto(f"{live_server.url}/patients/{patient.study_id}/forms/week_20/")
    fill_form(page, {"assessment_date": (T0 + dt.timedelta(days=140)).isoformat(), "hbi_wellbeing": "2"})
    fill_form(page, {"hbi_pain": "1", "hbi_stools": "3", "hbi_mass": "0", "hbi_complications": "0", "crp_mg_l": "7"})
    expect(page.locator('[name="hbi"]')).to_have_value("6")
    page.locator('[name="not_done"]').select_option("yes")
    expect(page.locator(".js-measurements")).to_be_hidden()
    page.locator('[name="not_done_reason"]').select_option("missed")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/patients/{patient.study_id}/")
    week_20 = Assessment.objects.get(patient=patient, visit="week_20")
    assert (week_20.not_done, week_20.not_done_reason, week_20.hbi, week_20.hbi_pain, week_20.crp_mg_l) == (
        "yes",
        "missed",
        None,
        None,
        None,
    )

    page.goto(f"{live_server.url}/patients/{patient.study_id}/rows/prior_biologics/")
    page.locator('[name="agent"]').select_option("other")
    fill_form(page, {"agent_other": "ozanimod"})
    page.locator('[name="agent"]').select_option("vedolizumab")
    expect(page.locator('[name="agent_other"]')).to_be_hidden()
    fill_form(page, {"start_date": "2012-01-01", "stop_date": "2014-06-01", "stop_reason": "loss_of_response"})
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#rows")).to_contain_text("vedolizumab")
    course = PriorBiologic.objects.get(patient=patient, agent="vedolizumab")
    assert course.agent_other == ""


@pytest.mark.django_db(transaction=True)
def test_a_nurse_confirms_a_flagged_visit_date(page, live_server, people, patient):
    from django.test import Client
    from playwright.sync_api import expect

    from tests.base import T0

    expect.set_options(timeout=TIMEOUT_MS)
    Assessment.objects.filter(patient=patient, visit="week_8").update(assessment_date=T0 + dt.timedelta(days=90))
    client = Client()
    client.force_login(people["nurse_a"])
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    page.goto(f"{live_server.url}/patients/{patient.study_id}/forms/week_8/")
    flags = page.locator("#flags")
    expect(flags).to_contain_text("day 90 after re-induction is outside the week 8 window")
    flags.locator('[name="comment"]').fill("date checked in the chart")
    shot(page, "06-flag-to-confirm")
    flags.get_by_role("button", name="Confirm value").click()
    expect(page.locator(".alert-success")).to_contain_text("Flag confirmed")
    expect(page.locator("#flags")).to_have_count(0)
    page.goto(f"{live_server.url}/patients/{patient.study_id}/")
    expect(cell(page, "week_8")).to_have_attribute("data-status", "incomplete")
    assert patient.flag_confirmations.get().comment == "date checked in the chart"


def sign_in(page, live_server, user) -> None:
    """The page signed in as `user` (a session made by Django's test client, handed to the browser)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )


def type_into(page, name: str, text: str) -> None:
    """Key by key, as a nurse types (not a value set by script), after emptying the field."""
    field = page.locator(f'form.crf-form [name="{name}"]')
    field.fill("")
    field.press_sequentially(text)


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_a_dutch_nurse_types_decimal_commas_and_gets_the_numbers_she_meant(page, live_server, people, patient):
    """Issue 10: Chromium's number input turned 12,5 into 125, saved without a word. The CRF's
    numbers are text now, read in the user's language (SPEC section 6, "Numbers")."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    sign_in(page, live_server, people["nurse_a"])
    week_8 = f"{live_server.url}/patients/{patient.study_id}/forms/week_8/"
    page.goto(week_8)
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    crp = page.locator('[name="crp_mg_l"]')
    expect(crp).to_have_value("4,5")  # the stored 4.5, in her style

    type_into(page, "crp_mg_l", "12,5")
    expect(crp).to_have_value("12,5")
    shot(page, "07-dutch-decimal-comma-typed")
    page.get_by_role("button", name="Opslaan", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/patients/{patient.study_id}/")
    expect(page.get_by_role("alert")).to_contain_text("opgeslagen")
    expect(page.locator(".history")).to_contain_text("4,5 → 12,5")
    shot(page, "07a-dutch-casebook-history")
    assert Assessment.objects.get(patient=patient, visit="week_8").crp_mg_l == Decimal("12.5")
    page.goto(week_8)
    expect(crp).to_have_value("12,5")
    shot(page, "07b-dutch-decimal-comma-saved")

    # A point means the same to her; a whole number takes no separator; 1.800 is not guessed at.
    page.goto(f"{live_server.url}/patients/{patient.study_id}/forms/week_20/")
    total = page.locator('[name="hbi"]')
    for name, typed in (("hbi_wellbeing", "1"), ("hbi_pain", "0"), ("hbi_mass", "0"), ("hbi_complications", "0")):
        type_into(page, name, typed)
    type_into(page, "hbi_stools", "2,5")
    expect(total).to_be_editable()  # no sum of something she did not mean
    type_into(page, "crp_mg_l", "12.5")
    type_into(page, "fcal_ug_g", "1.800")
    page.get_by_role("button", name="Opslaan", exact=True).click()
    expect(error_beside(page, "hbi_stools")).to_have_text("Vul een heel getal in, zonder punt of komma.")
    expect(error_beside(page, "fcal_ug_g")).to_have_text("“1.800” kan 1800 of 1,8 betekenen: schrijf wat u bedoelt.")
    expect(error_beside(page, "crp_mg_l")).to_have_count(0)
    expect(page.locator('[name="hbi_stools"]')).to_have_value("2,5")  # what she typed stays, to correct
    shot(page, "07c-dutch-unreadable-numbers-refused")
    week_20 = Assessment.objects.get(patient=patient, visit="week_20")
    assert (week_20.version, week_20.hbi_stools, week_20.crp_mg_l) == (1, None, Decimal("4.5"))

    type_into(page, "hbi_stools", "2")
    expect(total).to_have_value("3")
    expect(total).not_to_be_editable()
    type_into(page, "fcal_ug_g", "1800")
    page.get_by_role("button", name="Opslaan", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/patients/{patient.study_id}/")
    week_20.refresh_from_db()
    assert (week_20.hbi_stools, week_20.hbi, week_20.crp_mg_l, week_20.fcal_ug_g) == (
        2,
        3,
        Decimal("12.5"),
        Decimal("1800"),
    )


@pytest.mark.django_db(transaction=True)
def test_in_english_a_decimal_comma_is_refused_at_the_field_and_nothing_saved(page, live_server, people, patient):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    sign_in(page, live_server, people["nurse_a"])
    page.goto(f"{live_server.url}/patients/{patient.study_id}/forms/week_8/")
    crp = page.locator('[name="crp_mg_l"]')
    expect(crp).to_have_value("4.5")

    type_into(page, "crp_mg_l", "12,5")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(error_beside(page, "crp_mg_l")).to_have_text(
        "Write decimals with a point, as in 12.5; a comma is not read as part of a number."
    )
    expect(crp).to_have_value("12,5")
    expect(crp).to_have_class(re.compile(r"\bis-invalid\b"))
    shot(page, "07d-english-decimal-comma-refused")
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    assert (week_8.crp_mg_l, week_8.version) == (Decimal("4.5"), 1)
