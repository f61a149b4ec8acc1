"""The navbar shows each role only the pages it may use: no item leads to a refusal
(cohort.access.menu_for_user). Each shown item is followed and answers 200."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, Permission

from cohort.choices import Role
from tests.base import login_as, make_user

ITEMS = {
    "Patients": "/patients/",
    "Outcomes": "/outcomes/",
    "Reports": "/reports/",
    "Queries": "/queries/",
    "Import": "/imports/",
    "Locks": "/locks/",
    "Administration": "/admin/",
}


def navbar_items(client) -> set[str]:
    html = client.get("/patients/").content.decode()
    nav = html[html.index('<ul class="navbar-nav me-auto">') : html.index("</ul>", html.index("navbar-nav me-auto"))]
    return set(re.findall(r'class="nav-link" href="[^"]*">([^<]+)</a>', nav))


def users(people) -> dict:
    centre_a = people["centre_a"]
    investigator = make_user("investigator", centre=centre_a, role=Role.INVESTIGATOR)
    # The demo's coordinator is staff without permissions: Django's admin would show it nothing.
    staff_coordinator = make_user("staff_coordinator", centre=centre_a, role=Role.COORDINATOR, is_staff=True)
    auditor = make_user("auditor", centre=centre_a, role=Role.COORDINATOR, is_staff=True)
    auditor.user_permissions.add(Permission.objects.get(codename="view_membership"))
    monitors = Group.objects.create(name="monitors")
    monitors.permissions.add(Permission.objects.get(codename="view_membership"))
    grouped = make_user("grouped", centre=centre_a, role=Role.COORDINATOR, is_staff=True)
    grouped.groups.add(monitors)
    return {
        "nurse": (people["nurse_a"], {"Patients", "Outcomes", "Reports", "Queries", "Import"}),
        "investigator": (investigator, {"Patients", "Outcomes", "Reports", "Queries"}),
        "coordinator": (people["coordinator"], {"Patients", "Outcomes", "Reports", "Queries", "Import", "Locks"}),
        "staff coordinator": (staff_coordinator, {"Patients", "Outcomes", "Reports", "Queries", "Import", "Locks"}),
        "coordinator with an admin permission": (auditor, set(ITEMS)),
        "coordinator with a group's admin permission": (grouped, set(ITEMS)),
        "admin": (people["admin"], {"Patients", "Outcomes", "Reports", "Queries", "Administration"}),
    }


@pytest.mark.django_db
def test_each_role_sees_only_the_menu_items_it_may_use(client, people):
    for role, (user, expected) in users(people).items():
        client.logout()
        login_as(client, user)
        assert navbar_items(client) == expected, role
        for item in expected:
            response = client.get(ITEMS[item])
            assert response.status_code == 200, (role, item)
            assert b"have permission to view or edit anything" not in response.content, (role, item)


@pytest.mark.django_db
def test_the_page_frame_follows_the_language_and_keeps_nothing_of_the_request(client, people):
    """The navbar, the user menu and the footer are rendered once per process for each language and
    menu ({% kept %}, templates/base.html): a page in Dutch after one in English is in Dutch, and the
    next in English again; the user's name and the CSRF token stay the request's own."""
    from django.conf import settings

    words = {
        "en": ("Patients", "Change password", "Do not enter names, hospital numbers", "Stay signed in"),
        "nl": ("Patiënten", "Wachtwoord wijzigen", "Vul geen namen, ziekenhuisnummers", "Ingelogd blijven"),
    }
    for user, language in ((people["nurse_a"], "en"), (people["nurse_a"], "nl"), (people["nurse_b"], "en")):
        client.logout()
        login_as(client, user)
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
        html = client.get("/patients/").content.decode()
        other = words["nl" if language == "en" else "en"]
        for word in words[language]:
            assert word in html, (language, word)
        assert not any(word in html for word in other), language
        assert f'data-bs-toggle="dropdown" aria-expanded="false">{user.username}</a>' in html
        tokens = set(re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', html))
        assert len(tokens) == 1 and client.cookies[settings.CSRF_COOKIE_NAME].value, tokens
