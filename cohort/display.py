"""A stored value as people read it, in the user's language: the one display helper of the CRF's
values (the forms' conflict table, the casebook PDF, the change history). The import format's
machine text (codes, ISO dates, decimals with a dot) is cohort/csvformat.py's, not this.
"""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils import formats

MISSING = "–"


def is_number(field: models.Field) -> bool:
    """A measured number (not a code that happens to be stored as one)."""
    return not field.choices and isinstance(field, models.IntegerField | models.DecimalField | models.FloatField)


def field_by_attname(model: type[models.Model], attname: str) -> models.Field | None:
    """The model's field stored in column `attname` (patient_id -> patient), or None."""
    return next((f for f in model._meta.concrete_fields if f.attname == attname), None)


def value_text(field: models.Field | None, value: object) -> str:
    """A code as its label, a number in the language's style (12,5 in Dutch: SPEC section 6), a
    date in the language's one date style (date_text), missing as a dash. `value` may also be an
    audit event's JSON value."""
    if value is None or value == "":
        return MISSING
    if field is not None and field.choices:
        return str(dict(field.flatchoices).get(value, value))
    if isinstance(field, models.DateField) and isinstance(value, str):  # an audit event's ISO date
        value = dt.date.fromisoformat(value[:10])
    if isinstance(value, dt.date):
        return date_text(value)
    if field is not None and is_number(field):
        return formats.localize(value)
    return str(value)


def date_text(value: dt.date) -> str:
    """A date in the active language's one style (cohort/formats): "1 Mar 2022", "1 mrt 2022"."""
    return formats.date_format(value)
