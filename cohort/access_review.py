"""The periodic access review (SPEC section 2): every account with its roles and centres, last
login and second-factor state, as the admin's user list shows it and as a CSV file.

`accounts()` is the one query both read (the roles prefetched, the TOTP state as a subquery), so the
list and the file never disagree and cost the same few queries for any number of accounts.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from io import StringIO

from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from cohort.accounts import mfa_required_for
from cohort.models import Membership


def accounts(queryset: QuerySet[User] | None = None) -> QuerySet[User]:
    """Users with `has_totp` (a confirmed device) and their memberships (with centres) prefetched."""
    queryset = User.objects.all() if queryset is None else queryset
    return queryset.annotate(
        has_totp=Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True))
    ).prefetch_related(Prefetch("memberships", queryset=Membership.objects.select_related("centre")))


def roles_text(user: User) -> str:
    """'AMC: research nurse; UMCU: coordinator' in the reader's language."""
    return "; ".join(f"{m.centre.code}: {m.get_role_display()}" for m in user.memberships.all())


def totp_required(user: User) -> bool:
    return mfa_required_for(user, roles=[m.role for m in user.memberships.all()])


def password_state(user: User) -> str:
    return _("set") if user.has_usable_password() else _("invited, not yet set")


def yes_no(value: bool) -> str:
    return _("yes") if value else _("no")


def local_time(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else ""


def columns() -> list[tuple[str, Callable[[User], str]]]:
    """The file's columns: a heading in the reader's language and how to read it off a user."""
    return [
        (_("User name"), lambda u: u.get_username()),
        (_("Name"), lambda u: u.get_full_name()),
        (_("E-mail address"), lambda u: u.email),
        (_("Active"), lambda u: yes_no(u.is_active)),
        (_("Roles and centres"), roles_text),
        (_("Staff (admin site)"), lambda u: yes_no(u.is_staff)),
        (_("Superuser"), lambda u: yes_no(u.is_superuser)),
        (_("Password"), password_state),
        (_("Second factor required"), lambda u: yes_no(totp_required(u))),
        (_("Second factor set up"), lambda u: yes_no(u.has_totp)),
        (_("Last login"), lambda u: local_time(u.last_login)),
        (_("Account created"), lambda u: local_time(u.date_joined)),
    ]


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet will not run: names and user names are typed by people, and one that
    starts like a formula ('=', '+', '-', '@') is read as text behind an apostrophe (OWASP)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_text(users: Iterable[User]) -> str:
    """The access review as CSV (comma-separated, UTF-8), one row per account."""
    out = StringIO()
    writer = csv.writer(out)
    cols = columns()
    writer.writerow([heading for heading, _read in cols])
    for user in users:
        writer.writerow([spreadsheet_safe(read(user)) for _heading, read in cols])
    return out.getvalue()
