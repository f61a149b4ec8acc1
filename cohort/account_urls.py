"""Signing in and out, the second factor, language and session keep-alive (under /accounts/)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from cohort import accounts

urlpatterns = [
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("mfa/", accounts.mfa_status, name="mfa"),
    path("mfa/setup/", accounts.mfa_setup, name="mfa-setup"),
    path("mfa/verify/", accounts.mfa_verify, name="mfa-verify"),
    path("mfa/disable/", accounts.mfa_disable, name="mfa-disable"),
    path("language/", accounts.language_set, name="language-set"),
    path("session/keepalive/", accounts.session_keepalive, name="session-keepalive"),
]
