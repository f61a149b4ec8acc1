"""The PDF reports (SPEC section 7): the cohort report of a scope and a patient's casebook.

Both are Django templates (templates/reports/pdf/) laid out by WeasyPrint with print CSS
(static/css/report.css). The cohort report computes the outcomes from the current data with the
same code the workers run (`services.compute_scope`) inside one read-only snapshot of the database,
so the data cut-off printed in the header is the moment every number was read.

WeasyPrint is given a URL fetcher that serves only this project's static files: free text is
escaped by the templates, and if markup ever slipped through, an <img> or a stylesheet pointing at
file:///etc/passwd or a remote host would still fetch nothing.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import pathlib
import posixpath
from collections import defaultdict
from collections.abc import Callable
from importlib import metadata
from urllib.parse import unquote, urlsplit

import weasyprint
from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.exceptions import SuspiciousFileOperation
from django.db import connection, models
from django.template.loader import render_to_string
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _

from cohort import casebook, crf, services, validators
from cohort.choices import Interval, Visit
from cohort.models import Patient
from reports import outcomes
from reports.services import compute_scope, data_snapshot
from reports.views import ALL, format_value, outcome_context, share

Progress = Callable[[int, str], None] | None

try:
    APP_VERSION = metadata.version("ustekinumab-ecrf")
except metadata.PackageNotFoundError:  # running from a checkout that was never pip-installed
    APP_VERSION = "dev"
APP_NAME = "UST re-induction eCRF"

# Relative URLs in the templates ({% static %} gives /static/...) resolve against this origin; the
# .invalid top-level domain can never reach a network (RFC 2606), and the fetcher never tries.
BASE_URL = "https://report.invalid/"


# ---------------------------------------------------------------------------------------------
# Fetching: this project's static files, nothing else.


class StaticFilesFetcher(weasyprint.URLFetcher):
    """Serves `BASE_URL + STATIC_URL + path` from Django's staticfiles finders; refuses every other
    URL (file://, http(s)://, data:, other paths) by raising, which WeasyPrint reports as a warning
    and renders without the resource."""

    def fetch(self, url: str, headers=None) -> weasyprint.urls.URLFetcherResponse:
        path = static_path(url)
        if path is None:
            raise ValueError(f"refused to fetch {url!r}: only the project's static files are served")
        try:
            found = finders.find(path)
        except SuspiciousFileOperation:
            found = None
        if not found:
            raise FileNotFoundError(f"no static file {path!r}")
        media_type = mimetypes.guess_type(found)[0] or "application/octet-stream"
        return weasyprint.urls.URLFetcherResponse(
            url, pathlib.Path(found).read_bytes(), headers={"Content-Type": media_type}
        )


def static_path(url: str) -> str | None:
    """The static file path a URL names ("css/report.css"), or None if it names anything else."""
    prefix = BASE_URL + settings.STATIC_URL.lstrip("/")
    parts = urlsplit(url)
    if not url.startswith(prefix) or parts.query or parts.fragment:
        return None
    path = unquote(parts.path)[len(urlsplit(prefix).path) :]
    normal = posixpath.normpath(path)
    if not path or normal != path or normal.startswith(("/", "..")) or "\\" in path or "\x00" in path:
        return None
    return normal


url_fetcher = StaticFilesFetcher()


def _write(html: str, out: pathlib.Path, progress: Progress) -> int:
    """Lay the HTML out and write the PDF to `out`; returns the number of pages."""
    _report(progress, 60, _("Laying out the pages"))
    document = weasyprint.HTML(string=html, base_url=BASE_URL, url_fetcher=url_fetcher).render()
    _report(progress, 90, _("Writing the PDF"))
    document.write_pdf(target=str(out))
    _report(progress, 100, _("Done"))
    return len(document.pages)


def _report(progress: Progress, percent: int, message: str) -> None:
    if progress is not None:
        progress(percent, message)


def asset_url(path: str) -> str:
    """The URL a PDF template names a static file by (served by `url_fetcher` from the project's
    static files). Not `{% static %}`: with DEBUG off that asks the collected files' manifest, which
    a worker that never ran collectstatic does not have, and WeasyPrint reads the sources anyway."""
    return BASE_URL + settings.STATIC_URL.lstrip("/") + path


def _common(title: str, scope_label: str, cut_off: dt.datetime) -> dict:
    return {
        "stylesheet": asset_url("css/report.css"),
        "study_title": _("Ustekinumab re-induction in Crohn's disease: a multicentre cohort"),
        "document_title": title,
        "scope_label": scope_label,
        "cut_off": timezone.localtime(cut_off),
        "app_name": APP_NAME,
        "app_version": APP_VERSION,
        "algorithm_version": outcomes.ALGORITHM_VERSION,
    }


# ---------------------------------------------------------------------------------------------
# Cohort report


def render_cohort_report(
    scope: str, out: pathlib.Path, *, progress: Progress = None, language: str | None = None
) -> None:
    """The cohort report of a scope ("all" or a centre code), computed from the current data, in
    `language` (default: the site's), whatever language the calling thread has active."""
    with translation.override(language or settings.LANGUAGE_CODE):
        cohort_report(scope, out, progress=progress)


def cohort_report(scope: str, out: pathlib.Path, *, progress: Progress = None) -> int:
    """`render_cohort_report`, returning the number of pages (for the command's summary)."""
    _report(progress, 5, _("Reading the data"))
    context = cohort_report_context(scope)
    _report(progress, 40, _("Composing the report"))
    html = render_to_string("reports/pdf/cohort_report.html", context)
    return _write(html, out, progress)


def cohort_report_context(scope: str) -> dict:
    """Everything the cohort report prints, read in one consistent snapshot of the data."""
    with data_snapshot():
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")  # the transaction's start: when the snapshot was taken
            (cut_off,) = cursor.fetchone()
        result, _load, _compute = compute_scope(scope)
        centres = centre_completeness(scope)
    if scope == ALL:
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
            "totals": _totals(centres) if len(centres) > 1 else None,
            "demo_data": settings.DEMO_DATA,
            "thresholds": {
                "hbi": settings.REMISSION_HBI_MAX,
                "crp": settings.REMISSION_CRP_MAX,
                "fcal": settings.REMISSION_FCAL_MAX,
            },
        }
    )
    return context


