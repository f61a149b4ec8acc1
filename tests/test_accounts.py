"""Signing in: login required everywhere, throttling, TOTP, sessions, language (SPEC sections 2 and 9)."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.template import Context, Template
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from cohort import accounts
from tests.base import login_as, personae

PASSWORD = "correct-horse-battery"
pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    return personae()


def sign_in(client: Client, username: str, password: str = PASSWORD):
    return client.post(reverse("login"), {"username": username, "password": password})


def token(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def confirmed_device(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def redirect_path(response) -> str:
    return response["Location"].split("?")[0]


# ---------------------------------------------------------------------------------------------
# Login required


@pytest.mark.parametrize(
    "url", ["/", "/patients/", "/patients/new/", "/admin/", "/admin/cohort/centre/", "/accounts/mfa/"]
)
def test_it_sends_anonymous_visitors_to_the_login_page(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_it_sends_the_admin_login_page_to_ours(client):
    response = client.get("/admin/login/?next=/admin/cohort/centre/")

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/admin/cohort/centre/"


def test_it_refuses_a_post_without_csrf_token(people):
    client = Client(enforce_csrf_checks=True)

    response = client.post(reverse("login"), {"username": "nurse_a", "password": PASSWORD})

    assert response.status_code == 403
    assert SESSION_KEY not in client.session


def test_it_signs_a_nurse_in_and_lets_her_work_without_a_second_factor(client, people):
    response = sign_in(client, "nurse_a")

    assert response.status_code == 302
    assert response["Location"] == reverse("cohort:patient-list")
    assert client.get(reverse("cohort:patient-list")).status_code == 200
    people["nurse_a"].refresh_from_db()
    assert people["nurse_a"].last_login is not None


def test_it_rejects_a_wrong_password_with_a_message(client, people):
    response = sign_in(client, "nurse_a", "wrong-password")

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert "After 5 wrong passwords in a row the account is locked for 30 minutes" in response.content.decode()
    assert SESSION_KEY not in client.session


# ---------------------------------------------------------------------------------------------
# Throttling


def test_it_locks_the_account_after_five_wrong_passwords(client, people):
    for _attempt in range(4):
        assert sign_in(client, "nurse_a", "wrong-password").status_code == 200

    fifth = sign_in(client, "nurse_a", "wrong-password")
    with_right_password = sign_in(client, "nurse_a")

    assert fifth.status_code == 429
    assert "Account locked" in fifth.content.decode()
    assert "Try again in 30 minutes" in fifth.content.decode()
    assert with_right_password.status_code == 429
    assert SESSION_KEY not in client.session
    assert AccessAttempt.objects.get(username="nurse_a").failures_since_start >= 5


def test_it_locks_by_username_so_others_at_the_same_address_can_still_sign_in(client, people):
    for _attempt in range(5):
        sign_in(client, "nurse_a", "wrong-password")

    response = sign_in(client, "nurse_b")

    assert response.status_code == 302
    assert client.session[SESSION_KEY] == str(people["nurse_b"].pk)


def test_it_forgets_earlier_failures_after_a_successful_login(client, people):
    for _attempt in range(4):
        sign_in(client, "nurse_a", "wrong-password")

    assert sign_in(client, "nurse_a").status_code == 302
    assert not AccessAttempt.objects.filter(username="nurse_a").exists()


# ---------------------------------------------------------------------------------------------
# Second factor


@pytest.mark.parametrize("who", ["coordinator", "admin"])
def test_it_makes_coordinators_and_admins_set_up_totp_first(client, people, who):
    sign_in(client, who)

    page = client.get(reverse("cohort:patient-list"))
    admin_page = client.get("/admin/")

    assert page.status_code == 302
    assert page["Location"] == f"{reverse('mfa-setup')}?next=/patients/"
    assert redirect_path(admin_page) == reverse("mfa-setup")


def test_it_confirms_a_new_totp_device_with_a_valid_code(client, people):
    sign_in(client, "coordinator")

    page = client.get(reverse("mfa-setup"), {"next": "/patients/"})
    assert not TOTPDevice.objects.exists()  # nothing is written on GET
    secret = page.context["secret"]
    key = client.session[accounts.SETUP_KEY_SESSION]
    device = TOTPDevice(key=key)
    response = client.post(reverse("mfa-setup"), {"token": token(device), "next": "/patients/"})

    html = page.content.decode()
    assert page.status_code == 200
    assert "<svg" in html and "</svg>" in html
    assert secret in html and len(secret) == 32
    assert response.status_code == 302
    assert response["Location"] == "/patients/"
    saved = TOTPDevice.objects.get(user=people["coordinator"])
    assert saved.confirmed and saved.key == key
    assert client.session[DEVICE_ID_SESSION_KEY] == saved.persistent_id
    assert accounts.SETUP_KEY_SESSION not in client.session
    assert client.get("/patients/").status_code == 200


def test_it_refuses_a_wrong_code_at_set_up(client, people):
    sign_in(client, "admin")
    client.get(reverse("mfa-setup"))

    response = client.post(reverse("mfa-setup"), {"token": "000000"})
    not_digits = client.post(reverse("mfa-setup"), {"token": "abc"})

    assert response.status_code == 200
    assert "That code is not valid" in response.content.decode()
    assert "Enter the 6-digit code" in not_digits.content.decode()
    assert not TOTPDevice.objects.exists()
    assert client.get("/admin/").status_code == 302


def test_it_asks_for_a_code_after_the_password_when_a_device_exists(client, people):
    device = confirmed_device(people["coordinator"])
    sign_in(client, "coordinator")

    before = client.get("/patients/")
    set_up_again = client.get(reverse("mfa-setup"))
    verify = client.get(before["Location"])
    response = client.post(reverse("mfa-verify"), {"token": token(device), "next": "/patients/"})

    assert before["Location"] == f"{reverse('mfa-verify')}?next=/patients/"
    assert redirect_path(set_up_again) == reverse("mfa-verify")  # no second device around the code
    assert verify.status_code == 200
    assert response.status_code == 302
    assert response["Location"] == "/patients/"
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert client.get("/patients/").status_code == 200


def test_it_refuses_a_wrong_code_at_verification(client, people):
    confirmed_device(people["admin"])
    sign_in(client, "admin")

    response = client.post(reverse("mfa-verify"), {"token": "000000"})

    assert response.status_code == 200
    assert "That code is not valid" in response.content.decode()
    assert DEVICE_ID_SESSION_KEY not in client.session
    assert redirect_path(client.get("/admin/")) == reverse("mfa-verify")


def test_it_lets_a_verified_admin_into_the_admin(client, people):
    login_as(client, people["admin"])

    assert client.get("/admin/").status_code == 200


def test_it_lets_a_nurse_turn_totp_on(client, people):
    sign_in(client, "nurse_a")
    status = client.get(reverse("mfa"))
    client.get(reverse("mfa-setup"))
    key = client.session[accounts.SETUP_KEY_SESSION]
    client.post(reverse("mfa-setup"), {"token": token(TOTPDevice(key=key))})

    client.post(reverse("logout"))
    sign_in(client, "nurse_a")
    next_time = client.get("/patients/")

    assert "Turn on" in status.content.decode()
    assert TOTPDevice.objects.get(user=people["nurse_a"]).confirmed
    assert redirect_path(next_time) == reverse("mfa-verify")


def test_it_lets_a_verified_nurse_turn_totp_off(client, people):
    device = confirmed_device(people["nurse_a"])
    sign_in(client, "nurse_a")
    client.post(reverse("mfa-verify"), {"token": token(device)})

    get = client.get(reverse("mfa-disable"))
    response = client.post(reverse("mfa-disable"))

    assert get.status_code == 405
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=people["nurse_a"]).exists()


def test_it_keeps_totp_on_for_a_coordinator(client, people):
    login_as(client, people["coordinator"])

    client.post(reverse("mfa-disable"))

    assert TOTPDevice.objects.filter(user=people["coordinator"]).exists()


def test_it_decides_who_needs_a_second_factor(people):
    assert not accounts.mfa_required_for(people["nurse_a"])
    assert accounts.mfa_required_for(people["coordinator"])
    assert accounts.mfa_required_for(people["admin"])


# ---------------------------------------------------------------------------------------------
# Sessions


def test_it_logs_out_on_post_only(client, people):
    sign_in(client, "nurse_a")
    session_key = client.session.session_key

    get = client.get(reverse("logout"))
    post = client.post(reverse("logout"))

    assert get.status_code == 405
    assert post.status_code == 302
    assert post["Location"] == reverse("login")
    assert not Session.objects.filter(session_key=session_key).exists()


def test_it_keeps_the_session_alive_on_post_only(client, people):
    sign_in(client, "nurse_a")

    get = client.get(reverse("session-keepalive"))
    post = client.post(reverse("session-keepalive"))

    assert get.status_code == 405
    assert post.status_code == 200
    assert post.json() == {"expires_in": settings.SESSION_COOKIE_AGE}
    assert post.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == settings.SESSION_COOKIE_AGE


def test_it_ends_the_session_of_a_deactivated_account(client, people):
    sign_in(client, "nurse_a")
    session_key = client.session.session_key
    people["nurse_a"].is_active = False
    people["nurse_a"].save(update_fields=["is_active"])

    response = client.get("/patients/")

    assert response.status_code == 302
    assert redirect_path(response) == reverse("login")
    assert not Session.objects.filter(session_key=session_key).exists()
    assert sign_in(client, "nurse_a").status_code == 200  # and cannot sign in again


def test_it_expires_sessions_after_inactivity(client, people):
    response = sign_in(client, "nurse_a")
    later = client.get("/patients/")

    expected_age = int(os.environ.get("SESSION_COOKIE_AGE", 30 * 60))
    assert expected_age == settings.SESSION_COOKIE_AGE
    assert settings.SESSION_SAVE_EVERY_REQUEST
    assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == settings.SESSION_COOKIE_AGE
    assert later.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == settings.SESSION_COOKIE_AGE  # renewed
    assert client.session.get_expiry_age() == settings.SESSION_COOKIE_AGE


def test_each_request_renews_the_stored_session_and_an_idle_one_has_ended(client, people):
    """The stored expiry moves with every request (cohort/sessions.py's renewal), and a session
    idle past it is over: the next page asks to sign in, with its data and user gone."""
    sign_in(client, "nurse_a")
    session_key = client.session.session_key
    soon = timezone.now() + dt.timedelta(seconds=60)
    Session.objects.filter(session_key=session_key).update(expire_date=soon)

    assert client.get("/patients/").status_code == 200
    renewed = Session.objects.get(session_key=session_key).expire_date
    assert renewed >= timezone.now() + dt.timedelta(seconds=settings.SESSION_COOKIE_AGE - 60)

    Session.objects.filter(session_key=session_key).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    response = client.get("/patients/")
    assert response.status_code == 302
    assert redirect_path(response) == reverse("login")
    assert SESSION_KEY not in client.session


def test_it_gives_the_inactivity_warning_the_session_age(people, settings):
    settings.SESSION_COOKIE_AGE = 600
    client = Client()
    client.force_login(people["nurse_a"])
    request = client.get("/patients/").wsgi_request

    html = Template('{% include "accounts/_session.html" %}').render(
        Context({"request": request, "user": people["nurse_a"], "csrf_token": "t"})
    )

    assert 'data-session-age="600"' in html
    assert f'data-keepalive-url="{reverse("session-keepalive")}"' in html
    assert "js/session.js" in html


def test_it_has_password_validators():
    with pytest.raises(ValidationError):
        validate_password("password")
    with pytest.raises(ValidationError):
        validate_password("12345678901")
    with pytest.raises(ValidationError):
        validate_password("short1!")
    validate_password("lantern-ward-quietly-91")


# ---------------------------------------------------------------------------------------------
# Language and dates


def test_it_shows_the_login_page_in_the_chosen_language(client):
    response = client.post(reverse("language-set"), {"language": "nl", "next": reverse("login")})
    page = client.get(reverse("login"))

    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "nl"
    assert '<html lang="nl">' in page.content.decode()
    assert "Inloggen" in page.content.decode()


def test_it_shows_the_app_in_dutch_for_a_user_who_picks_nederlands(client, people):
    sign_in(client, "nurse_a")

    response = client.post(reverse("language-set"), {"language": "nl", "next": "/patients/"})
    page = client.get("/patients/")

    assert response["Location"] == "/patients/"
    assert "Patiënten" in page.content.decode()
    assert "Uitloggen" in page.content.decode()
    if accounts.UserProfile is not None:
        assert accounts.language_of(people["nurse_a"].__class__.objects.get(pk=people["nurse_a"].pk)) == "nl"


def test_it_remembers_the_language_on_another_browser(people):
    first, second = Client(), Client()
    sign_in(first, "nurse_a")
    first.post(reverse("language-set"), {"language": "nl", "next": "/patients/"})

    response = sign_in(second, "nurse_a")

    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "nl"


def test_it_refuses_to_change_language_on_get(client):
    assert client.get(reverse("language-set"), {"language": "nl"}).status_code == 405


@pytest.mark.parametrize(("language", "expected"), [("nl", "25 nov 2026"), ("en", "25 Nov 2026")])
def test_it_shows_dates_in_the_users_locale(language, expected):
    with translation.override(language):
        html = Template("{{ date }}").render(Context({"date": dt.date(2026, 11, 25)}))

    assert html == expected


def test_a_role_given_or_taken_and_a_new_device_apply_at_the_next_request(client, people):
    """cohort.accounts.UserBackend reads the memberships and the device with the user on every
    request: nothing of them is kept between requests."""
    from cohort.choices import Role
    from cohort.models import Membership

    sign_in(client, "nurse_a")
    assert client.get("/patients/").status_code == 200
    Membership.objects.filter(user=people["nurse_a"]).delete()
    assert client.get(reverse("cohort:patient-enrol")).status_code == 403  # no longer a nurse anywhere

    Membership.objects.create(user=people["nurse_a"], centre=people["centre_b"], role=Role.COORDINATOR)
    response = client.get("/patients/")  # a coordinator now: the second factor first
    assert response.status_code == 302 and redirect_path(response) == reverse("mfa-setup")

    TOTPDevice.objects.create(user=people["nurse_a"], name="phone", confirmed=True)
    response = client.get("/patients/")  # a device now: its code first
    assert response.status_code == 302 and redirect_path(response) == reverse("mfa-verify")
