"""Errors a nurse can act on (issue 13, items 1 and 5), in Chromium and Dutch at the three widths:
another form's problem beside the date that caused it, linking that form; every problem of one save
at once; the casebook saying what is still to do."""

from __future__ import annotations

import pytest

from cohort.models import FollowUp
from tests.test_browser import TIMEOUT_MS, error_beside, page, shot, sign_in, type_into  # noqa: F401 (page is a fixture)

WIDTHS = ((1366, 900), (768, 1024), (390, 844))


def shots(browser_page, name: str) -> None:
    for width, height in WIDTHS:
        browser_page.set_viewport_size({"width": width, "height": height})
        shot(browser_page, f"{name}-{width}")


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_a_dutch_nurse_reads_each_error_once_beside_its_field(page, live_server, people, patient):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    sign_in(page, live_server, people["nurse_a"])
    page.goto(f"{live_server.url}/patients/{patient.study_id}/forms/week_52/")
    page.locator('form.crf-form [name="assessment_date"]').fill("2023-06-01")
    type_into(page, "hbi_pain", "7")
    type_into(page, "crp_mg_l", "900")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('form.crf-form button[name="save"]').click()
    expect(page.locator("form.crf-form .alert-danger")).to_contain_text("Er is niets opgeslagen")
    date_error = error_beside(page, "assessment_date")
    expect(date_error).to_contain_text("Datum laatste follow-up")
    expect(date_error).to_contain_text("moet op of na elke beoordelingsdatum liggen")
    expect(error_beside(page, "hbi_pain")).to_contain_text("moet tussen 0 en 3 liggen.")
    expect(error_beside(page, "crp_mg_l")).to_contain_text("moet tussen 0 en 500 liggen.")
    expect(page.get_by_text("moet op of na elke beoordelingsdatum liggen")).to_have_count(1)
    shots(page, "errors-cross-form-nl")
    date_error.get_by_role("link").click()
    expect(page.locator('form.crf-form [name="last_follow_up_date"]')).to_be_visible()
    assert FollowUp.objects.get(patient=patient).version == 1


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_the_casebook_says_what_is_still_to_do(page, live_server, people, patient):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    sign_in(page, live_server, people["nurse_a"])
    page.goto(f"{live_server.url}/patients/{patient.study_id}/")
    expect(page.locator('[data-todo="week_8"]')).to_contain_text("Nog op volledig zetten.")
    shots(page, "casebook-todo-nl")
