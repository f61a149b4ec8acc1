"""Personal API tokens (SPEC section 11): made, checked, revoked; the API's authentication and its
rate limit per token.

A token is `ecrf_` and 40 random URL-safe characters. Only its SHA-256 is stored; a token is a
random secret of 240 bits, so a plain hash (no salt, no slow hash) is enough and lets a request
find its token by one indexed lookup. Expired, revoked and deactivated users' tokens answer 401.

Kept apart from cohort/api.py: DRF reads these classes from the settings while that module's
views are being defined.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, throttling

from cohort.models import ApiToken

TOKEN_PREFIX = "ecrf_"
# The visible start of a token: the prefix and 8 random characters.
VISIBLE = len(TOKEN_PREFIX) + 8
DEFAULT_DAYS = 90
MAX_DAYS = 365
# last_used_at is written at most this often per token: not one UPDATE per request.
LAST_USED_GRANULARITY = dt.timedelta(minutes=1)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_create(*, user: User, name: str, days: int = DEFAULT_DAYS) -> tuple[ApiToken, str]:
    """A new token for the user, valid `days` days; returns the row and the token, which is not
    stored and cannot be shown again."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(30)
    row = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=token[:VISIBLE],
        digest=digest(token),
        expires_at=timezone.now() + dt.timedelta(days=days),
    )
    return row, token


def token_revoke(token: ApiToken) -> bool:
    """Revoke the token now; False if it already was."""
    return bool(ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()))


class TokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token <token>`."""

    keyword = "Token"

    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].decode("latin-1").lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(_("Give the token after 'Token ', without spaces."))
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        row = ApiToken.objects.select_related("user").filter(digest=digest(token)).first()
        now = timezone.now()
        # One answer for every refusal: a guesser learns nothing about which tokens exist.
        if row is None or not row.is_usable(now) or not row.user.is_active:
            raise exceptions.AuthenticationFailed(_("Invalid, expired or revoked token."))
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY:
            ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        return row.user, row

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (with WWW-Authenticate) rather than 403 to a request without a token.
        return self.keyword


class TokenRateThrottle(throttling.SimpleRateThrottle):
    """Requests per token (settings.API_RATE, e.g. "120/min"), counted in the project's cache; over
    the limit: 429 with Retry-After. The rate is read per request, not once at import."""

    scope = "api_token"

    def get_rate(self) -> str:
        return settings.API_RATE

    def get_cache_key(self, request, view) -> str | None:
        if not isinstance(request.auth, ApiToken):
            return None  # the public schema and docs pages
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


class TokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes TokenAuthentication (drf-spectacular finds it by target)."""

    target_class = "cohort.api_auth.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'A personal token with the prefix "Token": `Authorization: Token ecrf_...`',
        }
