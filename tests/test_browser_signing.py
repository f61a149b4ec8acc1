"""An investigator signs a casebook in a real browser (tests/test_browser.py's Chromium): the
dialog shows what the signature means, a wrong password signs nothing, the password and the code of
the authenticator app sign; a later change shows the signature no longer valid. The database is
checked along the way; screenshots go to test-output/screenshots/."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from cohort.models import SIGNATURE_MEANING, Signature
from tests.test_browser import page  # noqa: F401 - the Chromium fixture


@pytest.mark.django_db(transaction=True)
def test_an_investigator_signs_through_the_dialog(page, live_server, people, patient):  # noqa: F811
    from django.test import Client
    from playwright.sync_api import expect

    from cohort.choices import Role
    from tests.base import login_as, make_user
    from tests.test_browser import TIMEOUT_MS, shot
    from tests.test_signatures import PASSWORD, code_of, complete

    expect.set_options(timeout=TIMEOUT_MS)
    complete(patient)
    investigator = make_user("investigator_a", centre=people["centre_a"], role=Role.INVESTIGATOR)
    client = login_as(Client(), investigator)  # with a TOTP device, this session verified by it
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    casebook = f"{live_server.url}/patients/{patient.study_id}/"

    page.goto(casebook)
    panel = page.locator("#signature")
    expect(panel).to_have_attribute("data-state", "unsigned")
    panel.get_by_role("button", name="Sign casebook").click()
    dialog = page.locator("#sign-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#attestation")).to_have_text(SIGNATURE_MEANING)
    dialog.locator('[name="password"]').fill("not my password")
    dialog.locator('[name="otp_token"]').fill(code_of(investigator))
    shot(page, "20-sign-dialog")
    dialog.get_by_role("button", name="Sign", exact=True).click()

    # Refused: the signing page says why (no JavaScript needed there), and nothing is stored.
    expect(page).to_have_url(f"{casebook}sign/")
    expect(page.locator("#sign-form .invalid-feedback")).to_have_text(
        "The password is not correct. Nothing was signed."
    )
    assert not Signature.objects.exists()
    form = page.locator("#sign-form")
    form.locator('[name="password"]').fill(PASSWORD)
    form.locator('[name="otp_token"]').fill(code_of(investigator))
    form.get_by_role("button", name="Sign", exact=True).click()

    expect(page).to_have_url(casebook)
    expect(page.locator(".alert-success")).to_contain_text("Casebook AMC-001 signed.")
    expect(panel).to_have_attribute("data-state", "valid")
    expect(panel).to_contain_text("by investigator_a on ")
    expect(panel.get_by_role("button", name="Sign casebook")).to_have_count(0)
    shot(page, "21-casebook-signed")
    signature = Signature.objects.get()
    assert (signature.signed_by, signature.meaning, signature.valid) == (investigator, SIGNATURE_MEANING, True)

    # A change after signing (here by raw SQL): no longer valid, needs signing again, history kept.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE cohort_assessment SET crp_mg_l = 12 WHERE patient_id = %s AND visit = 'week_8'", [patient.pk]
        )
    page.reload()
    expect(panel).to_have_attribute("data-state", "invalid")
    expect(panel).to_contain_text("needs signing again")
    expect(page.locator("#signature-history li")).to_have_count(1)
    expect(page.locator("#signature-history")).to_contain_text("casebook changed after signing")
    shot(page, "22-casebook-signature-no-longer-valid")
    signature.refresh_from_db()
    assert signature.invalidated_because == "casebook changed after signing"
