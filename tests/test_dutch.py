"""Dutch everywhere (issue 13, item 2): every page kind and both PDFs, rendered in Dutch, carry no
English text, and `makemessages` finds nothing the Dutch catalogue lacks.

"English" is found two ways, so that a string nobody marked for translation is caught as well as
one whose translation is missing: a text that is the English side of a catalogue entry (with a
different Dutch side), and an English function word ("the", "with", "not", ...) that Dutch never
uses. Text is what a reader sees: text nodes outside scripts and styles, and the attributes a
browser shows or reads out (title, placeholder, aria-label, alt, and the prompts the scripts show).
"""

from __future__ import annotations

import datetime as dt
import gettext
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pdfplumber
import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone, translation

from cohort import crf
from cohort.api_auth import token_create
from cohort.choices import Role
from cohort.models import Assessment
from cohort.queries import raise_query
from cohort.services import centre_create, crf_row_save
from reports import pdf, report_context
from reports.models import ReportJob
from reports.services import recompute
from tests.base import login_as, make_patient, make_record, make_user

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "locale" / "nl" / "LC_MESSAGES" / "django.mo"

# English words Dutch text never has (not "in", "is", "of", "was", "die", ... which Dutch has too).
ENGLISH_WORDS = frozenset(
    [
        "the",
        "and",
        "with",
        "without",
        "this",
        "that",
        "these",
        "from",
        "for",
        "after",
        "before",
        "not",
        "are",
        "were",
        "has",
        "have",
        "been",
        "by",
        "at",
        "on",
        "or",
        "which",
        "when",
        "who",
        "what",
        "your",
        "you",
        "yes",
        "no",
        "none",
        "than",
        "into",
        "there",
        "their",
        "its",
    ]
)
# Catalogue entries whose English side is also Dutch, or a code or name that stays as it is.
SAME_IN_DUTCH = frozenset(
    {"of", "Data", "Status", "Week", "Follow-up", "Record", "Casebook", "query", "open query", "Token"}
    | {"CRP ≤", "HBI ≤", "Harvey-Bradshaw Index ≤", "Harvey-Bradshaw Index"}
)
SEEN_ATTRIBUTES = ("title", "placeholder", "aria-label", "alt", "data-confirm", "data-reason-prompt")
# Text that is data, not interface (free text typed by the builders), and the name of a score.
DATA_TEXT = (
    "Upper respiratory tract infection",
    "Please check the date",
    "Simple Endoscopic Score for Crohn's Disease",
)

DECIMAL_POINT = re.compile(r"(?<![\d.])\d+\.\d+(?![\d.])")  # 12.5, not a version such as 0.1.0
ISO_DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
NUMERIC_DATE = re.compile(r"\b[0-3]?\d-[01]?\d-20\d\d\b")


class VisibleText(HTMLParser):
    """The text nodes and read-out attributes of a page, one string each."""

    def __init__(self):
        super().__init__()
        self.texts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "template"):
            self._hidden += 1
        for name, value in attrs:
            if value and (name in SEEN_ATTRIBUTES or (name.startswith("data-") and name.endswith("-text"))):
                self.texts.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style", "template") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden and data.strip():
            self.texts.append(" ".join(data.split()))


def visible_texts(html: str) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    return parser.texts


def english_msgids() -> list[str]:
    """The catalogue's English sides whose Dutch side differs (placeholders cut out: the text
    around them is what would show)."""
    with CATALOGUE.open("rb") as file:
        catalogue = gettext.GNUTranslations(file)._catalog  # noqa: SLF001 (the stdlib has no public reader)
    found = set()
    for msgid, msgstr in catalogue.items():
        if isinstance(msgid, tuple):
            msgid = msgid[0]
        if not msgid or msgid == msgstr or msgid in SAME_IN_DUTCH:
            continue
        for part in re.split(r"%\(\w+\)s|%s|%d|<[^>]+>|\{\w*\}", msgid):
            part = part.strip(" .,:;()%")
            if part not in SAME_IN_DUTCH and ((len(part) >= 4 and " " in part) or (len(part) >= 5 and part.isalpha())):
                found.add(part)
    return sorted(found, key=len, reverse=True)


def english_in(texts: list[str], msgids: list[str]) -> list[str]:
    """Each text that reads as English, with why."""
    problems = []
    for text in texts:
        if any(data in text for data in DATA_TEXT):
            continue
        words = {word.lower() for word in re.findall(r"[A-Za-z]+", text)}
        if english := sorted(words & ENGLISH_WORDS):
            problems.append(f"{text!r} (English word {', '.join(english)})")
            continue
        for msgid in msgids:
            if re.search(rf"(?<![\w-]){re.escape(msgid)}(?![\w-])", text):
                problems.append(f"{text!r} (untranslated {msgid!r})")
                break
    return problems


def assert_dutch(html: str, where: str, msgids: list[str]) -> None:
    problems = english_in(visible_texts(html), msgids)
    assert not problems, f"English on {where}:\n  " + "\n  ".join(problems)


