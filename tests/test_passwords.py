"""Accounts by e-mail (SPEC section 2): invitations, password change and reset, the access review.

Every message goes through a real SMTP server (aiosmtpd, on a free loopback port) by Django's SMTP
backend, as in production; the test reads the link out of the message it received.
"""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import re
import socket
from io import StringIO

import pytest
import time_machine
from aiosmtpd.controller import Controller
from axes.models import AccessAttempt
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from cohort.choices import Role
from cohort.models import Membership, UserProfile
from tests.base import login_as, personae

PASSWORD = "correct-horse-battery"
NEW_PASSWORD = "purple-lantern-harbour-92"
pytestmark = pytest.mark.django_db


class Inbox:
    """The SMTP server's handler: keeps every message it accepts."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted for delivery"

    def only(self) -> email.message.EmailMessage:
        assert len(self.messages) == 1, [m["Subject"] for m in self.messages]
        return self.messages[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def inbox(settings):
    """A real SMTP server for the test; Django's SMTP backend pointed at it."""
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = controller.hostname, controller.port
    settings.EMAIL_USE_TLS, settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = False, "", ""
    yield handler
    controller.stop()


@pytest.fixture
def people():
    people = personae()
    for persona in ("nurse_a", "coordinator", "admin"):
        people[persona].email = f"{persona}@example.org"
        people[persona].save(update_fields=["email"])
    return people


