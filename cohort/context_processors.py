"""What every page's template may need to know about the install and the user."""

from django.conf import settings
from django.utils.functional import SimpleLazyObject

from cohort import access


def site(request) -> dict:
    return {
        "demo_data": settings.DEMO_DATA,
        # Read only when a template asks (the navbar's coordinator links); the roles are read once
        # per request (cohort.access caches them on the user).
        "is_coordinator": SimpleLazyObject(lambda: access.is_coordinator(request.user)),
        # The navbar's items: only those the user may use (cohort.access.menu_for_user).
        "menu": SimpleLazyObject(lambda: access.menu_for_user(request.user)),
    }
