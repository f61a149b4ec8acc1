"""A Dutch nurse in a real browser (tests/test_browser.py's Chromium, nl-NL): the change history
names the form with its visit, the field and the values as she typed them, in the one Dutch date
style; removing a completed row asks for the reason in Dutch. Screenshots at 1366, 768 and 390 px
go to test-output/screenshots/."""

from __future__ import annotations

import pytest
from django.utils import translation

from cohort import crf
from cohort.models import Assessment, PriorBiologic
from cohort.services import crf_row_save
from tests.test_browser import page, sign_in  # noqa: F401 - the Chromium fixture

WIDTHS = (1366, 768, 390)


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_a_dutch_nurse_reads_the_history_in_her_words(page, live_server, people, patient):  # noqa: F811
    from playwright.sync_api import expect

    from tests.test_browser import TIMEOUT_MS, shot

    expect.set_options(timeout=TIMEOUT_MS)
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    week_8.crp_mg_l = "12.5"
    crf_row_save(row=week_8, by=people["nurse_a"], expected_version=week_8.version, reason="typfout")
    with translation.override("nl"):
        form = str(crf.BY_KEY["week_8"].title)
        label = str(Assessment._meta.get_field("crp_mg_l").verbose_name)
    sign_in(page, live_server, people["nurse_a"])

    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/patients/{patient.study_id}/history/")
        expect(page.locator("html")).to_have_attribute("lang", "nl")
        change = page.locator(".history li li", has_text=label).first
        expect(change).to_have_text(f"{label}: 4,5 → 12,5")
        expect(page.locator(".history strong", has_text=form).first).to_be_visible()
        assert "crp_mg_l" not in page.content()
        # The automatic queries the save opened: their why in Dutch, by the automatic check.
        shown = page.locator("main, body").first.inner_text()
        assert "is marked incomplete" not in shown
        assert "infliximab (1 jan 2015 – 1 jan 2018)" in shown  # a row's name in Dutch too
        shot(page, f"dutch-history-{width}")
        assert page.evaluate("document.documentElement.scrollWidth") <= width


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_removing_a_completed_row_asks_for_the_reason_in_dutch(page, live_server, people, patient):  # noqa: F811
    from playwright.sync_api import expect

    from tests.test_browser import TIMEOUT_MS

    expect.set_options(timeout=TIMEOUT_MS)
    row = PriorBiologic.objects.filter(patient=patient).first()
    PriorBiologic.objects.filter(pk=row.pk).update(form_status="complete")
    sign_in(page, live_server, people["nurse_a"])
    page.goto(f"{live_server.url}/patients/{patient.study_id}/rows/prior_biologics/")
    asked = []

    def answer(dialog):
        asked.append(dialog.message)
        dialog.dismiss()  # she changes her mind: nothing is removed

    page.on("dialog", answer)
    page.locator("form.js-confirm button").first.click()

    expect(page.locator("form.js-confirm").first).to_be_visible()
    with translation.override("nl"):
        expected = f"{translation.gettext('Remove this row?')}\n{translation.gettext('Reason for change')}:"
    assert asked == [expected]
    assert "Remove" not in asked[0] and "Reason" not in asked[0]
    assert PriorBiologic.objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_the_casebook_and_the_list_read_dutch_dates_and_numbers(page, live_server, people, patient):  # noqa: F811
    """Screenshots to look at; the one date style on the casebook page (the Dutch text itself is
    tests/test_dutch.py's)."""
    from playwright.sync_api import expect

    from tests.test_browser import TIMEOUT_MS, shot

    expect.set_options(timeout=TIMEOUT_MS)
    sign_in(page, live_server, people["nurse_a"])
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/patients/{patient.study_id}/")
        expect(page.locator("html")).to_have_attribute("lang", "nl")
        expect(page.locator("body")).to_contain_text("1 mrt 2022")  # the re-induction, in the one style
        shot(page, f"dutch-casebook-{width}")
        page.goto(f"{live_server.url}/patients/")
        shot(page, f"dutch-list-{width}")


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_a_dutch_nurse_uploads_previews_and_applies_an_import(page, live_server, people, patient, tmp_path, settings):  # noqa: F811
    """Issue 15 item 4: upload -> preview (each change with its Dutch label, a code with its label) -> apply."""
    import csv
    import io

    from playwright.sync_api import expect

    from cohort import csvformat
    from cohort.models import Patient
    from tests.test_browser import TIMEOUT_MS, shot

    settings.MEDIA_ROOT = tmp_path / "media"
    expect.set_options(timeout=TIMEOUT_MS)
    header, rows = csvformat.export_rows("patients", Patient.objects.filter(pk=patient.pk))
    rows[0][header.index("birth_year")] = "1979"
    rows[0][header.index("montreal_location")] = "L1"
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *rows])
    upload = tmp_path / "patients.csv"
    upload.write_text(text.getvalue(), encoding="utf-8")
    with translation.override("nl"):
        birth_year = str(Patient._meta.get_field("birth_year").verbose_name)
        location = dict(Patient._meta.get_field("montreal_location").flatchoices)["L1"]
        location = f"{location} (L1)"
    sign_in(page, live_server, people["nurse_a"])

    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(f"{live_server.url}/patients/")
    page.get_by_role("link", name="Importeren").click()
    expect(page.locator("h1")).to_have_text("Importeren")
    page.get_by_label("Formulierbestanden").set_input_files(str(upload))
    shot(page, "dutch-import-upload")
    page.get_by_role("button", name="Uploaden en voorbeeld bekijken").click()
    expect(page.locator("#import-status")).to_have_text("klaar om toe te passen")
    section = page.locator(".import-patient", has_text=patient.study_id)
    expect(section.locator("tr", has_text=birth_year)).to_contain_text("1979")
    expect(section.locator("tr", has_text=location)).to_be_visible()
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        shot(page, f"dutch-import-preview-{width}")
    page.set_viewport_size({"width": 1366, "height": 900})
    page.get_by_role("button", name="Toepassen").click()  # no reason: asked for, nothing written
    assert Patient.objects.get(pk=patient.pk).birth_year != 1979
    page.get_by_label("Reden van wijziging").fill("Correctie uit het bronbestand")
    page.get_by_role("button", name="Toepassen").click()
    expect(page.locator("body")).to_contain_text("Geïmporteerd")
    expect(page.locator("#import-status")).to_have_text("toegepast")
    shot(page, "dutch-import-applied")
    assert Patient.objects.get(pk=patient.pk).birth_year == 1979


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_the_import_page_shows_progress_until_the_worker_has_the_preview(
    page,  # noqa: F811
    live_server,
    people,
    patient,
    tmp_path,
    settings,
):
    from playwright.sync_api import expect

    from reports import imports
    from reports.models import ImportJob
    from tests.test_browser import TIMEOUT_MS, shot
    from tests.test_import import COHORT

    settings.MEDIA_ROOT = tmp_path / "media"
    expect.set_options(timeout=TIMEOUT_MS)
    # Queued as the upload leaves it, with no worker yet: the page waits and shows how far it is.
    job = ImportJob.objects.create(
        uploaded_by=people["nurse_a"], centres=[people["centre_a"].pk], files=["patients.csv"], progress=0
    )
    imports.job_dir(job).mkdir(parents=True)
    (imports.job_dir(job) / "patients.csv").write_bytes((COHORT / "patients.csv").read_bytes())
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, progress=40, message="patients.csv")
    sign_in(page, live_server, people["nurse_a"])
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(f"{live_server.url}/imports/{job.pk}/")
    expect(page.locator("#import-status")).to_have_text("wordt gecontroleerd")
    expect(page.locator("#import-progress .progress")).to_have_attribute("aria-valuenow", "40")
    shot(page, "dutch-import-progress")
    ImportJob.objects.filter(pk=job.pk).update(progress=80, message="validating")
    expect(page.locator("#import-progress .progress")).to_have_attribute("aria-valuenow", "80")
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.QUEUED)
    imports.preview_run(job.pk)  # the worker
    expect(page.locator("#import-status")).to_have_text("bevat fouten")  # other centres' patients, for her
    expect(page.locator("#import-errors")).to_contain_text("patients.csv:")
    shot(page, "dutch-import-errors")