@pytest.fixture
def study(db):
    """A centre with a full record, a query on it, a lock, computed outcomes and a finished report
    job; a nurse and a coordinator who read Dutch."""
    centre = centre_create(code="AMC", name="Ziekenhuis A")
    nurse = make_user("nurse_a", centre=centre)
    coordinator = make_user("c_jansen", centre=centre, role=Role.COORDINATOR)
    patient = make_record(make_patient(centre, nurse))
    query = raise_query(
        patient=patient, form_key="week_8", row_id=None, field="hbi", text="Please check the date", by=coordinator
    )
    recompute("all")
    recompute(centre.code)
    for user in (nurse, coordinator):  # the token page lists one
        token_create(user=user, name="R-analyse")
    ReportJob.objects.create(
        kind=ReportJob.Kind.COHORT_PDF, scope="all", requested_by=coordinator, status=ReportJob.Status.DONE
    )
    return {"centre": centre, "nurse": nurse, "coordinator": coordinator, "patient": patient, "query": query}


def dutch(client, user):
    if user.memberships.exclude(role=Role.NURSE).exists():
        login_as(client, user)
    else:
        client.force_login(user)
    client.post(reverse("language-set"), {"language": "nl", "next": "/"})
    return client


def page_urls(study) -> list[str]:
    study_id = study["patient"].study_id
    forms = [
        reverse("cohort:rows" if form.repeating else "cohort:form", args=[study_id, form.key]) for form in crf.FORMS
    ]
    return [
        reverse("cohort:patient-list"),
        reverse("cohort:patient-enrol"),
        reverse("cohort:patient-detail", args=[study_id]),
        reverse("cohort:patient-history", args=[study_id]),
        *forms,
        reverse("cohort:query-list"),
        reverse("cohort:query", args=[study["query"].pk]),
        reverse("cohort:lock-list"),
        reverse("reports:dashboard-default"),
        reverse("reports:report-list"),
        reverse("api-tokens"),
    ]


@pytest.mark.parametrize("role", ["nurse", "coordinator"])
def test_every_page_kind_reads_dutch(client, study, role):
    msgids = english_msgids()
    dutch(client, study[role])
    problems = []
    for url in page_urls(study):
        response = client.get(url)
        if response.status_code == 403:  # pages the role may not open are the permission matrix's
            continue
        assert response.status_code == 200, url
        assert '<html lang="nl">' in response.content.decode(), url
        try:
            assert_dutch(response.content.decode(), url, msgids)
        except AssertionError as error:
            problems.append(str(error))
    assert not problems, "\n".join(problems)


def pdf_text(path: Path) -> list[str]:
    """The PDF's lines, a word hyphenated at a line's end joined again."""
    with pdfplumber.open(path) as document:
        text = "\n".join(page.extract_text() or "" for page in document.pages)
    return re.sub(r"[‐-]\n(?=\w)", "", text).splitlines()


def test_both_pdfs_read_dutch(study, tmp_path):
    msgids = english_msgids()
    pdf.render_cohort_report("all", tmp_path / "cohort.pdf", language="nl")
    pdf.render_casebook(study["patient"], tmp_path / "casebook.pdf", language="nl")

    lines = pdf_text(tmp_path / "cohort.pdf") + pdf_text(tmp_path / "casebook.pdf")
    problems = english_in(lines, msgids)
    problems += [f"{line!r} (not the Dutch date or number style)" for line in lines if odd_style(line)]

    assert not problems, "English in the PDFs:\n  " + "\n  ".join(problems)


def odd_style(text: str) -> bool:
    """An ISO or numeric date, or a decimal point, in a Dutch text."""
    return bool(ISO_DATE.search(text) or NUMERIC_DATE.search(text) or DECIMAL_POINT.search(text))


def test_the_checker_finds_english(study):
    """The two ways of finding English work: a translated catalogue text left in English, and an
    English sentence nobody marked."""
    msgids = english_msgids()
    assert english_in(["Adverse events"], msgids)
    assert english_in(["Saved at noon by nobody"], msgids)
    assert not english_in(["Ongewenste voorvallen", "Week 8", "CRP 4,5 mg/L"], msgids)


@pytest.mark.skipif(shutil.which("msgattrib") is None, reason="needs GNU gettext")
def test_makemessages_leaves_nothing_untranslated_or_fuzzy(tmp_path):
    """Run on a copy of the tree, as /work/notes/untranslated.sh does, so the catalogue in the tree
    is not rewritten."""
    copy = tmp_path / "tree"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", "var", ".git", "node_modules", "__pycache__"))
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "nl", "--no-location", "--no-obsolete"]
        + ["-i", "tests/*", "-i", "bench/*"],
        cwd=copy,
        env={**os.environ, "EMBEDDED_PG_DIR": str(tmp_path / "pg"), "EMBEDDED_PG_THROWAWAY": "1"},
        check=True,
        capture_output=True,
    )
    po = copy / "locale" / "nl" / "LC_MESSAGES" / "django.po"
    for option in ("--untranslated", "--only-fuzzy"):
        left = subprocess.run(["msgattrib", option, str(po)], check=True, capture_output=True, text=True).stdout
        msgids = [line for line in left.splitlines() if line.startswith("msgid ")][1:]  # [0]: the header
        assert not msgids, f"{option}: {msgids}"


