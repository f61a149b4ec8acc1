"""What the PDF reports print (SPEC section 7), as template contexts: the cohort report of a scope
and a patient's casebook, each read in one consistent snapshot of the database, so the data
cut-off printed in the header is the moment every number was read. reports/pdf.py lays them out.

The cohort report computes the outcomes from the current data with the same code the workers run
(`services.scope_columns`, as a recompute does); its completeness table counts the very patients
the outcomes were computed from (reports/completeness.py). Not the latest stored snapshot: the
table needs the patients' columns anyway, which are most of a recompute's cost, and computed here
they are at the cut-off printed in the header by construction.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from cohort import casebook, crf, display, history, locks, queries, services, signatures, validators
from cohort.access import ALL_SCOPE
from cohort.models import Patient
from reports import completeness, outcomes
from reports.presentation import outcome_context, share, treatment_rows
from reports.services import data_snapshot, scope_columns


def _cut_off() -> dt.datetime:
    """The start of the current transaction: when the data snapshot was taken."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        (cut_off,) = cursor.fetchone()
    return cut_off


def _common(title: str, scope_label: str, cut_off: dt.datetime) -> dict:
    """The header and footer of every page (reports/pdf.py adds the stylesheet and the software)."""
    return {
        "study_title": _("Ustekinumab re-induction in Crohn's disease: a multicentre cohort"),
        "document_title": title,
        "scope_label": scope_label,
        "cut_off": timezone.localtime(cut_off),
        "algorithm_version": outcomes.ALGORITHM_VERSION,
    }


# ---------------------------------------------------------------------------------------------
# Cohort report


def cohort_report_context(scope: str) -> dict:
    """Everything the cohort report prints, read in one consistent snapshot of the data."""
    with data_snapshot():
        cut_off = _cut_off()
        computed = scope_columns(scope)
        centres = completeness.centre_completeness(scope, computed.columns)
    result = computed.result
    if scope == ALL_SCOPE:
        scope_label = _("All centres")
    else:
        scope_label = " · ".join(part for part in (scope, centres[0]["name"] if centres else "") if part)
    context = _common(_("Cohort report"), scope_label, cut_off)
    context.update(outcome_context(result))
    survival_n = result.get("drug_survival", {}).get("n", result.get("n_patients", 0))
    context.update(
        {
            "scope": scope,
            "result": result,
            "survival_n": survival_n,
            "discontinued_percent": share(context["survival_events"], survival_n),
            "treatment": treatment_rows(result.get("treatment", {})),
            "centres": centres,
            "totals": completeness.totals(centres) if len(centres) > 1 else None,
            "demo_data": settings.DEMO_DATA,
            "thresholds": {
                "hbi": settings.REMISSION_HBI_MAX,
                "crp": settings.REMISSION_CRP_MAX,
                "fcal": settings.REMISSION_FCAL_MAX,
            },
        }
    )
    return context


# ---------------------------------------------------------------------------------------------
# Casebook


# Rows tabulated one per line; the other forms print as label/value lists.
TABULAR_FORMS = {"prior_biologics", "doses"}
# Never shown as values: keys and bookkeeping (the audit trail records who and when).


def casebook_context(patient: Patient) -> dict:
    patient = Patient.all_objects.select_related("centre").get(pk=patient.pk)
    with data_snapshot():
        cut_off = _cut_off()
        record = services.patient_record(patient)
        trail = services.patient_audit_trail(patient)
        lock = locks.covering(patient)
        patient_queries = queries.conversations(patient)
        signing = signatures.Panel(entries=signatures.history(record), blockers=[])
    cells = casebook.form_cells(record)
    flags_of_row: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for flag in validators.soft_flags(record):
        flags_of_row[id(flag.row)][flag.field].append(flag.message)
    forms = []
    for cell in cells:
        case_form = crf.form(cell.key)
        names, model = case_form.fields, case_form.model
        entries = []
        for row in case_form.rows(record):
            row_flags = flags_of_row.get(id(row), {})
            values = [
                {
                    "label": str(model._meta.get_field(name).verbose_name),
                    "value": _display(row, name),
                    "flags": row_flags.get(name, []),
                    "wide": _is_free_text(model._meta.get_field(name)),
                    "numeric": display.is_number(model._meta.get_field(name)),
                }
                for name in names
            ]
            entries.append(
                {
                    "values": values,
                    "lines": _two_per_line(values),
                    "status": row.get_form_status_display(),
                    "complete": row.form_status == "complete",
                    "version": row.version,
                    "updated_at": timezone.localtime(row.updated_at) if row.updated_at else None,
                    "flagged": bool(row_flags),
                }
            )
        forms.append(
            {
                "key": cell.key,
                "title": case_form.title,
                "status": cell.status,
                "status_label": cell.status_label,
                "flags": cell.flags,
                "columns": [
                    {"label": str(field.verbose_name), "numeric": display.is_number(field)}
                    for field in (model._meta.get_field(name) for name in names)
                ],
                "entries": entries,
                "tabular": cell.key in TABULAR_FORMS,
            }
        )
    labels = {(type(row).__name__, str(row.pk)): str(row) for row in record.rows()}
    context = _common(_("Casebook"), f"{patient.study_id} · {patient.centre.code}", cut_off)
    context.update(
        {
            "patient": patient,
            "lock_text": locks.describe(lock) if lock else "",
            "signing": signing,
            "forms": forms,
            "schedule": casebook.visit_schedule(record, timezone.localdate()),
            "flag_count": sum(len(cell.flags) for cell in cells),
            "history": [_history_entry(entry, labels) for entry in history.readable(trail)],
            "queries": [(query, queries.where(query.form, query.field)) for query in patient_queries],
        }
    )
    return context


def _is_free_text(field) -> bool:
    return not field.choices and (field.max_length or 0) > 100


def _two_per_line(values: list[dict]) -> list[list[dict]]:
    """Label/value pairs two to a line, as a paper CRF sets them; free text gets a line of its own."""
    lines: list[list[dict]] = []
    for item in values:
        if item["wide"] or not lines or len(lines[-1]) == 2 or lines[-1][0]["wide"]:
            lines.append([item])
        else:
            lines[-1].append(item)
    return lines


def _display(row, name: str) -> str:
    field = row._meta.get_field(name)
    return display.value_text(field, row.hbi_total if name == "hbi" else getattr(row, field.attname))


def _history_entry(entry: dict, labels: dict) -> dict:
    """A readable audit entry (cohort.history) as the PDF prints it: in local time, with the
    record it changed."""
    return {
        **entry,
        "at": timezone.localtime(entry["at"]),
        "record": labels.get((entry["model"], str(entry["record"])), f"#{entry['record']}"),
        "user": entry["user"] or _("unknown user"),
    }
