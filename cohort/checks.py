"""Checks of one value whose bound moves with the calendar (a dictionary max of 'today' or
'this_year'): field validators, so not database constraints. A leaf module: the models use them,
and the migrations name them."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.utils import timezone


def not_in_future(value: dt.date) -> None:
    today = timezone.localdate()
    if value > today:
        raise ValidationError(f"must not be after today ({today.isoformat()}).", code="future")


def not_after_this_year(value: int) -> None:
    this_year = timezone.localdate().year
    if value > this_year:
        raise ValidationError(f"must not be after this year ({this_year}).", code="future")