# ---------------------------------------------------------------------------------------------
# One date and number style per language


@pytest.mark.parametrize(
    ("language", "date", "moment", "number"),
    [("nl", "2 dec 2026", "2 dec 2026, 13:50", "12,5"), ("en", "2 Dec 2026", "2 Dec 2026, 13:50", "12.5")],
)
def test_a_date_a_moment_and_a_number_have_one_style_per_language(language, date, moment, number):
    """Whichever format a template names, the date reads the same: the short styles are the long."""
    template = Template(
        '{{ d }}|{{ d|date }}|{{ d|date:"SHORT_DATE_FORMAT" }}|{{ m|date:"DATETIME_FORMAT" }}'
        '|{{ m|date:"SHORT_DATETIME_FORMAT" }}|{{ n }}'
    )
    with translation.override(language):
        shown = template.render(
            Context(
                {
                    "d": dt.date(2026, 12, 2),
                    "m": dt.datetime(2026, 12, 2, 13, 50, tzinfo=timezone.get_current_timezone()),
                    "n": 12.5,
                }
            )
        )

    assert shown.split("|") == [date, date, date, moment, moment, number]


@pytest.mark.parametrize("role", ["nurse", "coordinator"])
def test_pages_show_dates_and_numbers_in_the_one_dutch_style(client, study, role):
    """No ISO or numeric dates and no decimal points on a page a person reads (the form inputs
    hold ISO dates for the browser's date picker: they are values, not text)."""
    dutch(client, study[role])
    for url in page_urls(study):
        response = client.get(url)
        if response.status_code == 403:
            continue
        texts = visible_texts(response.content.decode())
        odd = [
            text for text in texts if ISO_DATE.search(text) or NUMERIC_DATE.search(text) or DECIMAL_POINT.search(text)
        ]
        assert not odd, f"{url}: {odd}"


# ---------------------------------------------------------------------------------------------
# The change history names the form, the visit, the field and the values as displayed


@pytest.fixture
def changed(study):
    """The week 8 CRP changed from 4.5 to 12.5 with a reason."""
    week_8 = Assessment.objects.get(patient=study["patient"], visit="week_8")
    week_8.crp_mg_l = "12.5"
    crf_row_save(row=week_8, by=study["nurse"], expected_version=week_8.version, reason="typfout")
    return study


def expected_change() -> tuple[str, str]:
    with translation.override("nl"):
        form = str(crf.BY_KEY["week_8"].title)
        label = str(Assessment._meta.get_field("crp_mg_l").verbose_name)
    return form, f"{label}: 4,5 → 12,5"


def test_the_history_page_names_form_visit_field_and_displayed_values(client, changed):
    dutch(client, changed["nurse"])
    html = client.get(reverse("cohort:patient-history", args=[changed["patient"].study_id])).content.decode()
    texts = visible_texts(html)
    form, change = expected_change()

    assert any(text.startswith(form) for text in texts), texts
    assert change in texts
    assert "crp_mg_l" not in html and "form_status" not in html
    assert "Week 8" in form or "week 8" in form


def test_the_history_gives_each_change_its_local_time_who_and_why(client, changed):
    """Each entry: its time in the study's time zone in the Dutch style, who (escaped) and the reason
    for change; the form and what changed (cohort.history.list_html)."""
    from django.utils import formats

    from cohort.services import patient_audit_trail

    patient = changed["patient"]
    dutch(client, changed["nurse"])
    html = client.get(reverse("cohort:patient-history", args=[patient.study_id])).content.decode()
    change = patient_audit_trail(patient)[-1]
    with translation.override("nl"):
        when = formats.date_format(timezone.localtime(change["at"]), "DATETIME_FORMAT")
    assert timezone.localtime(change["at"]).utcoffset() != dt.timedelta(0)  # a time in Amsterdam's zone
    form, changed_value = expected_change()
    assert (
        f"<strong>{form} gewijzigd</strong>"
        f'\n      <span class="text-muted text-nowrap">{when}</span>'
        f'\n    </div>\n    <div class="text-muted">{changed["nurse"].username} · reden: <em>typfout</em></div>'
        f'\n    <ul class="mb-0 ps-3"><li>{changed_value}</li></ul>'
    ) in html


def test_the_casebook_shows_the_same_history(client, changed):
    dutch(client, changed["nurse"])
    texts = visible_texts(
        client.get(reverse("cohort:patient-detail", args=[changed["patient"].study_id])).content.decode()
    )

    assert expected_change()[1] in texts


def test_the_casebook_pdf_history_names_form_visit_field_and_displayed_values(changed):
    with translation.override("nl"):
        history = report_context.casebook_context(changed["patient"])["history"]
    form, change = expected_change()

    updates = [entry for entry in history if entry["action"] == "update" and entry["form"] == form]
    assert [f"{c['label']}: {c['old']} → {c['new']}" for c in updates[-1]["changes"]] == [change]
    assert updates[-1]["source"] == "formulierpagina"  # where it came from, in words, not "web"
