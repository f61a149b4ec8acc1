"""Reports and exports as jobs: requested in the browser, rendered by a worker, downloaded through
the access layer; a worker killed mid-render leaves no partial file and the job completes after a
restart, with exactly one file."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from cohort.models import Centre
from cohort.services import centre_create
from reports import jobs
from reports.models import ReportJob
from tests.base import login_as
from tests.conftest import point_at, start_beat, start_worker, stop, table_locked, wait_for, waiting_on_lock
from tests.test_browser import page  # noqa: F401 - the Chromium fixture

COHORT = Path(__file__).parent / "data" / "cohort31"


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def import_cohort31():
    for code in ("AMC", "UMCU", "RUMC"):
        if not Centre.objects.filter(code=code).exists():
            centre_create(code=code, name=f"Synthetic centre {code}")
    call_command("import_cohort", str(COHORT), stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_a_coordinator_generates_an_export_and_downloads_it(client, people, media):
    login_as(client, people["coordinator"])
    response = client.post(reverse("reports:report-request"), {"kind": "dictionary_csv", "scope": "all"})
    assert response.status_code == 302
    job = ReportJob.objects.get()
    # No broker configured: the job ran in-process once the request committed.
    assert (job.status, job.progress, job.requested_by) == ("done", 100, people["coordinator"])
    status = client.get(reverse("reports:job-status", args=[job.pk])).json()
    assert status["status"] == "done" and status["download_url"] == reverse("reports:job-download", args=[job.pk])
    download = client.get(status["download_url"])
    assert download.status_code == 200
    body = b"".join(download.streaming_content).decode()
    assert "study_id" in body and "montreal_location" in body
    listing = client.get(reverse("reports:report-list")).content.decode()
    assert f'data-job="{job.pk}" data-status="done"' in listing


@pytest.mark.django_db(transaction=True)
def test_another_centres_report_answers_404_and_a_forged_scope_is_refused(client, people, media):
    job = jobs.job_request(kind=ReportJob.Kind.DICTIONARY_CSV, scope="AMC", by=people["nurse_a"])
    job.refresh_from_db()
    assert job.status == "done"
    login_as(client, people["nurse_b"])
    for name in ("reports:job-status", "reports:job-download"):
        assert client.get(reverse(name, args=[job.pk])).status_code == 404
    assert client.get(reverse("reports:job-status", args=[job.pk + 1000])).status_code == 404
    assert f'data-job="{job.pk}"' not in client.get(reverse("reports:report-list")).content.decode()
    client.post(reverse("reports:report-request"), {"kind": "wide_csv", "scope": "AMC"})
    client.post(reverse("reports:report-request"), {"kind": "wide_csv", "scope": "all"})
    assert ReportJob.objects.count() == 1  # both refused: not her centre, not a coordinator


def render_waits_for(table: str, job: ReportJob) -> bool:
    """Whether the job's render has started and now waits for `table` (locked by the test)."""
    job.refresh_from_db()
    return job.status == "running" and job.progress > 0 and waiting_on_lock(table)


@pytest.mark.django_db(transaction=True)
def test_a_worker_taken_over_while_alive_does_not_overwrite_the_finished_job(people, media):
    """A worker whose claim was taken back (its heartbeat had stopped: stuck, not dead) goes on and
    finishes; it must neither mark the job nor leave a second file."""
    import threading

    from django.db import connections

    from reports import background

    import_cohort31()
    job = ReportJob.objects.create(kind=ReportJob.Kind.COHORT_PDF, scope="all", requested_by=people["coordinator"])
    outcome = {}

    def first_worker():
        try:
            outcome["first"] = jobs.job_run(job.pk)
        finally:
            connections.close_all()

    first = threading.Thread(target=first_worker)
    try:
        with table_locked("cohort_assessment"):  # the first worker's render waits here
            first.start()
            wait_for(lambda: render_waits_for("cohort_assessment", job), timeout=60, what="the render to wait")

            def taken_back() -> bool:  # what the sweep does once the heartbeat is CLAIM_STALE old
                stale = timezone.now() - background.CLAIM_STALE - dt.timedelta(seconds=1)
                ReportJob.objects.filter(pk=job.pk, status="running").update(heartbeat_at=stale)
                return jobs.take_back_lost() == [job.pk]

            wait_for(taken_back, timeout=30, what="the sweep to take the job back")
        # The lock is gone: the first worker renders on while a second one takes the job (attempt 2).
        second = jobs.job_run(job.pk)
        assert (second.status, second.attempts) == ("done", 2)
        finished = (second.file_name, second.file_size, second.finished_at)
    finally:
        first.join(timeout=120)
    assert outcome["first"] is None  # the first worker found it had been taken over
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("done", 2)
    assert (job.file_name, job.file_size, job.finished_at) == finished
    reports_dir = Path(media) / "reports"
    assert sorted(path.name for path in reports_dir.iterdir()) == [job.file_name]
    assert (reports_dir / job.file_name).read_bytes().startswith(b"%PDF-")