def treatment_rows(treatment: dict) -> dict:
    """The treatment table: two distributions and the maintenance interval before and after."""
    labels = dict(Interval.choices)
    distributions = [
        (_("Initial induction to re-induction, months"), treatment.get("interval_initial_to_reinduction_months")),
        (_("Maintenance doses recorded, per patient"), treatment.get("maintenance_doses")),
    ]
    intervals = []
    for code in outcomes.INTERVAL_CODES:
        before, after = treatment.get(f"interval_before_{code}"), treatment.get(f"interval_after_{code}")
        if before or after:
            intervals.append(
                {
                    "label": labels.get(code, code),
                    "before": format_value(before) if before else "–",
                    "after": format_value(after) if after else "–",
                }
            )
    return {
        "distributions": [
            {"label": label, "value": format_value(value), "N": value.get("N")}
            for label, value in distributions
            if value
        ],
        "intervals": intervals,
        "N": next((value["N"] for value in treatment.values() if isinstance(value, dict) and "N" in value), None),
    }


# Enrolment and completeness per centre: three queries whatever the number of patients.
_PATIENTS = """
    SELECT c.code, c.name, count(p.id),
           count(p.id) FILTER (WHERE t.t0 IS NOT NULL),
           count(p.id) FILTER (WHERE f.id IS NOT NULL),
           count(p.id) FILTER (WHERE t.t0 IS NOT NULL AND f.id IS NOT NULL)
    FROM cohort_centre c
    LEFT JOIN cohort_patient p ON p.centre_id = c.id AND p.deleted_at IS NULL
    LEFT JOIN (SELECT patient_id, min(dose_date) AS t0 FROM cohort_ustekinumabdose
               WHERE phase = 'reinduction' GROUP BY patient_id) t ON t.patient_id = p.id
    LEFT JOIN cohort_followup f ON f.patient_id = p.id
    WHERE (c.active OR p.id IS NOT NULL) {scope}
    GROUP BY c.code, c.name ORDER BY c.code
"""
# A visit is expected of an included patient followed up on ustekinumab to its nominal day, and of
# anyone who has it recorded; recorded means an assessment not marked 'not done'.
_VISITS = """
    WITH included AS (
        SELECT p.id, c.code, t.t0,
               CASE WHEN f.status = 'discontinued' THEN coalesce(f.discontinuation_date, f.last_follow_up_date)
                    ELSE f.last_follow_up_date END AS follow_up_end
        FROM cohort_patient p JOIN cohort_centre c ON c.id = p.centre_id
        JOIN (SELECT patient_id, min(dose_date) AS t0 FROM cohort_ustekinumabdose
              WHERE phase = 'reinduction' GROUP BY patient_id) t ON t.patient_id = p.id
        JOIN cohort_followup f ON f.patient_id = p.id
        WHERE p.deleted_at IS NULL {scope}
    ), visit(code, nominal_day) AS (VALUES {visits})
    SELECT i.code, v.code,
           count(*) FILTER (WHERE a.id IS NOT NULL AND a.not_done <> 'yes'),
           count(*) FILTER (WHERE i.follow_up_end >= i.t0 + v.nominal_day
                             OR (a.id IS NOT NULL AND a.not_done <> 'yes'))
    FROM included i CROSS JOIN visit v
    LEFT JOIN cohort_assessment a ON a.patient_id = i.id AND a.visit = v.code
    GROUP BY i.code, v.code
"""
_FORMS = """
    WITH form AS (
        SELECT id AS patient_id, form_status, updated_at FROM cohort_patient
        UNION ALL SELECT patient_id, form_status, updated_at FROM cohort_priorbiologic
        UNION ALL SELECT patient_id, form_status, updated_at FROM cohort_ustekinumabdose
        UNION ALL SELECT patient_id, form_status, updated_at FROM cohort_reinduction
        UNION ALL SELECT patient_id, form_status, updated_at FROM cohort_assessment
        UNION ALL SELECT patient_id, form_status, updated_at FROM cohort_followup
        UNION ALL SELECT patient_id, form_status, updated_at FROM cohort_adverseevent
    )
    SELECT c.code, count(*), count(*) FILTER (WHERE x.form_status = 'complete'), max(x.updated_at)
    FROM form x JOIN cohort_patient p ON p.id = x.patient_id JOIN cohort_centre c ON c.id = p.centre_id
    WHERE p.deleted_at IS NULL {scope}
    GROUP BY c.code
"""


