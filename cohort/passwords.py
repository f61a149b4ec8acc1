"""Passwords: the invitation of a new account, changing one's password and resetting a forgotten one.

Django's own views and tokens do the work (PasswordResetTokenGenerator, SetPasswordForm and the
password views); what is ours:

- An invitation is a set-password link with its own token salt and lifetime (INVITATION_TIMEOUT).
  Like a reset link it works once: the token is a hash of the password, which setting one changes.
- A reset link sets a password and nothing more: it never signs in, so the next sign-in still asks
  for the second factor (cohort.middleware). Django's reset form answers the same for any address.
- Accepting an invitation signs the new user in; the middleware then takes a role that must use a
  second factor straight to its set-up.
- A changed or reset password is announced to the account's address, so an unexpected change shows.
- Every message is written in the recipient's language (their saved preference), not the sender's.
"""

from __future__ import annotations

import logging
import smtplib

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.models import User
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.http import HttpRequest
from django.template import loader
from django.urls import reverse, reverse_lazy
from django.utils import translation
from django.utils.crypto import constant_time_compare
from django.utils.encoding import force_bytes
from django.utils.http import base36_to_int, urlsafe_base64_encode
from django.utils.translation import gettext_lazy as _

from cohort.accounts import language_of
from cohort.choices import Role
from cohort.models import Membership, UserProfile

logger = logging.getLogger(__name__)
SITE_NAME = _("UST re-induction eCRF")  # as the navbar names it, in the reader's language


class InvitationTokenGenerator(PasswordResetTokenGenerator):
    """A reset token under another salt (a reset link cannot be used as an invitation, nor the
    reverse) that lasts INVITATION_TIMEOUT instead of PASSWORD_RESET_TIMEOUT."""

    key_salt = "cohort.passwords.InvitationTokenGenerator"

    def check_token(self, user, token) -> bool:
        if not (user and token):
            return False
        try:
            timestamp = base36_to_int(token.split("-")[0])
        except ValueError:
            return False
        if not any(
            constant_time_compare(self._make_token_with_timestamp(user, timestamp, secret), token)
            for secret in [self.secret, *self.secret_fallbacks]
        ):
            return False
        return self._num_seconds(self._now()) - timestamp <= settings.INVITATION_TIMEOUT


invitation_tokens = InvitationTokenGenerator()


def send_account_mail(user: User, template: str, context: dict) -> None:
    """Send `accounts/email/<template>_subject.txt` and `_body.txt` to the user, in their language."""
    with translation.override(language_of(user) or translation.get_language()):
        subject = "".join(loader.render_to_string(f"accounts/email/{template}_subject.txt", context).splitlines())
        body = loader.render_to_string(f"accounts/email/{template}_body.txt", context)
    EmailMultiAlternatives(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email]).send()


def link_context(request: HttpRequest, user: User, url_name: str, token: str) -> dict:
    """What a message carrying a one-time link needs: the absolute link, the site, the user."""
    path = reverse(url_name, kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": token})
    return {"user": user, "link": request.build_absolute_uri(path), "site_name": SITE_NAME}


def invitation_send(*, user: User, request: HttpRequest) -> None:
    """E-mail `user` a new set-password link; any earlier invitation link stops working."""
    user.set_unusable_password()  # a new random unusable hash: the old links' tokens no longer match
    user.save(update_fields=["password"])
    context = link_context(request, user, "invitation-accept", invitation_tokens.make_token(user))
    context["days"] = settings.INVITATION_TIMEOUT // (24 * 3600)
    context["invited_by"] = request.user
    send_account_mail(user, "invitation", context)


def password_changed_notice(user: User) -> None:
    """Tell the account's owner that its password changed, so a change they did not make is noticed.

    The change is done already: a message that cannot be sent is logged, not an error."""
    if not user.email:
        return
    try:
        send_account_mail(user, "password_changed", {"user": user, "site_name": SITE_NAME})
    except (smtplib.SMTPException, OSError):
        logger.warning("The password-changed notice to user %s could not be sent.", user.pk, exc_info=True)


class ResetForm(auth_forms.PasswordResetForm):
    """Django's reset form (the same answer for every address), its message in the user's language."""

    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email, **html):
        user = context["user"]
        context = context | link_context(self.request, user, "password-reset-confirm", context["token"])
        context["hours"] = settings.PASSWORD_RESET_TIMEOUT // 3600
        send_account_mail(user, "password_reset", context)

    def save(self, *, request, **kwargs):
        self.request = request
        return super().save(request=request, **kwargs)


class PasswordResetView(auth_views.PasswordResetView):
    form_class = ResetForm
    template_name = "accounts/password_reset.html"
    success_url = reverse_lazy("password-reset-done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Sets the new password and signs nobody in (post_reset_login stays False)."""

    template_name = "accounts/password_set.html"
    success_url = reverse_lazy("password-reset-complete")
    extra_context = {"purpose": "reset"}

    def form_valid(self, form):
        response = super().form_valid(form)
        password_changed_notice(form.user)
        return response


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


class InvitationAcceptView(auth_views.PasswordResetConfirmView):
    """The invitation's link: choose a password, then signed in (and on to the TOTP set-up if the
    role needs it: cohort.middleware sends a user without a device there)."""

    token_generator = invitation_tokens
    template_name = "accounts/password_set.html"
    post_reset_login = True
    post_reset_login_backend = "cohort.accounts.UserBackend"
    success_url = reverse_lazy(settings.LOGIN_REDIRECT_URL)
    extra_context = {"purpose": "invitation"}

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, _("Your password is set. Welcome to the study."))
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change (the current password, then the new one twice); other sessions of
    the account end, this one stays signed in and verified."""

    template_name = "accounts/password_change.html"
    success_url = reverse_lazy(settings.LOGIN_REDIRECT_URL)

    def form_valid(self, form):
        response = super().form_valid(form)
        password_changed_notice(form.user)
        messages.success(self.request, _("Your password has been changed."))
        return response


def account_invite(*, request: HttpRequest, username: str, email: str, language: str, centre, role: str) -> User:
    """A new account without a password, its role at a centre, and the invitation e-mail.

    Nothing is kept if the message cannot be sent. The admin role is the admin site's superuser (as
    the demo's admin): it manages accounts and centres there (SPEC section 2)."""
    is_admin = role == Role.ADMIN
    with transaction.atomic():
        user = User(username=username, email=email, is_staff=is_admin, is_superuser=is_admin)
        user.set_unusable_password()
        user.save()
        UserProfile.objects.create(user=user, language=language)
        Membership.objects.create(user=user, centre=centre, role=role)
        invitation_send(user=user, request=request)
    return user
