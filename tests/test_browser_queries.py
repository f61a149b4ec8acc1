"""A data query from raising to closing, in a real browser (issue 12): the coordinator raises a
query on the week-8 CRP; the nurse sees it on her patient list and in the casebook, reads the
question beside the field, corrects the value and answers in one save; the coordinator closes it.
The database is checked after each step. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cohort.models import Assessment, Query
from tests.test_browser import TIMEOUT_MS, cell, page, shot  # noqa: F401 (page is a fixture)


def signed_in(page, live_server, user) -> None:  # noqa: F811 (the fixture's name)
    """The browser signed in as `user`, after the second factor where the role needs one."""
    from django.test import Client

    from tests.base import login_as

    client = Client()
    login_as(client, user)
    page.context.clear_cookies()
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )


@pytest.mark.django_db(transaction=True)
def test_a_query_is_raised_answered_with_a_correction_and_closed(page, live_server, people, patient):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    form_url = f"{live_server.url}/patients/{patient.study_id}/forms/week_8/"

    # The coordinator raises a query on the CRP.
    signed_in(page, live_server, people["coordinator"])
    page.goto(form_url)
    raising = page.locator("#query-raise")
    raising.locator("summary").click()
    raising.get_by_label("About").select_option("crp_mg_l")
    raising.get_by_label("Question to the site").fill("CRP looks high for this visit: please check the lab report.")
    shot(page, "20-query-raise")
    raising.get_by_role("button", name="Raise query").click()
    expect(page.locator(".alert-success")).to_contain_text("raised")
    query = Query.objects.get()
    assert (query.field, query.row_id, query.state) == ("crp_mg_l", week_8.pk, "open")

    # The nurse sees it on her list and in the casebook, and beside the field.
    signed_in(page, live_server, people["nurse_a"])
    page.goto(f"{live_server.url}/patients/{patient.study_id}/")
    expect(cell(page, "week_8").locator("[data-queries]")).to_have_attribute("data-queries", "1")
    shot(page, "21-query-casebook-badge")
    cell(page, "week_8").click()
    note = page.locator(f'.query-note[data-query="{query.pk}"]')
    expect(note).to_contain_text("please check the lab report")
    page.locator('form.crf-form [name="crp_mg_l"]').fill("9.5")
    page.get_by_label("Your answer").fill("Typo: the lab report says 9.5 mg/L.")
    shot(page, "22-query-answer")
    page.locator("form.crf-form").get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".alert-success").first).to_be_visible()
    query.refresh_from_db()
    week_8.refresh_from_db()
    assert query.state == "answered" and week_8.crp_mg_l == Decimal("9.5")
    reason = week_8.events.order_by("-pgh_id").first().pgh_context.metadata["reason"]
    assert f"query #{query.pk}" in reason

    # The coordinator reads the answer and closes the query.
    signed_in(page, live_server, people["coordinator"])
    page.goto(f"{live_server.url}/queries/")
    row = page.locator(f'#query-table tr[data-query="{query.pk}"]')
    expect(row).to_have_attribute("data-state", "answered")
    shot(page, "23-query-list")
    row.get_by_role("link", name=f"#{query.pk}").click()
    expect(page.locator("#conversation")).to_contain_text("lab report says 9.5")
    page.get_by_label("Message").fill("Thank you, corrected.")
    page.get_by_role("button", name="Close").click()
    expect(page.locator("#query-state")).to_have_text("closed")
    shot(page, "24-query-closed")
    query.refresh_from_db()
    assert query.state == "closed"
    assert [m.action for m in query.messages.all()] == ["raise", "answer", "close"]
