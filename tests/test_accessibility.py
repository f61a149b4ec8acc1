"""WCAG 2.1 A/AA in a real browser: axe-core (the copy bundled by the axe-playwright-python
package) checks every page kind each role reaches, in English and in Dutch, and at a tablet and a
phone width no page scrolls sideways. A failed save moves the focus to an error summary that links
to each field it names. Screenshots go to test-output/screenshots/ (a11y-*), to be looked at."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from cohort.api_auth import token_create
from cohort.choices import Role
from cohort.models import Assessment, Patient
from cohort.queries import raise_query
from tests.base import make_patient, make_record, make_user
from tests.test_browser import TIMEOUT_MS, page, shot  # noqa: F401 (page is a fixture)
from tests.test_browser_queries import signed_in

WCAG_A_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# axe's best practices too: named table headers, landmarks, every part of the page in a region.
RULES = [*WCAG_A_AA, "best-practice"]
LANGUAGES = ["en-GB", "nl-NL"]


def late_patient(people):
    """A second patient, re-induced 170 days ago, whose week 8 and 20 visits are missing: the list
    shows its next visit and the overdue count (the widest of its cells)."""
    t0 = timezone.localdate() - dt.timedelta(days=170)
    late = make_record(make_patient(people["centre_a"], people["nurse_a"]), t0=t0)
    Assessment.objects.filter(patient=late, visit__in=["week_8", "week_20", "week_52"]).delete()
    return late


def import_preview(user, patient):
    """An uploaded import's preview page with a change (the patient's birth year), computed in-process."""
    import csv
    import io

    from cohort import csvformat
    from reports import imports as import_jobs

    header, rows = csvformat.export_rows("patients", Patient.objects.filter(pk=patient.pk))
    rows[0][header.index("birth_year")] = "1979"
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *rows])
    job = import_jobs.import_upload(by=user, files={"patients.csv": text.getvalue().encode()})
    import_jobs.preview_run(job.pk)  # unless its wake-up ran it already (no broker: in-process)
    job.refresh_from_db()
    assert job.status == job.Status.READY, job.errors
    return job


def pages_per_role(people, patient) -> dict:
    """(user, [paths]) per role: every page kind the role may open."""
    late_patient(people)
    study_id = patient.study_id
    casebook = f"/patients/{study_id}/"
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    query = raise_query(
        patient=patient,
        form_key="week_8",
        row_id=week_8.pk,
        field="crp_mg_l",
        text="Please check the CRP.",
        by=people["coordinator"],
    )
    investigator = make_user("investigator", centre=people["centre_a"], role=Role.INVESTIGATOR)
    token_create(user=people["nurse_a"], name="R on the analysis laptop")  # the token list has a row
    preview = import_preview(people["coordinator"], patient)
    return {
        "nurse": (
            people["nurse_a"],
            [
                "/patients/",
                "/patients/new/",
                casebook,
                f"{casebook}forms/patient/",
                f"{casebook}forms/week_8/",
                f"{casebook}forms/follow_up/",
                f"{casebook}rows/adverse_events/",
                f"{casebook}rows/doses/",
                f"{casebook}history/",
                "/queries/",
                f"/queries/{query.pk}/",
                "/outcomes/",
                "/reports/",
                "/accounts/mfa/",
                "/accounts/api-tokens/",
                "/imports/",
            ],
        ),
        "investigator": (
            investigator,
            ["/patients/", casebook, f"{casebook}forms/week_8/", f"{casebook}sign/", "/outcomes/", "/reports/"],
        ),
        "coordinator": (
            people["coordinator"],
            [
                "/patients/",
                casebook,
                f"{casebook}forms/week_8/",
                "/queries/",
                f"/queries/{query.pk}/",
                "/locks/",
                "/outcomes/",
                "/reports/",
                "/imports/",
                f"/imports/{preview.pk}/",
            ],
        ),
        "admin": (
            people["admin"],
            ["/patients/", "/reports/", "/admin/", "/admin/cohort/membership/", "/admin/cohort/centre/add/"],
        ),
    }


def violations(browser_page) -> list[str]:
    """axe-core's WCAG 2.1 A/AA (and best-practice) violations on the page as shown, one line per element."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(browser_page, options={"runOnly": {"type": "tag", "values": RULES}})
    return [
        f"{v['id']} ({v['impact']}): {node['target']} {node.get('failureSummary', '')[:200]!r}"
        for v in results.response["violations"]
        for node in v["nodes"]
    ]


@pytest.mark.parametrize("page", LANGUAGES, indirect=True)
@pytest.mark.django_db(transaction=True)
def test_axe_finds_no_wcag_violation_on_any_page_of_any_role(page, live_server, people, patient):  # noqa: F811
    page.goto(f"{live_server.url}/accounts/login/")
    found = {"login": violations(page)}
    for role, (user, paths) in pages_per_role(people, patient).items():
        signed_in(page, live_server, user)
        for path in paths:
            response = page.goto(f"{live_server.url}{path}")
            assert response.status == 200, (role, path)
            found[f"{role} {path}"] = violations(page)
    found = {where: problems for where, problems in found.items() if problems}
    assert found == {}, "\n".join(f"{where}: {problems}" for where, problems in found.items())


