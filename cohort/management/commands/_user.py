"""The account a command acts as, for the audit trail."""

from django.contrib.auth.models import User
from django.core.management.base import CommandError

from cohort.services import system_user


def acting_user(username: str | None) -> User:
    if not username:
        return system_user()
    try:
        return User.objects.get(username=username)
    except User.DoesNotExist:
        raise CommandError(f"--user: no user named '{username}'.") from None
