"""Signing in and out, the TOTP second factor, the language preference and the session keep-alive.

Who must use a second factor is decided by `mfa_required_for`; `cohort.middleware.AccountMiddleware`
enforces it on every request, the admin included. Login throttling is django-axes (settings AXES_*).
"""

from __future__ import annotations

import functools
from base64 import b32encode
from binascii import unhexlify
from collections.abc import Iterable

import django_otp
import qrcode
import qrcode.image.svg
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.decorators import login_not_required
from django.contrib.postgres.expressions import ArraySubquery
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST
from django.views.i18n import set_language
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice, default_key

from cohort import access
from cohort.choices import Role
from cohort.models import Membership, UserProfile

SETUP_KEY_SESSION = "mfa_setup_key"  # the secret being set up, kept in the session until confirmed


SECOND_FACTOR_ROLES = (Role.COORDINATOR, Role.ADMIN)


class UserBackend(ModelBackend):
    """Django's ModelBackend; the signed-in user of a request comes with what every request asks
    next: the memberships (`access.memberships`: roles, second-factor rule) and whether a confirmed
    TOTP device exists (`has_device`, cohort.middleware). One query instead of three, read afresh
    on every request, so a deactivated account or a changed role applies at the next request."""

    def get_user(self, user_id):
        found = _user_statement().run({access.USER_ID: user_id})
        user = found[0] if found else None
        if user is None or not self.user_can_authenticate(user):
            return None
        columns = (user.membership_centres, user.membership_roles, user.membership_active)
        user._ecrf_memberships = list(zip(*columns, strict=True))  # as access.memberships reads them
        return user


@functools.cache
def _user_statement() -> access.CompiledRows:
    """UserBackend's query, composed by the ORM once per process (the user's id a placeholder):
    composing its three array subqueries cost more CPU than running it, on every request."""
    memberships = Membership.objects.filter(user=OuterRef("pk")).order_by("pk")
    return access.CompiledRows.of(
        get_user_model()
        ._default_manager.annotate(
            membership_centres=ArraySubquery(memberships.values("centre_id")),
            membership_roles=ArraySubquery(memberships.values("role")),
            membership_active=ArraySubquery(memberships.values("centre__active")),
            confirmed_device=Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)),
        )
        .filter(pk=access.USER_ID)
    )


def has_device(user) -> bool:
    """Whether the user has a confirmed second-factor device (django_otp.user_has_device), from the
    request's user when UserBackend read it (TOTP is the one device kind installed)."""
    known = getattr(user, "confirmed_device", None)
    return django_otp.user_has_device(user) if known is None else known


def mfa_required_for(user, roles: Iterable[str] | None = None) -> bool:
    """Coordinators and admins (at any centre), staff and superusers must use a second factor.

    `roles`: the user's roles when the caller has read them already (the access review's list);
    otherwise they are the memberships cohort.access reads once per request (at any centre, active
    or not)."""
    if user.is_staff or user.is_superuser:
        return True
    if roles is None:
        roles = [role for _centre_id, role, _active in access.memberships(user)]
    return any(role in SECOND_FACTOR_ROLES for role in roles)


def language_of(user) -> str | None:
    profile = getattr(user, "profile", None)  # reverse one-to-one: None when there is no row
    return profile.language if profile is not None else None


def language_remember(user, code: str) -> None:
    UserProfile.objects.update_or_create(user=user, defaults={"language": code})


def set_language_cookie(response: HttpResponse, code: str) -> None:
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        code,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )


def next_url(request: HttpRequest) -> str:
    """Where to go after a step of signing in: the `next` parameter if it is ours, else the home page."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse(settings.LOGIN_REDIRECT_URL)


def qr_code_svg(text: str) -> SafeString:
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    return mark_safe(image.to_string(encoding="unicode"))  # markup made by qrcode; the text is only encoded


class TokenForm(forms.Form):
    token = forms.CharField(
        label=_("Code from your authenticator app"),
        max_length=10,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True, "size": 8}
        ),
    )

    def clean_token(self) -> str:
        token = self.cleaned_data["token"].replace(" ", "")
        if not token.isdigit() or len(token) != 6:
            raise forms.ValidationError(_("Enter the 6-digit code."))
        return token


def lockout_context() -> dict:
    return {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
    }


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer to a locked-out username (AXES_LOCKOUT_CALLABLE): the login page saying why."""
    return render(request, "registration/lockout.html", lockout_context(), status=settings.AXES_HTTP_RESPONSE_CODE)


