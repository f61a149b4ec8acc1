"""Reports and exports as jobs: requested in the browser, rendered by a worker, downloaded through
the access layer; a worker killed mid-render leaves no partial file and the job completes after a
restart, with exactly one file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from cohort.models import Centre
from cohort.services import centre_create
from reports import jobs
from reports.models import ReportJob
from tests.base import login_as
from tests.conftest import BASE_DIR, stop, tail
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


def start_worker(database_url: str, broker: str, log: Path, **env_extra) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "EMBEDDED_PG_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="cohort.settings",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker,
        CELERY_RESULT_BACKEND=broker,
        DEBUG="1",
        PYTHONUNBUFFERED="1",
        **env_extra,
    )
    node = f"crash-{time.monotonic_ns()}@{socket.gethostname()}"
    command = [sys.executable, "-m", "celery", "-A", "cohort", "worker", "--pool=solo", "-l", "info", "-n", node]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    out = log.open("ab")
    return subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout=60, what="condition", log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout} s" + (f"\n{tail(log)}" if log else ""))


@pytest.mark.django_db(transaction=True)
def test_a_slow_worker_taken_over_by_another_does_not_overwrite_the_finished_job(people, media, settings):
    """A worker that stops reporting progress (slow, not dead) is taken over after the stale time;
    when it finishes, it must neither mark the job nor leave a second file."""
    import threading

    from django.db import connections

    import_cohort31()
    job = ReportJob.objects.create(kind=ReportJob.Kind.COHORT_PDF, scope="all", requested_by=people["coordinator"])
    settings.REPORT_JOB_STAGE_DELAY = 1.0  # the first worker is slow at every stage
    outcome = {}

    def slow_worker():
        try:
            outcome["first"] = jobs.job_run(job.pk)
        finally:
            connections.close_all()

    first = threading.Thread(target=slow_worker)
    first.start()
    try:
        wait_for(lambda: ReportJob.objects.filter(pk=job.pk, status="running", progress__gt=0).exists(), timeout=30)
        settings.REPORT_JOB_STALE_SECONDS = 0  # what the sweep decides after 120 s without progress
        settings.REPORT_JOB_STAGE_DELAY = 0
        # The sweep queues the job again and wakes a worker: without a broker that is this thread,
        # which takes the job (attempt 2) and finishes it while the first is still rendering.
        jobs.sweep()
        job.refresh_from_db()
        assert (job.status, job.attempts) == ("done", 2)
        finished = (job.file_name, job.file_size, job.finished_at)
    finally:
        first.join(timeout=60)
    assert outcome["first"] is None  # the slow worker found it had been taken over
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("done", 2)
    assert (job.file_name, job.file_size, job.finished_at) == finished
    reports_dir = Path(media) / "reports"
    assert sorted(path.name for path in reports_dir.iterdir()) == [job.file_name]
    assert (reports_dir / job.file_name).read_bytes().startswith(b"%PDF-")


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_render_leaves_no_partial_file_and_the_job_completes(
    people, media, settings, redis_server, test_database_url, celery_on_redis, tmp_path
):
    from tests.conftest import _drop_broker_connections

    import_cohort31()
    # A Redis database of its own, so the suite's shared worker cannot take this job.
    broker = redis_server.rsplit("/", 1)[0] + "/1"
    _drop_broker_connections(celery_on_redis)
    celery_on_redis.conf.update(broker_url=broker, result_backend=broker)
    media_env = {"MEDIA_ROOT": str(media)}
    log = tmp_path / "crash-worker.log"
    slow = start_worker(test_database_url, broker, log, REPORT_JOB_STAGE_DELAY="2", **media_env)
    try:
        job = jobs.job_request(kind=ReportJob.Kind.COHORT_PDF, scope="all", by=people["coordinator"])

        def rendering():
            job.refresh_from_db()
            return job.status == "running" and job.progress > 0

        wait_for(rendering, timeout=90, what="the render to start", log=log)
        os.kill(slow.pid, signal.SIGKILL)  # mid-render, no chance to clean up
        slow.wait(timeout=10)
    finally:
        stop(slow)

    reports_dir = Path(media) / "reports"
    assert not any(path.suffix == ".pdf" for path in reports_dir.iterdir()), "a partial report is visible"
    job.refresh_from_db()
    assert job.status == "running" and job.file_name == ""

    settings.REPORT_JOB_STALE_SECONDS = 1
    time.sleep(1.5)
    assert jobs.sweep() >= 1  # what beat does every 30 s: the job is queued again, its .part removed
    assert not any(reports_dir.glob(f"{job.pk}.*part"))
    fresh = start_worker(test_database_url, broker, log, **media_env)
    try:

        def finished():
            job.refresh_from_db()
            return job.status in ("done", "failed")

        wait_for(finished, timeout=120, what="the job to finish after the restart", log=log)
    finally:
        stop(fresh)
    assert job.status == "done", job.error
    files = sorted(path.name for path in reports_dir.iterdir())
    assert files == [job.file_name]
    pdf = reports_dir / job.file_name
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size == job.file_size
    assert job.attempts == 2


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

    from tests.conftest import _drop_broker_connections
    from tests.test_browser import TIMEOUT_MS, shot

    import_cohort31()
    broker = redis_server.rsplit("/", 1)[0] + "/2"  # a worker of its own, slowed so progress shows
    _drop_broker_connections(celery_on_redis)
    celery_on_redis.conf.update(broker_url=broker, result_backend=broker)
    log = tmp_path / "browser-worker.log"
    worker = start_worker(test_database_url, broker, log, REPORT_JOB_STAGE_DELAY="0.6", MEDIA_ROOT=str(media))
    try:
        client = login_as(Client(), people["coordinator"])  # MFA verified in this session
        page.context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
        )
        page.goto(f"{live_server.url}{reverse('reports:report-list')}")
        page.evaluate("window.notReloaded = true")
        page.select_option("#id_kind", "cohort_pdf")
        page.select_option("#id_scope", "all")
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