def centre_completeness(scope: str) -> list[dict]:
    """Per centre: patients enrolled, with a re-induction dose, with a follow-up form and included
    in the outcomes; visits recorded of those expected; CRF rows marked complete; the last change."""
    condition = "" if scope == ALL else "AND c.code = %s"
    params = [] if scope == ALL else [scope]
    days = {Visit.WEEK_0.value: 0, **outcomes.NOMINAL_DAY}
    visits_sql = ", ".join(f"('{code}', {day})" for code, day in days.items())  # constants, not input
    with connection.cursor() as cursor:
        cursor.execute(_PATIENTS.format(scope=condition), params)
        rows = cursor.fetchall()
        cursor.execute(_VISITS.format(scope=condition, visits=visits_sql), params)
        visits = {(code, visit): (recorded, expected) for code, visit, recorded, expected in cursor.fetchall()}
        cursor.execute(_FORMS.format(scope=condition), params)
        forms = {code: (total, complete, last) for code, total, complete, last in cursor.fetchall()}
    centres = []
    for code, name, enrolled, with_t0, with_follow_up, included in rows:
        total, complete, last = forms.get(code, (0, 0, None))
        centres.append(
            {
                "code": code,
                "name": name,
                "enrolled": enrolled,
                "with_reinduction": with_t0,
                "with_follow_up": with_follow_up,
                "included": included,
                "visits": [_visit_cell(*visits.get((code, visit), (0, 0))) for visit in days],
                "visit_counts": [visits.get((code, visit), (0, 0)) for visit in days],
                "forms": f"{complete}/{total}",
                "forms_percent": share(complete, total),
                "forms_counts": (complete, total),
                "last_change": timezone.localtime(last) if last else None,
            }
        )
    return centres


def _visit_cell(recorded: int, expected: int) -> dict:
    return {"count": f"{recorded}/{expected}", "percent": share(recorded, expected)}


