"""Nothing typed is lost (issue 13, item 4), in Chromium: a changed form warns before an in-app
link takes the nurse away (and not on its own save); when the session ends, what was typed is
kept and offered back on the same form after signing in again. Dutch, at the three widths."""

from __future__ import annotations

import re

import pytest

from cohort.models import Assessment
from tests.test_browser import TIMEOUT_MS, page, shot, sign_in, type_into  # noqa: F401 (page is a fixture)


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_a_changed_form_warns_before_a_link_takes_the_nurse_away(page, live_server, people, patient):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    sign_in(page, live_server, people["nurse_a"])
    form_url = f"{live_server.url}/patients/{patient.study_id}/forms/week_8/"
    page.goto(form_url)
    # Unchanged: a link just goes.
    page.locator("a", has_text=patient.study_id).first.click()
    expect(page).not_to_have_url(form_url)
    page.goto(form_url)

    type_into(page, "crp_mg_l", "12,5")
    asked = []

    def dismiss(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.locator("a", has_text=patient.study_id).first.click()
    expect(page.locator('form.crf-form [name="crp_mg_l"]')).to_have_value("12,5")
    assert asked and "niet zijn opgeslagen" in asked[0]
    assert page.url == form_url

    # Its own save does not ask.
    page.on("dialog", lambda dialog: pytest.fail(f"asked on save: {dialog.message}"))
    page.locator('form.crf-form button[name="save"]').click()
    expect(page).to_have_url(re.compile(rf"/patients/{patient.study_id}/$"))
    assert str(Assessment.objects.get(patient=patient, visit="week_8").crp_mg_l) == "12.5"


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_values_typed_before_the_session_ended_are_offered_back(page, live_server, people, patient, settings):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    settings.SESSION_COOKIE_AGE = 6  # the page signs out after six quiet seconds
    sign_in(page, live_server, people["nurse_a"])
    form_url = f"{live_server.url}/patients/{patient.study_id}/forms/week_8/"
    page.goto(form_url)
    type_into(page, "crp_mg_l", "33,3")
    page.locator('form.crf-form [name="corticosteroids"]').select_option("yes")
    expect(page).to_have_url(re.compile(r"/accounts/login/"), timeout=20_000)

    settings.SESSION_COOKIE_AGE = 30 * 60
    page.locator('[name="username"]').fill("nurse_a")
    page.locator('[name="password"]').fill("correct-horse-battery")
    page.locator('form button[type="submit"]').first.click()
    expect(page).to_have_url(form_url)
    offer = page.locator("#kept-values")
    expect(offer).to_contain_text("bewaard")
    expect(page.locator('form.crf-form [name="crp_mg_l"]')).to_have_value("4,5")
    for width, height in ((1366, 900), (768, 1024), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        shot(page, f"unsaved-kept-nl-{width}")
    offer.get_by_role("button", name="Terugzetten").click()
    expect(offer).to_have_count(0)
    expect(page.locator('form.crf-form [name="crp_mg_l"]')).to_have_value("33,3")
    expect(page.locator('form.crf-form [name="corticosteroids"]')).to_have_value("yes")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('form.crf-form button[name="save"]').click()
    expect(page).to_have_url(re.compile(rf"/patients/{patient.study_id}/$"))
    assert str(Assessment.objects.get(patient=patient, visit="week_8").crp_mg_l) == "33.3"
    # Offered once: the form opened again shows what is stored, without an offer.
    page.goto(form_url)
    expect(page.locator("#kept-values")).to_have_count(0)
