"""Accounts in a real browser, in Dutch (issue 13, item 8): a coordinator who forgot her password
resets it from the sign-in page, the e-mail arriving at a real SMTP server; the link sets the
password and signs nobody in, and signing in still asks for the authenticator code. An admin invites
a nurse, who chooses her password and lands on her patient list; she changes it in the user menu.
Pages are captured at 1366, 768 and 390 px (test-output/screenshots/accounts-*)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django_otp.plugins.otp_totp.models import TOTPDevice

from cohort.choices import Role
from tests.base import personae
from tests.test_browser import TIMEOUT_MS, page, shot  # noqa: F401 (page is a fixture)
from tests.test_browser_queries import signed_in
from tests.test_passwords import NEW_PASSWORD, PASSWORD, inbox, link_in, token  # noqa: F401 (inbox is a fixture)

WIDTHS = {"desktop": (1366, 900), "tablet": (768, 1024), "phone": (390, 844)}


def shots(page, name: str) -> None:  # noqa: F811 (the fixture's name)
    """The page at the three widths; none of them scrolls sideways."""
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), f"{name} at {width} px"
        shot(page, f"accounts-{name}-{label}")
    page.set_viewport_size({"width": 1366, "height": 900})


@pytest.fixture
def people():
    people = personae()
    people["coordinator"].email = "coordinator@example.org"
    people["coordinator"].save(update_fields=["email"])
    return people


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_a_dutch_coordinator_resets_her_password_and_still_gives_her_code(page, live_server, inbox, people):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    device = TOTPDevice.objects.create(user=people["coordinator"], name="phone", confirmed=True)
    page.goto(f"{live_server.url}/accounts/login/")
    shots(page, "01-login")
    page.get_by_role("link", name="Wachtwoord vergeten?").click()
    expect(page.get_by_role("heading", name="Wachtwoord vergeten?")).to_be_visible()
    shots(page, "02-reset")
    page.get_by_label("E-mailadres").fill("coordinator@example.org")
    page.get_by_role("button", name="Link versturen").click()
    expect(page.get_by_role("heading", name="Kijk in uw e-mail")).to_be_visible()
    shots(page, "03-reset-sent")

    message = inbox.only()
    assert "Kies een nieuw wachtwoord" in message["Subject"]
    page.goto(live_server.url + link_in(message))
    expect(page.get_by_role("heading", name="Kies een nieuw wachtwoord")).to_be_visible()
    page.locator("#id_new_password1").fill("kort")
    page.locator("#id_new_password2").fill("kort")
    page.get_by_role("button", name="Wachtwoord opslaan").click()
    expect(page.locator(".invalid-feedback").first).to_be_visible()
    shots(page, "04-set-password-error")
    page.locator("#id_new_password1").fill(NEW_PASSWORD)
    page.locator("#id_new_password2").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Wachtwoord opslaan").click()
    expect(page.get_by_role("heading", name="Wachtwoord gewijzigd")).to_be_visible()
    shots(page, "05-reset-complete")
    page.goto(f"{live_server.url}/patients/")  # the link signed nobody in
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/patients/$"))
    page.locator("#id_username").fill("coordinator")
    page.locator("#id_password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Inloggen").click()
    expect(page).to_have_url(re.compile(r"/accounts/mfa/verify/"))
    expect(page.get_by_role("heading", name="Vul uw code in")).to_be_visible()
    page.get_by_label("Code uit uw authenticator-app").fill(token(device))
    page.get_by_role("button", name="Controleren").click()
    expect(page).to_have_url(f"{live_server.url}/patients/")


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_a_dutch_admin_invites_a_nurse_who_sets_and_changes_her_password(page, live_server, inbox, people):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    signed_in(page, live_server, people["admin"])
    page.goto(f"{live_server.url}/admin/auth/user/")
    shots(page, "06-admin-user-list")
    page.get_by_role("link", name="Gebruiker uitnodigen").click()
    page.get_by_label("Gebruikersnaam").fill("verpleegkundige")
    page.get_by_label("E-mailadres").fill("vpk@example.org")
    page.get_by_label("Taal").select_option("nl")
    page.get_by_label("Centrum").select_option(str(people["centre_a"].pk))
    page.get_by_label("Rol").select_option(Role.NURSE)
    shots(page, "07-admin-invite")
    page.get_by_role("button", name="Uitnodiging versturen").click()
    expect(page.locator(".messagelist")).to_contain_text("Uitnodiging gestuurd aan vpk@example.org")

    page.context.clear_cookies()  # the nurse's own browser
    page.goto(live_server.url + link_in(inbox.only()))
    expect(page.get_by_role("heading", name="Welkom")).to_be_visible()
    shots(page, "08-invitation")
    page.locator("#id_new_password1").fill(PASSWORD)
    page.locator("#id_new_password2").fill(PASSWORD)
    page.get_by_role("button", name="Wachtwoord opslaan").click()
    expect(page).to_have_url(f"{live_server.url}/patients/")
    expect(page.get_by_text("Uw wachtwoord is ingesteld.")).to_be_visible()

    page.get_by_role("button", name="verpleegkundige").click()
    page.get_by_role("link", name="Wachtwoord wijzigen").click()
    shots(page, "09-change-password")
    page.locator("#id_old_password").fill(PASSWORD)
    page.locator("#id_new_password1").fill(NEW_PASSWORD)
    page.locator("#id_new_password2").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Wachtwoord wijzigen").click()
    expect(page.get_by_text("Uw wachtwoord is gewijzigd.")).to_be_visible()
    assert User.objects.get(username="verpleegkundige").check_password(NEW_PASSWORD)