@pytest.mark.parametrize("page", LANGUAGES, indirect=True)
@pytest.mark.django_db(transaction=True)
def test_a_failed_save_moves_the_focus_to_a_summary_linking_each_invalid_field(page, live_server, people, patient):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    dutch = page.evaluate("navigator.language") == "nl-NL"
    signed_in(page, live_server, people["nurse_a"])

    # Enrolment sent empty: the summary has the focus and names every required field.
    page.goto(f"{live_server.url}/patients/new/")
    page.locator("form.crf-form button[type=submit]").click()
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Er is niets opgeslagen" if dutch else "Nothing was saved")
    links = summary.locator("a[data-field]")
    invalid = page.locator("form.crf-form .is-invalid:not([type=hidden])")
    expect(links).to_have_count(invalid.count())
    assert links.count() >= 5
    # The first link takes the focus into its field; the field's message is beside it, not in the summary.
    first = links.first.get_attribute("data-field")
    links.first.click()
    expect(page.locator(f'form.crf-form [name="{first}"]')).to_be_focused()
    assert summary.locator(".invalid-feedback").count() == 0
    assert violations(page) == []
    shot(page, f"a11y-error-summary-enrol-{'nl' if dutch else 'en'}")

    # A complete form changed to an impossible CRP: every problem in one summary, each linked.
    page.goto(f"{live_server.url}/patients/{patient.study_id}/forms/week_8/")
    page.locator('form.crf-form [name="crp_mg_l"]').fill("900")
    page.get_by_role("button", name="Opslaan" if dutch else "Save", exact=True).click()
    expect(summary).to_be_focused()
    crp = summary.locator('a[data-field="crp_mg_l"]')
    expect(crp).to_have_text("C-reactief proteïne (mg/L)" if dutch else "C-reactive protein (mg/L)")
    crp.click()
    expect(page.locator('form.crf-form [name="crp_mg_l"]')).to_be_focused()
    assert violations(page) == []
    shot(page, f"a11y-error-summary-week8-{'nl' if dutch else 'en'}")


# The ward PC's 1366 px for the screenshots, a tablet and a phone.
WIDTHS = {"desktop": 1366, "tablet": 768, "phone": 390}


def scrolls_sideways(browser_page) -> bool:
    return browser_page.evaluate("document.scrollingElement.scrollWidth > window.innerWidth")


# The elements that stick out on the right, outermost first: what to fix when a page scrolls.
STICKING_OUT = """Array.from(document.querySelectorAll("body *"))
  .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1)
  .filter(el => !(el.parentElement.closest(".table-responsive")))
  .slice(0, 4).map(el => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`).join(" > ")"""


# The patient list's cells a nurse must see on any screen, by their place in a row.
KEY_CELLS = {"study ID": 1, "next visit": 4, "overdue": 5, "flags": 6, "queries": 7}


def key_columns_in_view(browser_page, width: int) -> list[str]:
    """The key cells of the list's rows that are hidden or off-screen (none should be)."""
    missing = []
    for name, position in KEY_CELLS.items():
        for cell in browser_page.locator(f"#patients tbody tr > td:nth-child({position})").all():
            box = cell.bounding_box()
            if not cell.is_visible() or box is None or box["x"] + box["width"] > width:
                missing.append(name)
    return missing


@pytest.mark.parametrize("page", LANGUAGES, indirect=True)
@pytest.mark.django_db(transaction=True)
def test_no_sideways_scroll_on_a_tablet_or_phone_and_the_lists_key_columns_show(page, live_server, people, patient):  # noqa: F811
    language = "nl" if page.evaluate("navigator.language") == "nl-NL" else "en"
    kinds = pages_per_role(people, patient)
    checked = {"nurse": kinds["nurse"], "coordinator": kinds["coordinator"]}
    wide = []
    for width_name, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        for role, (user, paths) in checked.items():
            signed_in(page, live_server, user)
            for path in paths:
                page.goto(f"{live_server.url}{path}")
                if scrolls_sideways(page):
                    width_now = page.evaluate("document.scrollingElement.scrollWidth")
                    wide.append(f"{role} {path} at {width} px: {width_now} px, {page.evaluate(STICKING_OUT)}")
                if path == "/patients/":
                    assert key_columns_in_view(page, width) == [], (role, width)
                if width_name == "phone":  # the stacked layouts are checked by axe too
                    wide.extend(f"{role} {path} at {width} px: {problem}" for problem in violations(page))
                name = path.strip("/").replace("/", "-") or "home"
                shot(page, f"a11y-{width_name}-{language}-{role}-{name}")
    assert wide == [], "\n".join(wide)


@pytest.mark.parametrize("page", LANGUAGES, indirect=True)
@pytest.mark.django_db(transaction=True)
def test_the_first_tab_offers_a_skip_link_and_focus_is_visible_on_the_navbar(page, live_server, people, patient):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    dutch = page.evaluate("navigator.language") == "nl-NL"
    signed_in(page, live_server, people["nurse_a"])
    page.goto(f"{live_server.url}/patients/{patient.study_id}/forms/week_8/")

    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Direct naar de inhoud" if dutch else "Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()
    assert skip.bounding_box()["width"] > 50  # shown, not the 1 px of a visually hidden link
    shot(page, f"a11y-skip-link-{'nl' if dutch else 'en'}")
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()
    # The next Tab reaches the page's own content, not the navbar.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('main') !== null")

    # A focused navbar link has a white outline, visible on the blue.
    page.get_by_role("link", name="Patiënten" if dutch else "Patients", exact=True).first.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineColor]; })()"
    )
    assert outline == ["solid", "rgb(255, 255, 255)"]
