"""The PDF reports (SPEC section 7), rendered by the real WeasyPrint and read back with pdfplumber:
the cohort report holds the figures the outcome computation gives for the 31-patient cohort, overall
and per centre, with the Kaplan-Meier figure drawn as vectors; the casebook holds every form, flag
and audit entry; hostile free text is printed as text and fetches nothing.

Each render takes a second or two, so the tests render five PDFs in all."""

from __future__ import annotations

import datetime as dt
import logging
import re
from decimal import ROUND_HALF_UP, Decimal
from io import StringIO

import pdfplumber
import pytest
import weasyprint
from django.core.management import call_command
from django.utils import timezone

from cohort.models import AdverseEvent, Assessment, Centre, FollowUp, Patient
from cohort.services import centre_create, crf_row_save, system_user
from reports import figures, pdf, report_context
from reports.services import compute_scope
from tests.base import make_patient, make_record
from tests.test_outcomes import COHORT31

pytestmark = pytest.mark.django_db

HOSTILE = '<img src="file:///etc/passwd"> <img src="http://example.org/x.png"> <script>x</script>'
HOSTILE_THERAPY = '<link rel="stylesheet" href="https://example.org/evil.css"> <img src="file:///etc/shadow">'


@pytest.fixture
def cohort31():
    for code, name in (("AMC", "Amsterdam UMC"), ("UMCU", "UMC Utrecht"), ("RUMC", "Radboudumc")):
        if not Centre.objects.filter(code=code).exists():
            centre_create(code=code, name=name)
    call_command("import_cohort", str(COHORT31), stdout=StringIO())


def pdf_pages(path) -> list[str]:
    with pdfplumber.open(path) as document:
        return [page.extract_text() or "" for page in document.pages]


def flat(pages: list[str]) -> str:
    """The document's text on one line (cells wrap and lines break where the layout put them)."""
    return re.sub(r"\s+", " ", " ".join(pages))


def percent(n: int, total: int) -> str:
    return f"{(Decimal(100 * n) / Decimal(total)).quantize(Decimal(1), rounding=ROUND_HALF_UP)}%"