@pytest.mark.django_db(transaction=True)
def test_the_same_message_delivered_again_takes_its_job_over_and_removes_the_partial_file(people, media):
    """A pool child killed mid-render: acks late and rejected on worker loss, its message is delivered
    again, finds the job still claimed by its own task id and takes it over at once."""
    job = ReportJob.objects.create(kind=ReportJob.Kind.DICTIONARY_CSV, scope="all", requested_by=people["coordinator"])
    now = timezone.now()
    ReportJob.objects.filter(pk=job.pk).update(
        status="running", claimed_by="task-1", attempts=1, started_at=now, heartbeat_at=now
    )
    left = jobs.part_path(job, 1)
    left.write_bytes(b"study_id,cen")  # what the killed child had written

    assert jobs.job_run(job.pk, claim="task-2") is None  # another message: the claim is alive
    done = jobs.job_run(job.pk, claim="task-1")

    assert (done.status, done.attempts, done.claimed_by) == ("done", 2, "task-1")
    assert sorted(path.name for path in (Path(media) / "reports").iterdir()) == [done.file_name]


def finished(job: ReportJob) -> bool:
    job.refresh_from_db()
    return job.status in ("done", "failed")


def assert_one_whole_pdf(job: ReportJob, media: Path) -> None:
    assert job.status == "done", job.error
    reports_dir = Path(media) / "reports"
    assert sorted(path.name for path in reports_dir.iterdir()) == [job.file_name]  # no .part left
    pdf = reports_dir / job.file_name
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size == job.file_size
    assert job.attempts == 2


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_job_whose_worker_is_killed_mid_render_is_done_within_30_s_by_another(
    people, media, redis_server, test_database_url, celery_on_redis, tmp_path
):
    """The whole worker is SIGKILLed while its render waits (heartbeat beating): beat's sweep sees
    the heartbeat stop, queues the job again, and the second worker renders it."""
    import_cohort31()
    # A Redis database of its own, so the suite's shared worker cannot take this job.
    broker = redis_server.rsplit("/", 1)[0] + "/1"
    point_at(celery_on_redis, broker)
    log = tmp_path / "celery.log"
    first = start_worker(test_database_url, broker, log, name="first", MEDIA_ROOT=str(media))
    processes = [first, start_beat(test_database_url, broker, log)]
    try:
        with table_locked("cohort_assessment"):
            job = jobs.job_request(kind=ReportJob.Kind.COHORT_PDF, scope="all", by=people["coordinator"])

            def waiting_and_beating() -> bool:
                return render_waits_for("cohort_assessment", job) and job.heartbeat_at > job.started_at

            wait_for(waiting_and_beating, timeout=60, what="the render to wait, beating", log=log)
            processes.append(start_worker(test_database_url, broker, log, name="second", MEDIA_ROOT=str(media)))
            os.kill(first.pid, signal.SIGKILL)  # mid-render, no chance to clean up
            killed = time.monotonic()
            first.wait(timeout=10)
        assert not any(path.suffix == ".pdf" for path in (Path(media) / "reports").iterdir())
        wait_for(lambda: finished(job), timeout=60, what="the job to finish after the kill", log=log)
        took = time.monotonic() - killed
    finally:
        for process in processes:
            stop(process)
    print(f"report job done {took:.1f} s after its worker was killed")
    assert took < 30, took
    assert_one_whole_pdf(job, media)


