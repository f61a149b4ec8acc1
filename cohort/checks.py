"""Checks of one value whose bound moves with the calendar (a dictionary max of 'today' or
'this_year'): field validators, so not database constraints. A leaf module: the models use them,
and the migrations name them."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.utils import formats, timezone
from django.utils.translation import gettext


def not_in_future(value: dt.date) -> None:
    today = timezone.localdate()
    if value > today:
        said = gettext("must not be after today (%(today)s).") % {"today": formats.date_format(today)}
        raise ValidationError(said, code="future")


def not_after_this_year(value: int) -> None:
    this_year = timezone.localdate().year
    if value > this_year:
        raise ValidationError(gettext("must not be after this year (%(year)s).") % {"year": this_year}, code="future")
