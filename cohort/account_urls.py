"""Signing in and out, passwords (invitation, change, reset), the second factor, language and session
keep-alive (under /accounts/)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from cohort import accounts, passwords, token_views

urlpatterns = [
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/change/", passwords.PasswordChangeView.as_view(), name="password-change"),
    path("password/reset/", passwords.PasswordResetView.as_view(), name="password-reset"),
    path("password/reset/sent/", passwords.PasswordResetDoneView.as_view(), name="password-reset-done"),
    path(
        "password/reset/<uidb64>/<token>/",
        passwords.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path("password/reset/done/", passwords.PasswordResetCompleteView.as_view(), name="password-reset-complete"),
    path("invitation/<uidb64>/<token>/", passwords.InvitationAcceptView.as_view(), name="invitation-accept"),
    path("mfa/", accounts.mfa_status, name="mfa"),
    path("mfa/setup/", accounts.mfa_setup, name="mfa-setup"),
    path("mfa/verify/", accounts.mfa_verify, name="mfa-verify"),
    path("mfa/disable/", accounts.mfa_disable, name="mfa-disable"),
    path("language/", accounts.language_set, name="language-set"),
    path("api-tokens/", token_views.api_tokens, name="api-tokens"),
    path("api-tokens/<int:pk>/revoke/", token_views.api_token_revoke, name="api-token-revoke"),
    path("session/keepalive/", accounts.session_keepalive, name="session-keepalive"),
]