def _totals(centres: list[dict]) -> dict:
    visit_counts = [
        tuple(sum(values) for values in zip(*column, strict=True))
        for column in zip(*(centre["visit_counts"] for centre in centres), strict=True)
    ]
    complete = sum(centre["forms_counts"][0] for centre in centres)
    total = sum(centre["forms_counts"][1] for centre in centres)
    lasts = [centre["last_change"] for centre in centres if centre["last_change"]]
    return {
        "enrolled": sum(centre["enrolled"] for centre in centres),
        "with_reinduction": sum(centre["with_reinduction"] for centre in centres),
        "with_follow_up": sum(centre["with_follow_up"] for centre in centres),
        "included": sum(centre["included"] for centre in centres),
        "visits": [_visit_cell(recorded, expected) for recorded, expected in visit_counts],
        "forms": f"{complete}/{total}",
        "forms_percent": share(complete, total),
        "last_change": max(lasts) if lasts else None,
    }


# ---------------------------------------------------------------------------------------------
# Casebook


def render_casebook(
    patient: Patient, out: pathlib.Path, *, progress: Progress = None, language: str | None = None
) -> None:
    """Every form of one patient with its values, status and flags, then the audit history."""
    with translation.override(language or settings.LANGUAGE_CODE):
        casebook_report(patient, out, progress=progress)


def casebook_report(patient: Patient, out: pathlib.Path, *, progress: Progress = None) -> int:
    _report(progress, 5, _("Reading the casebook"))
    context = casebook_context(patient)
    _report(progress, 40, _("Composing the casebook"))
    html = render_to_string("reports/pdf/casebook.html", context)
    return _write(html, out, progress)


# Rows tabulated one per line; the other forms print as label/value lists.
TABULAR_FORMS = {"prior_biologics", "doses"}
# Never shown as values: keys and bookkeeping (the audit trail records who and when).
HIDDEN_FIELDS = {"id", "patient_id", "centre_id", "created_by_id", "created_at", "updated_at", "version"}


def casebook_context(patient: Patient) -> dict:
    patient = Patient.all_objects.select_related("centre").get(pk=patient.pk)
    with data_snapshot():
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            (cut_off,) = cursor.fetchone()
        record = services.patient_record(patient)
        trail = services.patient_audit_trail(patient)
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
                    "numeric": _is_number(model._meta.get_field(name)),
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
                    {"label": str(field.verbose_name), "numeric": _is_number(field)}
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
            "forms": forms,
            "schedule": casebook.visit_schedule(record, timezone.localdate()),
            "flag_count": sum(len(cell.flags) for cell in cells),
            "history": [_history_entry(entry, labels) for entry in trail],
        }
    )
    return context


def _is_free_text(field) -> bool:
    return not field.choices and (field.max_length or 0) > 100


def _is_number(field) -> bool:
    return not field.choices and isinstance(field, models.IntegerField | models.DecimalField | models.FloatField)


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
    value = row.hbi_total if name == "hbi" else getattr(row, field.attname)
    if value is None or value == "":
        return "–"
    if field.choices:
        return str(dict(field.flatchoices).get(value, value))
    if isinstance(value, dt.date):
        return value.isoformat()
    return formats.localize(value) if _is_number(field) else str(value)  # 12,5 in Dutch (SPEC 6)


def _history_entry(entry: dict, labels: dict) -> dict:
    model = apps.get_model("cohort", entry["model"])
    record = labels.get((entry["model"], str(entry["record"])), f"#{entry['record']}")
    changes = []
    if entry["action"] != "insert":  # what was entered first is what the later changes start from
        for name, (old, new) in sorted(entry["changes"].items()):
            if name in HIDDEN_FIELDS:
                continue
            if entry["action"] != "update" and old in (None, ""):
                continue
            changes.append(
                {"label": _field_label(model, name), "old": _raw(model, name, old), "new": _raw(model, name, new)}
            )
    return {
        "at": timezone.localtime(entry["at"]),
        "action": entry["action"],
        "form": entry["form"],
        "record": record,
        "user": entry["user"] or _("unknown user"),
        "reason": entry["reason"],
        "source": entry["source"],
        "changes": changes,
    }


def _field_label(model, attname: str) -> str:
    for field in model._meta.concrete_fields:
        if field.attname == attname:
            return str(field.verbose_name)
    return attname


def _raw(model, attname: str, value) -> str:
    """An audit value (JSON: codes, ISO dates) as the form shows it."""
    if value is None or value == "":
        return "–"
    for field in model._meta.concrete_fields:
        if field.attname == attname and field.choices:
            return str(dict(field.flatchoices).get(value, value))
        if field.attname == attname and _is_number(field):
            return formats.localize(value)  # a JSON number, in the casebook's language
    return str(value)