def whole(fraction: float) -> str:
    return str(Decimal(repr(100 * fraction)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def ci(value: dict) -> str:
    return f"{whole(value['ci_low'])}–{whole(value['ci_high'])}%"


def expected_figures(result: dict) -> list[str]:
    """What a reader checks against the outcome dict: every proportion as 'n/N %' and its CI."""
    expected = []
    baseline = result["baseline"]
    for key in ("anti_tnf_2plus", "vedolizumab", "sex_female", "prior_resection"):
        value = baseline[key]
        expected.append(f"{value['n']}/{value['N']} ({percent(value['n'], value['N'])})")
    for week in ("week_20", "week_52"):
        survival = result["drug_survival"][week]
        expected.append(f"{whole(survival['estimate'])}% {ci(survival)} {survival['at_risk']}")
    for week in ("week_8", "week_20", "week_52"):
        for definition in ("observed", "nri", "steroid_free"):
            value = result["clinical_remission"][week][definition]
            if value["N"]:
                expected.append(f"{value['n']}/{value['N']} {percent(value['n'], value['N'])} {ci(value)}")
        for table in ("biochemical_remission", "endoscopic_remission"):
            value = result[table][week]
            if value["N"]:
                expected.append(f"{value['n']}/{value['N']} {percent(value['n'], value['N'])} {ci(value)}")
    nonresponse = result["nonresponse"]
    expected.append(f"{nonresponse['n']}/{nonresponse['N']} {percent(nonresponse['n'], nonresponse['N'])}")
    events = result["adverse_events"]
    expected.append(
        f"{events['patients']}/{result['n_patients']} ({percent(events['patients'], result['n_patients'])})"
    )
    return expected


def test_it_prints_the_whole_cohort_figures_header_footer_and_km_figure(cohort31, tmp_path):
    out = tmp_path / "all.pdf"
    steps = []
    pdf.render_cohort_report("all", out, progress=lambda percent, message: steps.append(percent))

    assert out.read_bytes().startswith(b"%PDF-")
    assert steps[-1] == 100 and steps == sorted(steps)
    pages = pdf_pages(out)
    text = flat(pages)
    result, _load, _compute = compute_scope("all")
    # The published figures of the first 31 patients (SPEC section 1), as the paper prints them.
    for published in ("24/31 (77%)", "20/31 (65%)", "11.1 (6.9–19.5)", "74% 55–86% 23", "71% 52–84% 22"):
        assert published in text
    assert "10/27 37% 22–56%" in text and "13/23 57%" in text and "9/20 45%" in text
    assert "5/31 16% 7–33%" in text and "4/31 (13%)" in text
    for figure in expected_figures(result):
        assert figure in text, figure
    # Every centre's enrolment row, and the total.
    assert re.search(r"AMC .*12 12 12 12", text) and re.search(r"All centres 31 31 31 31", text)
    assert "Synthetic demonstration data." in text  # the test settings are a demo install (DEBUG)
    # Header (study, scope, cut-off) and footer (versions, page X of Y) on every page after the title.
    for number, page in enumerate(pages, start=1):
        assert f"page {number} of {len(pages)}" in page
        assert f"· algorithm {result['algorithm_version']} ·" in page
        if number > 1:
            assert re.search(r"Cohort report · All centres · data cut-off \d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d", page)
    # The Kaplan-Meier figure: drawn as vector paths (band and step curve), with its caption and the
    # numbers at risk at weeks 0, 8, 20 and 52 under the axis.
    curve = result["drug_survival"]["curve"]
    at_risk = " ".join(str(figures.at_risk_at(curve, day)) for _week, day in figures.WEEK_TICKS)
    with pdfplumber.open(out) as document:
        page = next(
            page
            for page in document.pages
            if "Figure S1. Kaplan-Meier estimate of drug survival after" in (page.extract_text() or "")
        )
        assert len(page.curves) >= 2 and len(page.lines) >= 10
        assert at_risk in page.extract_text()


def test_a_centre_report_holds_only_that_centres_numbers(cohort31, tmp_path, settings):
    settings.DEMO_DATA = False  # a real study's report does not call its data synthetic
    out = tmp_path / "umcu.pdf"
    pdf.render_cohort_report("UMCU", out)

    pages = pdf_pages(out)
    text = flat(pages)
    result, _load, _compute = compute_scope("UMCU")
    assert result["n_patients"] == 10
    for figure in expected_figures(result):
        assert figure in text, figure
    assert "Patients (N = 10)" in text
    assert "/31" not in text and "All centres" not in text
    assert "Synthetic" not in text
    assert "AMC" not in text and "RUMC" not in text
    assert all(re.search(r"Cohort report · UMCU · UMC Utrecht · data cut-off", page) for page in pages[1:])


def test_every_table_keeps_to_the_text_width_with_long_centre_names(tmp_path):
    long_names = {
        "AMC": "Amstelland Academisch Centrum voor Maag-, Darm- en Leverziekten",
        "UMCU": "Universitair Medisch Centrum Vechtstreek, afdeling MDL",
        "RUMC": "Radboud-Waalkade Centrum voor Inflammatoire Darmziekten",
    }
    for code, name in long_names.items():
        centre_create(code=code, name=name)
    call_command("import_cohort", str(COHORT31), stdout=StringIO())
    out = tmp_path / "all.pdf"
    pdf.render_cohort_report("all", out)

    margin = 20 / 25.4 * 72  # the @page side margins, 20 mm, in points
    with pdfplumber.open(out) as document:
        assert "Amstelland Academisch Centrum" in flat([page.extract_text() or "" for page in document.pages])
        for number, page in enumerate(document.pages, start=1):
            outside = [c["text"] for c in page.chars if c["x0"] < margin - 1 or c["x1"] > page.width - margin + 1]
            assert not outside, f"page {number}: {''.join(outside)!r} runs into the margin"


def test_the_command_renders_a_pdf_and_says_how_many_pages(cohort31, tmp_path):
    out = tmp_path / "report.pdf"
    stdout = StringIO()
    call_command("render_report", "--out", str(out), "--centre", "AMC", stdout=stdout)

    with pdfplumber.open(out) as document:
        pages = len(document.pages)
    assert out.read_bytes()[:5] == b"%PDF-"
    assert re.match(rf"{re.escape(str(out))}: {pages} pages \(AMC, [0-9.]+ s\)", stdout.getvalue())
    assert "12/12" in flat(pdf_pages(out))


def test_the_casebook_prints_every_form_flag_and_audit_entry_and_hostile_text_as_text(cohort31, tmp_path, monkeypatch):
    patient = Patient.objects.get(study_id="AMC-010")  # its week-8 visit is out of window: a flag
    user = system_user()
    event = AdverseEvent(
        patient=patient,
        onset_date=dt.date(2022, 9, 1),
        category="skin",
        description=HOSTILE,
        serious="no",
        causality="possible",
        outcome="resolved",
        led_to_discontinuation="no",
        form_status="complete",
    )
    crf_row_save(row=event, by=user, expected_version=None)
    follow_up = patient.follow_up
    follow_up.next_therapy = HOSTILE_THERAPY
    crf_row_save(row=follow_up, by=user, expected_version=follow_up.version, reason="source data verified")
    fetched = []

    class Recording(pdf.StaticFilesFetcher):
        def fetch(self, url, headers=None):
            fetched.append(url)
            return super().fetch(url, headers)

    monkeypatch.setattr(pdf, "url_fetcher", Recording())
    out = tmp_path / "casebook.pdf"
    pdf.render_casebook(patient, out)

    text = flat(pdf_pages(out))
    # Free text is escaped: printed literally, and nothing it names was fetched.
    assert HOSTILE in text and HOSTILE_THERAPY in text
    assert fetched == ["https://report.invalid/static/css/report.css"]
    # Every form with its status, the values, the flag.
    for title in (
        "Enrolment and demographics",
        "Prior biologics",
        "Ustekinumab doses",
        "Loss of response and re-induction",
        "Assessment week 0 (re-induction)",
        "Assessment week 8",
        "Assessment week 20",
        "Assessment week 52",
        "Ustekinumab status at last follow-up",
        "Adverse events",
    ):
        assert title in text, title
    assert "Casebook AMC-010" in text and "Date of administration" in text and "IV re-induction" in text
    assert "14 Jul 2022" in text  # the re-induction dose
    assert re.search(r"day 90 after re-induction is outside the week 8 window", text)
    assert "complete" in text and "flagged" in text
    # The audit history: who and why, old and new values.
    assert "Audit history" in text and "system" in text
    assert "reason: source data verified" in text
    assert re.search(r"Next therapy: – → <link", text)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "http://example.org/x.png",
        "https://example.org/static/css/report.css",
        "https://report.invalid/etc/passwd",
        "https://report.invalid/static/../../../etc/passwd",
        "https://report.invalid/static/%2e%2e/%2e%2e/cohort/settings.py",
        "https://report.invalid/static/css/report.css?x=1",
        "data:text/css,body{}",
        "https://report.invalid/static/css/missing.css",
    ],
)
def test_the_url_fetcher_refuses_everything_but_the_projects_static_files(url):
    with pytest.raises((ValueError, FileNotFoundError)):
        pdf.url_fetcher.fetch(url)


