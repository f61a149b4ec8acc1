"""Issue 12's "done when", in a real browser, by the three roles in turn: a coordinator raises a
query on a week-8 CRP value; the nurse sees it on her list and corrects the value citing the query;
the coordinator closes it, verifies the visit and locks the casebook; the investigator signs; a
later change is refused while locked, and after an unlock with a reason and a change the signature
shows as no longer valid. The database is checked after each step; screenshots (30-39) go to
test-output/screenshots/."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cohort.models import Assessment, Lock, Query, Signature, Verification
from tests.test_browser import TIMEOUT_MS, cell, page, shot  # noqa: F401 (page is a fixture)
from tests.test_browser_queries import signed_in


@pytest.mark.django_db(transaction=True)
def test_raise_answer_close_verify_lock_sign_unlock_change(page, live_server, people, patient):  # noqa: F811
    from playwright.sync_api import expect

    from cohort.choices import Role
    from tests.base import make_user
    from tests.test_signatures import PASSWORD, code_of, complete

    expect.set_options(timeout=TIMEOUT_MS)
    complete(patient)
    investigator = make_user("investigator_a", centre=people["centre_a"], role=Role.INVESTIGATOR)
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    casebook = f"{live_server.url}/patients/{patient.study_id}/"
    week_8_url = f"{casebook}forms/week_8/"

    # 1. The coordinator raises a query on the week-8 CRP.
    signed_in(page, live_server, people["coordinator"])
    page.goto(week_8_url)
    raising = page.locator("#query-raise")
    raising.locator("summary").click()
    raising.get_by_label("About").select_option("crp_mg_l")
    raising.get_by_label("Question to the site").fill("CRP 4.5 mg/L: the lab report says otherwise?")
    raising.get_by_role("button", name="Raise query").click()
    query = Query.objects.get()
    assert (query.row_id, query.field, query.state) == (week_8.pk, "crp_mg_l", "open")

    # 2. The nurse sees it on her list, and corrects the value citing the query.
    signed_in(page, live_server, people["nurse_a"])
    page.goto(f"{live_server.url}/patients/")
    badge = page.locator(f'tr:has(a:text-is("{patient.study_id}")) [data-open-queries]')
    expect(badge).to_have_attribute("data-open-queries", "1")
    shot(page, "30-nurse-list-open-query")
    page.goto(week_8_url)
    page.locator('form.crf-form [name="crp_mg_l"]').fill("5.4")
    page.get_by_label("Your answer").fill("Transcription error: the lab report says 5.4.")
    shot(page, "31-nurse-corrects-citing-the-query")
    page.locator("form.crf-form").get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".alert-success").first).to_be_visible()
    week_8.refresh_from_db()
    assert week_8.crp_mg_l == Decimal("5.4") and Query.objects.get().state == "answered"
    assert f"query #{query.pk}" in week_8.events.order_by("-pgh_id").first().pgh_context.metadata["reason"]

    # 3. The coordinator closes it, verifies the visit and locks the casebook.
    signed_in(page, live_server, people["coordinator"])
    page.goto(f"{live_server.url}/queries/{query.pk}/")
    page.get_by_label("Message").fill("Thank you.")
    page.get_by_role("button", name="Close").click()
    expect(page.locator("#query-state")).to_have_text("closed")
    page.goto(casebook)
    page.locator('[data-verify-column="week_8"]').click()
    expect(cell(page, "week_8").locator("[data-sdv]")).to_have_attribute("data-sdv", "verified")
    control = page.locator("#lock-control")
    control.locator("summary").click()
    control.get_by_label("Reason for locking").fill("Monitoring visit done")
    control.get_by_role("button", name="Lock").click()
    expect(page.locator("#lock-banner")).to_contain_text("Monitoring visit done")
    shot(page, "32-coordinator-verified-and-locked")
    assert Verification.objects.filter(row_id=week_8.pk, row_version=week_8.version).exists()
    assert Lock.objects.get(patient=patient).active

    # 4. The investigator signs.
    signed_in(page, live_server, investigator)
    page.goto(casebook)
    page.locator("#signature").get_by_role("button", name="Sign casebook").click()
    dialog = page.locator("#sign-dialog")
    dialog.locator('[name="password"]').fill(PASSWORD)
    dialog.locator('[name="otp_token"]').fill(code_of(investigator))
    shot(page, "33-investigator-signs")
    dialog.get_by_role("button", name="Sign", exact=True).click()
    expect(page.locator("#signature")).to_have_attribute("data-state", "valid")
    shot(page, "34-casebook-signed")
    assert Signature.objects.get().valid

    # 5. A change is refused while locked: the nurse's form is read-only, with the lock named.
    signed_in(page, live_server, people["nurse_a"])
    page.goto(week_8_url)
    expect(page.locator("#lock-banner")).to_contain_text("casebook lock")
    expect(page.locator('form.crf-form [name="crp_mg_l"]')).to_be_disabled()
    expect(page.locator("form.crf-form").get_by_role("button", name="Save", exact=True)).to_have_count(0)
    shot(page, "35-nurse-form-locked")

    # 6. The coordinator unlocks with a reason; the nurse changes the value.
    signed_in(page, live_server, people["coordinator"])
    page.goto(casebook)
    control = page.locator("#lock-control")
    control.locator("summary").click()
    control.get_by_label("Reason for unlocking").fill("Late lab result to enter")
    control.get_by_role("button", name="Unlock").click()
    expect(page.locator("#lock-banner")).to_have_count(0)
    assert Lock.objects.get(patient=patient).unlock_reason == "Late lab result to enter"
    signed_in(page, live_server, people["nurse_a"])
    page.goto(week_8_url)
    page.locator('form.crf-form [name="crp_mg_l"]').fill("6.1")
    page.locator('form.crf-form [name="reason_for_change"]').fill("Late lab result")
    page.locator("form.crf-form").get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".alert-success").first).to_be_visible()

    # 7. The signature shows as no longer valid, kept in the history; the visit needs verifying again.
    page.goto(casebook)
    panel = page.locator("#signature")
    expect(panel).to_have_attribute("data-state", "invalid")
    expect(panel).to_contain_text("needs signing again")
    expect(cell(page, "week_8").locator("[data-sdv]")).to_have_attribute("data-sdv", "changed")
    shot(page, "36-signature-no-longer-valid")
    signature = Signature.objects.get()
    assert not signature.valid and signature.invalidated_because == "casebook changed after signing"
