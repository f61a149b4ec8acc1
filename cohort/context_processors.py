"""What every page's template may need to know about the install."""

from django.conf import settings


def site(request) -> dict:
    return {"demo_data": settings.DEMO_DATA}