def test_the_url_fetcher_serves_the_projects_static_files():
    response = pdf.url_fetcher.fetch("https://report.invalid/static/css/report.css")
    assert b"@page" in response.read() and response.headers.get_content_type() == "text/css"


def test_markup_that_slipped_through_still_fetches_nothing(caplog):
    html = (
        '<link rel="stylesheet" href="https://example.org/evil.css">'
        '<p>before</p><img src="file:///etc/passwd"><img src="http://example.org/x.png"><p>after</p>'
    )
    with caplog.at_level(logging.WARNING, logger="weasyprint"):
        document = weasyprint.HTML(string=html, base_url=pdf.BASE_URL, url_fetcher=pdf.url_fetcher).render()
    assert len(document.pages) == 1
    refused = " ".join(record.getMessage() for record in caplog.records)
    for url in ("https://example.org/evil.css", "file:///etc/passwd", "http://example.org/x.png"):
        assert url in refused
    assert refused.count("refused to fetch") == 3


def test_a_worker_that_never_collected_static_files_renders_with_the_stylesheet(patient, tmp_path, settings):
    # Production storage (DEBUG off) over an empty STATIC_ROOT: what the worker container has when
    # only the web container ran collectstatic. The stylesheet still applies (A4, not Letter).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    settings.STATIC_ROOT = tmp_path / "empty-static-root"
    out = tmp_path / "casebook.pdf"

    pdf.render_casebook(patient, out)

    with pdfplumber.open(out) as document:
        page = document.pages[0]
        assert (round(page.width), round(page.height)) == (595, 842)  # A4 in points