def pool_children(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_job_whose_pool_child_is_killed_is_taken_over_at_once_without_the_sweep(
    people, media, redis_server, test_database_url, celery_on_redis, tmp_path
):
    """A prefork worker's child is SIGKILLed mid-render; no beat runs, so only the redelivered
    message (acks late, rejected on worker loss) can finish the job, and it does so at once."""
    import_cohort31()
    broker = redis_server.rsplit("/", 1)[0] + "/4"
    point_at(celery_on_redis, broker)
    log = tmp_path / "celery.log"
    worker = start_worker(test_database_url, broker, log, pool="prefork", name="prefork", MEDIA_ROOT=str(media))
    try:
        with table_locked("cohort_assessment"):
            job = jobs.job_request(kind=ReportJob.Kind.COHORT_PDF, scope="all", by=people["coordinator"])
            wait_for(lambda: render_waits_for("cohort_assessment", job), timeout=60, what="the render", log=log)
            (child,) = pool_children(worker.pid)
            os.kill(child, signal.SIGKILL)
            killed = time.monotonic()

        def taken_over() -> bool:
            job.refresh_from_db()
            return job.attempts >= 2

        wait_for(taken_over, timeout=60, what="the takeover", log=log)
        taken_over = time.monotonic() - killed
        wait_for(lambda: finished(job), timeout=60, what="the job to finish", log=log)
        took = time.monotonic() - killed
    finally:
        stop(worker)
    print(f"report job taken over {taken_over:.1f} s and done {took:.1f} s after its pool child was killed")
    assert taken_over < 10, taken_over
    assert_one_whole_pdf(job, media)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_a_coordinator_follows_a_report_to_done_and_downloads_it(
    page,  # noqa: F811 - the Chromium fixture
    live_server,
    people,
    media,
    redis_server,
    test_database_url,
    celery_on_redis,
    tmp_path,
):
    """Real Chromium, a real worker: 'Generate', then queued / rendering with progress and done on
    the same page (no reload), then the download is the PDF. Screenshots in test-output/."""
    from django.test import Client
    from playwright.sync_api import expect

    from tests.test_browser import TIMEOUT_MS, shot

    import_cohort31()
    broker = redis_server.rsplit("/", 1)[0] + "/2"  # a worker of its own
    point_at(celery_on_redis, broker)
    log = tmp_path / "browser-worker.log"
    worker = start_worker(test_database_url, broker, log, MEDIA_ROOT=str(media))
    hold = table_locked("cohort_assessment")  # the render waits there until the page shows progress
    try:
        client = login_as(Client(), people["coordinator"])  # MFA verified in this session
        page.context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
        )
        page.goto(f"{live_server.url}{reverse('reports:report-list')}")
        page.evaluate("window.notReloaded = true")
        page.select_option("#id_kind", "cohort_pdf")
        page.select_option("#id_scope", "all")
        with hold:
            page.click("#report-request button[type=submit]")
            page.evaluate("window.notReloaded = true")  # the redirect after the POST loaded the page once
            row = page.locator("#jobs tr[data-job]").first
            expect(row.locator(".job-badge")).to_have_text("rendering", timeout=60_000)
            expect(row.locator(".job-progress")).to_be_visible()
            shot(page, "20-reports-rendering")
        expect(row.locator(".job-badge")).to_have_text("done", timeout=120_000)
        expect(row.locator(".job-progress")).to_be_hidden()
        assert page.evaluate("window.notReloaded === true"), "the page reloaded to show the result"
        job = ReportJob.objects.get()
        assert job.data_version is not None  # the import's changes
        expect(row.locator(".job-data-version")).to_have_text(str(job.data_version))
        shot(page, "21-reports-done")
        with page.expect_download(timeout=TIMEOUT_MS) as download:
            row.get_by_role("link", name="Download").click()
        body = Path(download.value.path()).read_bytes()
    finally:
        stop(worker)

    job.refresh_from_db()
    assert (job.kind, job.scope, job.status, job.requested_by) == ("cohort_pdf", "all", "done", people["coordinator"])
    assert body.startswith(b"%PDF-") and len(body) == job.file_size
    assert download.value.suggested_filename.endswith(".pdf")