@pytest.mark.parametrize("page", ["nl-NL"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_the_import_page_shows_progress_while_the_worker_applies(
    page,  # noqa: F811
    live_server,
    people,
    patient,
    tmp_path,
    settings,
):
    """Apply is a worker job: the page shows it being applied, how far, then the applied import."""
    import csv
    import io

    from django.utils import timezone
    from playwright.sync_api import expect

    from cohort import csvformat
    from cohort.models import Patient
    from reports import imports
    from reports.models import ImportJob
    from tests.test_browser import TIMEOUT_MS, shot

    settings.MEDIA_ROOT = tmp_path / "media"
    expect.set_options(timeout=TIMEOUT_MS)
    header, rows = csvformat.export_rows("patients", Patient.objects.filter(pk=patient.pk))
    rows[0][header.index("birth_year")] = "1979"
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *rows])
    job = imports.import_upload(by=people["nurse_a"], files={"patients.csv": text.getvalue().encode()})
    assert ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.READY  # previewed in-process
    # Taken by a worker, 60 % written (what the worker's heartbeat reports).
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.APPLYING,
        reason="Correctie uit het bronbestand",
        claimed_by="a-worker",
        heartbeat_at=timezone.now(),
        progress=60,
        message="patients",
    )
    sign_in(page, live_server, people["nurse_a"])
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(f"{live_server.url}/imports/{job.pk}/")
    expect(page.locator("#import-status")).to_have_text("wordt toegepast")
    expect(page.locator("#import-progress h2")).to_have_text("De import wordt toegepast")
    expect(page.locator("#import-progress .progress")).to_have_attribute("aria-valuenow", "60")
    expect(page.locator("#import-progress")).to_contain_text("Correctie uit het bronbestand")
    shot(page, "dutch-import-applying")
    # That worker died; the sweep put it back in the queue and another one writes it.
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.APPLY_QUEUED)
    imports.apply_run(job.pk)
    expect(page.locator("#import-status")).to_have_text("toegepast")
    expect(page.locator("#import-applied")).to_contain_text("Geïmporteerd op")
    assert Patient.objects.get(pk=patient.pk).birth_year == 1979
