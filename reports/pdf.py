"""The PDF reports (SPEC section 7): the cohort report of a scope and a patient's casebook.

Both are Django templates (templates/reports/pdf/) laid out by WeasyPrint with print CSS
(static/css/report.css); what they print is built by reports/report_context.py, which reads it in
one snapshot of the database. This module renders: templates to HTML, HTML to pages, pages to a file.

WeasyPrint is given a URL fetcher that serves only this project's static files: free text is
escaped by the templates, and if markup ever slipped through, an <img> or a stylesheet pointing at
file:///etc/passwd or a remote host would still fetch nothing.
"""

from __future__ import annotations

import mimetypes
import pathlib
import posixpath
from collections.abc import Callable
from importlib import metadata
from urllib.parse import unquote, urlsplit

import weasyprint
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.exceptions import SuspiciousFileOperation
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from cohort.models import Patient
from reports.report_context import casebook_context, cohort_report_context

Progress = Callable[[int, str], None] | None

try:
    APP_VERSION = metadata.version("ustekinumab-ecrf")
except metadata.PackageNotFoundError:  # running from a checkout that was never pip-installed
    APP_VERSION = "dev"
APP_NAME = gettext_lazy("UST re-induction eCRF")  # the navbar's name, in the PDF's language

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


def _document(context: dict) -> dict:
    """The context with what every PDF page names besides the data: the stylesheet and the software."""
    return {
        **context,
        "stylesheet": asset_url("css/report.css"),
        "app_name": APP_NAME,
        "app_version": APP_VERSION,
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
    html = render_to_string("reports/pdf/cohort_report.html", _document(context))
    return _write(html, out, progress)


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
    html = render_to_string("reports/pdf/casebook.html", _document(context))
    return _write(html, out, progress)