class LoginView(auth_views.LoginView):
    """Django's login view (throttled by django-axes); it also applies the user's saved language."""

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | lockout_context()

    def form_valid(self, form):
        response = super().form_valid(form)
        code = language_of(form.get_user())
        if code:
            set_language_cookie(response, code)
        return response


@require_POST
def session_keepalive(request: HttpRequest) -> JsonResponse:
    """Renews the session (every request does, SESSION_SAVE_EVERY_REQUEST); called by static/js/session.js."""
    return JsonResponse({"expires_in": request.session.get_expiry_age()})


@login_not_required
@require_POST
def language_set(request: HttpRequest) -> HttpResponse:
    """Django's set_language (cookie), plus the signed-in user's saved preference."""
    response = set_language(request)
    code = request.POST.get("language", "")
    if request.user.is_authenticated and code in dict(settings.LANGUAGES):
        language_remember(request.user, code)
    return response


def mfa_status(request: HttpRequest) -> HttpResponse:
    context = {
        "device": TOTPDevice.objects.filter(user=request.user, confirmed=True).first(),
        "required": mfa_required_for(request.user),
    }
    return render(request, "accounts/mfa.html", context)


def mfa_setup(request: HttpRequest) -> HttpResponse:
    """Show a new secret (QR code and base32); a valid code from the app confirms it.

    Nothing is written until the code is confirmed: the secret waits in the session. Confirming
    replaces any earlier device (a new phone) and counts as this session's verification.
    """
    key = request.session.get(SETUP_KEY_SESSION) or default_key()
    request.session[SETUP_KEY_SESSION] = key
    device = TOTPDevice(user=request.user, name="Authenticator app", key=key, confirmed=True)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        totp = TOTP(unhexlify(key), device.step, device.t0, device.digits)
        if totp.verify(int(form.cleaned_data["token"]), tolerance=device.tolerance):
            device.last_t = totp.t()  # this code cannot be used a second time
            with transaction.atomic():
                TOTPDevice.objects.filter(user=request.user).delete()
                device.save()
            del request.session[SETUP_KEY_SESSION]
            request.session.cycle_key()
            django_otp.login(request, device)
            messages.success(request, _("Two-factor authentication is on."))
            return redirect(next_url(request))
        form.add_error("token", _("That code is not valid. Check the time on your phone and try the next code."))
    context = {
        "form": form,
        "qr_svg": qr_code_svg(device.config_url),
        "secret": b32encode(device.bin_key).decode(),
        "required": mfa_required_for(request.user),
        "next": next_url(request),
    }
    return render(request, "accounts/mfa_setup.html", context)


def mfa_verify(request: HttpRequest) -> HttpResponse:
    """The second step of signing in for a user with a confirmed device."""
    if request.user.is_verified():
        return redirect(next_url(request))
    device = TOTPDevice.objects.filter(user=request.user, confirmed=True).first()
    if device is None:
        return redirect("mfa-setup")
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        allowed, _details = device.verify_is_allowed()
        if allowed and device.verify_token(form.cleaned_data["token"]):
            request.session.cycle_key()
            django_otp.login(request, device)
            return redirect(next_url(request))
        if allowed:
            form.add_error("token", _("That code is not valid. Try the next code your app shows."))
        else:
            form.add_error("token", _("Too many wrong codes. Wait a minute before trying again."))
    return render(request, "accounts/mfa_verify.html", {"form": form, "next": next_url(request)})


@require_POST
def mfa_disable(request: HttpRequest) -> HttpResponse:
    """Turn the optional second factor off (nurses only; the others must keep it)."""
    if mfa_required_for(request.user):
        messages.error(request, _("Your role requires two-factor authentication; it cannot be turned off."))
    else:
        TOTPDevice.objects.filter(user=request.user).delete()
        messages.success(request, _("Two-factor authentication is off."))
    return redirect("mfa")