def body(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def link_in(message) -> str:
    """The path of the one-time link in the message."""
    match = re.search(r"https?://[^/\s]+(/accounts/\S+/)", body(message))
    assert match, body(message)
    return match.group(1)


def token(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def invite(client: Client, **overrides):
    data = {
        "username": "nurse_new",
        "email": "new.nurse@example.org",
        "language": "en",
        "role": Role.NURSE,
    } | overrides
    return client.post(reverse("admin:auth_user_invite"), data)


def choose_password(client: Client, link: str, password: str = NEW_PASSWORD):
    """Open the link (Django moves the token into the session) and send the new password twice."""
    opened = client.get(link)
    assert opened.status_code == 302, opened.content.decode()
    return client.post(opened["Location"], {"new_password1": password, "new_password2": password})


# ---------------------------------------------------------------------------------------------
# Invitation


def test_it_invites_a_nurse_who_chooses_a_password_and_is_signed_in(inbox, people):
    admin = login_as(Client(), people["admin"])

    response = invite(admin, centre=people["centre_a"].pk)

    user = User.objects.get(username="nurse_new")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:auth_user_change", args=[user.pk])
    assert not user.has_usable_password()
    assert user.email == "new.nurse@example.org" and not user.is_staff
    assert list(user.memberships.values_list("centre__code", "role")) == [("AMC", "nurse")]
    message = inbox.only()
    assert message["To"] == "new.nurse@example.org"
    assert "nurse_new" in body(message) and "3 days" in body(message)

    newcomer = Client()
    done = choose_password(newcomer, link_in(message))

    assert done.status_code == 302 and done["Location"] == reverse("cohort:patient-list")
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert newcomer.get(reverse("cohort:patient-list")).status_code == 200


def test_it_takes_an_invited_coordinator_to_the_totp_set_up(inbox, people):
    admin = login_as(Client(), people["admin"])
    invite(admin, username="coord_new", email="coord@example.org", role=Role.COORDINATOR, centre=people["centre_b"].pk)

    newcomer = Client()
    done = choose_password(newcomer, link_in(inbox.only()))
    page = newcomer.get(done["Location"])

    assert page.status_code == 302
    assert page["Location"].startswith(reverse("mfa-setup"))


def test_it_refuses_a_used_invitation_link(inbox, people):
    invite(login_as(Client(), people["admin"]), centre=people["centre_a"].pk)
    link = link_in(inbox.only())
    choose_password(Client(), link)

    again = Client().get(link, follow=True)

    assert "This link no longer works" in again.content.decode()
    assert "new_password1" not in again.content.decode()


def test_it_refuses_an_expired_invitation_link(inbox, people):
    invite(login_as(Client(), people["admin"]), centre=people["centre_a"].pk)
    link = link_in(inbox.only())

    with time_machine.travel(timezone.now() + dt.timedelta(days=4)):
        late = Client().get(link, follow=True)

    assert "This link no longer works" in late.content.decode()
    assert not User.objects.get(username="nurse_new").has_usable_password()


def test_a_new_invitation_ends_the_old_link(inbox, people):
    admin = login_as(Client(), people["admin"])
    invite(admin, centre=people["centre_a"].pk)
    first = link_in(inbox.only())
    user = User.objects.get(username="nurse_new")

    admin.post(
        reverse("admin:auth_user_changelist"),
        {"action": "send_invitation", "_selected_action": [user.pk, people["nurse_a"].pk]},
    )

    second = link_in(inbox.messages[-1])
    assert len(inbox.messages) == 2  # nurse A has a password: she resets it herself
    assert "This link no longer works" in Client().get(first, follow=True).content.decode()
    assert choose_password(Client(), second).status_code == 302


def test_it_writes_the_invitation_in_the_users_language(inbox, people):
    invite(login_as(Client(), people["admin"]), language="nl", centre=people["centre_a"].pk)

    message = inbox.only()

    assert message["Subject"] == "Uw account voor de UST-herinductie eCRF"
    assert "Kies uw wachtwoord met deze link" in body(message)
    assert UserProfile.objects.get(user__username="nurse_new").language == "nl"


def test_it_refuses_a_taken_user_name_or_address(inbox, people):
    admin = login_as(Client(), people["admin"])

    taken_name = invite(admin, username="Nurse_A", centre=people["centre_a"].pk)
    taken_address = invite(admin, email="NURSE_A@example.org", centre=people["centre_a"].pk)

    assert "already exists" in taken_name.content.decode()
    assert "already exists" in taken_address.content.decode()
    assert inbox.messages == []
    assert not User.objects.filter(username="nurse_new").exists()


def test_it_makes_no_account_when_the_mail_cannot_be_sent(people, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", free_port(), False

    response = invite(login_as(Client(), people["admin"]), centre=people["centre_a"].pk)

    assert response.status_code == 200
    assert "could not be sent" in response.content.decode()
    assert not User.objects.filter(username="nurse_new").exists()
    assert not Membership.objects.filter(user__username="nurse_new").exists()


def test_only_admins_invite(people):
    for persona in ("nurse_a", "coordinator"):
        response = login_as(Client(), people[persona]).get(reverse("admin:auth_user_invite"))
        assert response.status_code == 302 and "/login/" in response["Location"], persona  # the admin's, then ours


# ---------------------------------------------------------------------------------------------
# Reset


def test_it_answers_the_same_for_a_known_and_an_unknown_address(inbox, people):
    known = Client().post(reverse("password-reset"), {"email": "nurse_a@example.org"}, follow=True)
    unknown = Client().post(reverse("password-reset"), {"email": "nobody@example.org"}, follow=True)

    assert known.redirect_chain == unknown.redirect_chain == [(reverse("password-reset-done"), 302)]
    assert known.content == unknown.content
    assert inbox.only()["To"] == "nurse_a@example.org"


def test_a_reset_sets_the_password_but_never_signs_in_and_totp_is_still_asked(inbox, people):
    coordinator = people["coordinator"]
    device = TOTPDevice.objects.create(user=coordinator, name="phone", confirmed=True)
    Client().post(reverse("password-reset"), {"email": "coordinator@example.org"})

    browser = Client()
    done = choose_password(browser, link_in(inbox.only()))

    assert done["Location"] == reverse("password-reset-complete")
    assert SESSION_KEY not in browser.session
    notice = inbox.messages[-1]
    assert notice["Subject"] == "Your password for the UST re-induction eCRF was changed"
    assert notice["To"] == "coordinator@example.org" and len(inbox.messages) == 2
    coordinator.refresh_from_db()
    assert coordinator.check_password(NEW_PASSWORD)
    signed = browser.post(reverse("login"), {"username": "coordinator", "password": NEW_PASSWORD})
    page = browser.get(reverse("cohort:patient-list"))
    assert signed.status_code == 302
    assert page["Location"].startswith(reverse("mfa-verify"))
    verified = browser.post(reverse("mfa-verify"), {"token": token(device), "next": "/patients/"})
    assert verified["Location"] == "/patients/"


def test_it_refuses_a_used_or_expired_reset_link(inbox, people):
    Client().post(reverse("password-reset"), {"email": "nurse_a@example.org"})
    Client().post(reverse("password-reset"), {"email": "nurse_a@example.org"})
    used, unused = (link_in(message) for message in inbox.messages)
    choose_password(Client(), used)

    again = Client().get(used, follow=True)
    Client().post(reverse("password-reset"), {"email": "nurse_a@example.org"})
    with time_machine.travel(timezone.now() + dt.timedelta(hours=26)):
        late = Client().get(link_in(inbox.messages[-1]), follow=True)

    assert "This link no longer works" in again.content.decode()
    # The other link of the same day stopped working too: the password it was made for changed.
    assert "This link no longer works" in Client().get(unused, follow=True).content.decode()
    assert "This link no longer works" in late.content.decode()


def test_an_invitation_link_is_no_reset_link(inbox, people):
    invite(login_as(Client(), people["admin"]), centre=people["centre_a"].pk)
    link = link_in(inbox.only()).replace("/invitation/", "/password/reset/")

    assert "This link no longer works" in Client().get(link, follow=True).content.decode()


def test_a_reset_leaves_the_lockout_in_place(inbox, people):
    for _ in range(5):
        Client().post(reverse("login"), {"username": "nurse_a", "password": "wrong"})
    Client().post(reverse("password-reset"), {"email": "nurse_a@example.org"})
    choose_password(Client(), link_in(inbox.only()))

    response = Client().post(reverse("login"), {"username": "nurse_a", "password": NEW_PASSWORD})

    assert response.status_code == 429
    assert AccessAttempt.objects.filter(username="nurse_a").exists()


def test_it_writes_the_reset_mail_in_the_users_language(inbox, people):
    UserProfile.objects.create(user=people["nurse_a"], language="nl")

    Client().post(reverse("password-reset"), {"email": "nurse_a@example.org"})

    assert "Kies een nieuw wachtwoord" in inbox.only()["Subject"]


# ---------------------------------------------------------------------------------------------
# Change


def test_a_signed_in_user_changes_her_password(people):
    nurse = Client()
    nurse.force_login(people["nurse_a"])
    page = nurse.get(reverse("password-change"))

    wrong = nurse.post(
        reverse("password-change"),
        {"old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    changed = nurse.post(
        reverse("password-change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert page.status_code == 200 and wrong.status_code == 200
    assert changed.status_code == 302
    people["nurse_a"].refresh_from_db()
    assert people["nurse_a"].check_password(NEW_PASSWORD)
    assert nurse.get(reverse("cohort:patient-list")).status_code == 200  # still signed in
    assert "Change password" in nurse.get(reverse("cohort:patient-list")).content.decode()


def test_a_password_change_keeps_a_coordinator_verified(people):
    coordinator = login_as(Client(), people["coordinator"])

    coordinator.post(
        reverse("password-change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert coordinator.get(reverse("cohort:patient-list")).status_code == 200


# ---------------------------------------------------------------------------------------------
# Access review


def test_the_access_review_exports_every_account(people):
    TOTPDevice.objects.create(user=people["coordinator"], name="phone", confirmed=True)
    admin = login_as(Client(), people["admin"])  # gives the admin a device too

    response = admin.get(reverse("admin:auth_user_access_review"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith('attachment; filename="access-review-')
    rows = list(csv.DictReader(StringIO(response.content.decode())))
    assert list(rows[0]) == [
        "User name",
        "Name",
        "E-mail address",
        "Active",
        "Roles and centres",
        "Staff (admin site)",
        "Superuser",
        "Password",
        "Second factor required",
        "Second factor set up",
        "Last login",
        "Account created",
    ]
    by_name = {row["User name"]: row for row in rows}
    assert set(by_name) == {"admin", "coordinator", "nurse_a", "nurse_b"}
    assert by_name["coordinator"]["Roles and centres"] == "AMC: coordinator; UMCU: coordinator"
    assert by_name["coordinator"]["Second factor required"] == "yes"
    assert by_name["coordinator"]["Second factor set up"] == "yes"
    assert by_name["nurse_a"]["Roles and centres"] == "AMC: research nurse"
    assert (by_name["nurse_a"]["Second factor required"], by_name["nurse_a"]["Second factor set up"]) == ("no", "no")
    assert by_name["nurse_a"]["Last login"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", by_name["admin"]["Last login"])


def test_the_access_review_reads_dutch(people):
    admin = login_as(Client(), people["admin"])
    UserProfile.objects.create(user=people["admin"], language="nl")

    response = admin.get(reverse("admin:auth_user_access_review"), headers={"accept-language": "nl"})

    header = response.content.decode().splitlines()[0]
    assert header.startswith("Gebruikersnaam,Naam,E-mailadres,Actief,Rollen en centra")


def test_the_user_list_shows_the_review_columns_in_few_queries(people, django_assert_max_num_queries):
    for number in range(20):
        user = User.objects.create_user(f"nurse_{number}", password=PASSWORD)
        Membership.objects.create(user=user, centre=people["centre_b"], role=Role.NURSE)
    admin = login_as(Client(), people["admin"])

    with django_assert_max_num_queries(15):
        page = admin.get(reverse("admin:auth_user_changelist"))
    with django_assert_max_num_queries(8):
        admin.get(reverse("admin:auth_user_access_review"))

    html = page.content.decode()
    assert page.status_code == 200
    for text in ("Roles and centres", "TOTP on", "UMCU: research nurse", "Invite a user"):
        assert text in html


def test_it_explains_a_refused_password_in_dutch(inbox, people):
    Client().post(reverse("password-reset"), {"email": "nurse_a@example.org"})
    browser = Client(headers={"accept-language": "nl"})
    opened = browser.get(link_in(inbox.only()))

    response = browser.post(opened["Location"], {"new_password1": "kort", "new_password2": "kort"})

    html = response.content.decode()
    assert "Dit wachtwoord is te kort. Het moet minstens 10 tekens lang zijn." in html
    assert "too short" not in html


def test_an_invitation_never_skips_a_device_the_account_already_has(inbox, people):
    admin = login_as(Client(), people["admin"])
    invite(admin, username="coord_new", email="coord@example.org", role=Role.COORDINATOR, centre=people["centre_a"].pk)
    TOTPDevice.objects.create(user=User.objects.get(username="coord_new"), name="phone", confirmed=True)

    newcomer = Client()
    choose_password(newcomer, link_in(inbox.only()))

    assert newcomer.get(reverse("cohort:patient-list"))["Location"].startswith(reverse("mfa-verify"))


def test_the_access_review_keeps_a_formula_as_text(people):
    people["nurse_b"].first_name = "=HYPERLINK(1)"
    people["nurse_b"].save(update_fields=["first_name"])

    response = login_as(Client(), people["admin"]).get(reverse("admin:auth_user_access_review"))

    rows = {row["User name"]: row for row in csv.DictReader(StringIO(response.content.decode()))}
    assert rows["nurse_b"]["Name"] == "'=HYPERLINK(1)"


def test_a_password_change_is_announced_by_mail(inbox, people):
    coordinator = login_as(Client(), people["coordinator"])
    UserProfile.objects.create(user=people["coordinator"], language="nl")

    coordinator.post(
        reverse("password-change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    notice = inbox.only()
    assert notice["To"] == "coordinator@example.org"
    assert notice["Subject"] == "Uw wachtwoord voor de UST-herinductie eCRF is gewijzigd"
    assert "iemand anders kent misschien uw wachtwoord" in body(notice)


def test_a_notice_that_cannot_be_sent_does_not_undo_the_change(people, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", free_port(), False
    coordinator = login_as(Client(), people["coordinator"])

    response = coordinator.post(
        reverse("password-change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    people["coordinator"].refresh_from_db()
    assert people["coordinator"].check_password(NEW_PASSWORD)
