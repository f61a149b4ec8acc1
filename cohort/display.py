"""A stored value as people read it, in the user's language: the one display helper of the CRF's
values (the forms' conflict table, the casebook PDF, the change history). The import format's
machine text (codes, ISO dates, decimals with a dot) is cohort/csvformat.py's, not this.
"""

from __future__ import annotations

import datetime as dt

from django.apps import apps
from django.db import models
from django.utils import formats
from django.utils.translation import gettext_lazy as _

from cohort import crf

MISSING = "–"


def is_number(field: models.Field) -> bool:
    """A measured number (not a code that happens to be stored as one)."""
    return not field.choices and isinstance(field, models.IntegerField | models.DecimalField | models.FloatField)


def field_by_attname(model: type[models.Model], attname: str) -> models.Field | None:
    """The model's field stored in column `attname` (patient_id -> patient), or None."""
    return next((f for f in model._meta.concrete_fields if f.attname == attname), None)


def value_text(field: models.Field | None, value: object) -> str:
    """A code as its label, a number in the language's style (12,5 in Dutch: SPEC section 6), a
    date as YYYY-MM-DD, missing as a dash. `value` may also be an audit event's JSON value."""
    if value is None or value == "":
        return MISSING
    if field is not None and field.choices:
        return str(dict(field.flatchoices).get(value, value))
    if isinstance(field, models.DateField) and isinstance(value, str):  # an audit event's ISO date
        value = dt.date.fromisoformat(value[:10])
    if isinstance(value, dt.date):
        return formats.date_format(value)
    if field is not None and is_number(field):
        return formats.localize(value)
    return str(value)


# The casebook's monitoring rows in the history (not CRF forms, so without a title in crf.FORMS).
MONITORING_NAMES = {
    "FlagConfirmation": _("Flag confirmation"),
    "Query": _("Query"),
    "QueryMessage": _("Query message"),
    "Verification": _("Source data verification"),
    "Signature": _("Signature"),
}


def form_name(entry: dict) -> str:
    """The form an audit entry is on, as the casebook names it: an assessment with its visit
    ("Assessment week 8"), a monitoring row by what it is."""
    if entry["visit"] and entry["visit"] in crf.BY_KEY:
        return str(crf.BY_KEY[entry["visit"]].title)
    if entry["file"]:
        return str(crf.FILES[entry["file"]].title)
    return str(MONITORING_NAMES.get(entry["model"], entry["form"]))


def history_entry(entry: dict) -> dict:
    """An audit entry (cohort.audit.entries) as people read it: the form and visit, and each change
    as the field's label with the old and new values as the form shows them. What was entered
    first is what later changes start from, so a creation lists no values; a removal lists the
    values it removed. The row's keys (patient, visit) are in the form's name already."""
    model = apps.get_model("cohort", entry["model"])
    hidden = crf.attnames(model, (*crf.KEYS, *crf.BOOKKEEPING))
    changes = []
    if entry["action"] != "insert":
        for name, (old, new) in sorted(entry["changes"].items()):
            if name in hidden or (entry["action"] != "update" and old in (None, "")):
                continue
            field = field_by_attname(model, name)
            label = name if field is None else str(field.verbose_name)
            changes.append({"label": label, "old": value_text(field, old), "new": value_text(field, new)})
    return {**entry, "form": form_name(entry), "changes": changes}