def test_the_completeness_table_counts_the_patients_the_outcomes_include(cohort31):
    context = report_context.cohort_report_context("all")

    centres = {centre["code"]: centre for centre in context["centres"]}
    assert sorted(centres) == ["AMC", "RUMC", "UMCU"]
    for code, centre in centres.items():
        result, _load, _compute = compute_scope(code)
        assert centre["included"] == result["n_patients"], code
        assert centre["enrolled"] == result["n_patients"] + result["excluded_incomplete"], code
    assert context["totals"]["included"] == context["n_patients"] == 31


def test_visits_are_expected_of_patients_followed_up_to_their_nominal_day(people):
    t0 = dt.date(2022, 3, 1)
    nurse = people["nurse_a"]
    # Followed up past week 52, every visit recorded.
    make_record(make_patient(people["centre_a"], nurse), t0=t0)
    # Followed up to day 200 (ongoing): week 52 is not yet expected; marked not done, it is not recorded.
    short = make_record(make_patient(people["centre_a"], nurse), t0=t0)
    FollowUp.objects.filter(patient=short).update(last_follow_up_date=t0 + dt.timedelta(days=200))
    Assessment.objects.filter(patient=short, visit="week_52").delete()
    Assessment.objects.create(patient=short, visit="week_52", not_done="yes", not_done_reason="missed")
    # Discontinued on day 150, last seen on day 300: week 20 expected (not recorded), week 52 not.
    stopped = make_record(make_patient(people["centre_a"], nurse), t0=t0)
    FollowUp.objects.filter(patient=stopped).update(
        status="discontinued",
        discontinuation_date=t0 + dt.timedelta(days=150),
        discontinuation_reason="nonresponse",
        last_follow_up_date=t0 + dt.timedelta(days=300),
    )
    Assessment.objects.filter(patient=stopped, visit__in=["week_20", "week_52"]).delete()
    # Enrolled without a re-induction dose: not included, no visit expected.
    make_patient(people["centre_a"], nurse)
    # Removed: not counted at all.
    removed = make_record(make_patient(people["centre_a"], nurse), t0=t0)
    Patient.all_objects.filter(pk=removed.pk).update(deleted_at=timezone.now())
    centre_create(code="NEW", name="New centre")  # active, no patients yet: listed
    centre_create(code="OLD", name="Closed centre")
    Centre.objects.filter(code="OLD").update(active=False)  # inactive and empty: left out

    context = report_context.cohort_report_context("all")

    centres = {centre["code"]: centre for centre in context["centres"]}
    assert sorted(centres) == ["AMC", "NEW", "UMCU"]
    amc = centres["AMC"]
    assert (amc["enrolled"], amc["with_reinduction"], amc["with_follow_up"], amc["included"]) == (4, 3, 3, 3)
    # (recorded, expected) at weeks 0, 8, 20 and 52.
    assert amc["visit_counts"] == [(3, 3), (3, 3), (2, 3), (1, 1)]
    assert [cell["count"] for cell in amc["visits"]] == ["3/3", "3/3", "2/3", "1/1"]
    assert centres["NEW"]["enrolled"] == 0 and centres["NEW"]["visit_counts"] == [(0, 0)] * 4
    assert context["n_patients"] == 3
