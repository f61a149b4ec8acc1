"""Account rules applied to every request (after authentication and django-otp's middleware).

- A session whose account has been deactivated (or deleted) since it signed in is ended.
- The admin sends anonymous visitors to our login page (throttled, followed by the second factor),
  not its own.
- A signed-in user who has a confirmed TOTP device, but has not entered a code in this session, can
  only reach the verification page; one who must use a second factor (`mfa_required_for`) and has
  no device can only reach the set-up page. Pages open to anonymous visitors stay open.
"""

from __future__ import annotations

from django.contrib.auth import SESSION_KEY
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from cohort.accounts import has_device, mfa_required_for

# Views a half-signed-in user may still reach (besides public ones), by URL name.
ALWAYS_ALLOWED = {"logout", "session-keepalive", "language-set"}
VERIFY_VIEWS = ALWAYS_ALLOWED | {"mfa-verify"}
SETUP_VIEWS = ALWAYS_ALLOWED | {"mfa-setup"}


class AccountMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if SESSION_KEY in request.session and not request.user.is_authenticated:
            # The backend no longer accepts the account (is_active is False, or it is gone).
            request.session.flush()
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        name = request.resolver_match.view_name
        user = request.user
        if name == "admin:login":
            return redirect_to_login(request.GET.get("next") or reverse("admin:index"))
        if request.resolver_match.app_name == "admin" and not user.is_authenticated:
            return redirect_to_login(request.get_full_path())  # not by way of the admin's login page
        if not user.is_authenticated or user.is_verified() or getattr(view_func, "login_required", True) is False:
            return None
        if has_device(user):
            return None if name in VERIFY_VIEWS else redirect_to_login(request.get_full_path(), "mfa-verify")
        if mfa_required_for(user):
            return None if name in SETUP_VIEWS else redirect_to_login(request.get_full_path(), "mfa-setup")
        return None
