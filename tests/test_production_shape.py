"""The production shape, run as `docker compose up` runs it, without a Docker engine (SPEC section 6).

Each service of docker-compose.yml (migrate, web, worker, beat) runs its compose command in its own
copy of the project tree, prepared only by what the Dockerfile does at build time (its `RUN ...
manage.py ...` steps, with no database reachable), so nothing one process made on its filesystem
is seen by another; only the media volume is shared, as in compose. DEBUG is off, the SECRET_KEY is
generated, the database is a fresh one on the test PostgreSQL server with an owner role (migrate)
and an app role (everything else), the broker is the test Redis, gunicorn serves the web, and TLS
redirect and secure cookies are off (standing for the TLS proxy in front).

Then, over HTTP only: a nurse signs in, saves a form and imports a change through the import
page (previewed and applied by the worker from the media volume); a coordinator signs in with a TOTP code,
sees the dashboard reach the data version of that save, generates the cohort PDF and an SPSS export
and downloads both; static files come compressed with far-future cache headers; no log shows a
traceback. Then the same reports with two workers: each rendered exactly once.
"""

from __future__ import annotations

import csv
import http.cookiejar
import io
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import psycopg2
import pytest
import yaml

from tests.conftest import BASE_DIR, free_port, stop, tail, wait_for

pytestmark = pytest.mark.services

VENV_BIN = Path(sys.executable).parent
PASSWORD = "production-shape-password-1"
TOTP_KEY = "3132333435363738393031323334353637383930"  # hex, as django-otp stores it
DEADLINE = 120  # seconds for anything to happen; every wait polls a condition


# ---------------------------------------------------------------------------------------------
# The containers


def compose_command(service: str) -> list[str]:
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    command = compose["services"][service]["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def build_steps() -> list[str]:
    """The Dockerfile's RUN instructions after `COPY . .` that run the project (manage.py)."""
    text = re.sub(r"\\\n\s*", " ", (BASE_DIR / "Dockerfile").read_text())
    after_copy = text.split("\nCOPY . .\n", 1)[1]
    steps = [line[4:].strip() for line in after_copy.splitlines() if line.startswith("RUN ")]
    return [step for step in steps if "manage.py" in step]


def project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=BASE_DIR,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (BASE_DIR / name).is_file()]


def base_env(home: Path) -> dict[str, str]:
    """A container's environment: the image's PATH and nothing of this test process's settings."""
    keep = ("LANG", "LC_ALL", "TZ")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        HOME=str(home),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        DJANGO_SETTINGS_MODULE="cohort.settings",
    )
    return env


def build_image(root: Path) -> Path:
    """`docker build`: the project's files, then the Dockerfile's build steps, with no database, no
    broker and no .env. Returns the image's /app."""
    image = root / "image" / "app"
    for relative in project_files():
        target = image / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(BASE_DIR / relative, target)
    steps = build_steps()
    assert steps, "the Dockerfile runs no manage.py step (collectstatic) at build time"
    for step in steps:
        home = root / "image" / "tmp"
        home.mkdir(exist_ok=True)
        result = subprocess.run(
            ["sh", "-c", step], cwd=image, env=base_env(home), capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"build step {step!r} failed:\n{result.stdout}\n{result.stderr}"
    # The build reaches no database and starts none (an embedded server would live here).
    assert not (image / "var" / "postgres").exists(), "the image build started a database server"
    return image


class Container:
    """One service: its own copy of the image's files, its own /tmp, its log."""

    def __init__(self, image: Path, name: str):
        root = image.parent.parent
        self.name = name
        self.app = root / name / "app"
        self.tmp = root / name / "tmp"
        self.log = root / name / "log.txt"
        self.process: subprocess.Popen | None = None
        self.tmp.mkdir(parents=True)
        shutil.copytree(image, self.app, symlinks=True)

    def run(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
        result = subprocess.run(argv, cwd=self.app, env=env, capture_output=True, text=True, timeout=600)
        with self.log.open("a") as out:
            out.write(f"$ {shlex.join(argv)}\n{result.stdout}{result.stderr}")
        assert result.returncode == 0, f"{self.name}: {shlex.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, cwd=self.app, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, timeout=30)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# ---------------------------------------------------------------------------------------------
# The database: a fresh one with an owner role, as the postgres container makes it


def with_database(url: str, database: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path=f"/{database}"))


@pytest.fixture
def database(test_database_url):
    """(owner URL, app URL) of a new, empty database owned by the owner role, as the postgres
    container makes it; the app role is the one the suite's own processes use."""
    owner_url = os.environ.get("DATABASE_OWNER_URL", "").strip() or os.environ["DATABASE_URL"]
    name = f"ps_{secrets.token_hex(4)}"
    admin = psycopg2.connect(with_database(owner_url, "postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield with_database(owner_url, name), with_database(test_database_url, name)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def query(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    conn.close()
    return rows


# ---------------------------------------------------------------------------------------------
# A browser without JavaScript: cookies, CSRF, forms


class FormParser(HTMLParser):
    """The fields of the first <form method=post> that holds `marker` (a field name)."""

    def __init__(self):
        super().__init__()
        self.forms: list[list[tuple[str, str]]] = []
        self._fields: list[tuple[str, str]] | None = None
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("method", "").lower() == "post":
            self._fields = []
        elif self._fields is None:
            return
        elif tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind not in ("submit", "button", "file"):
                self._fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select = a.get("name")
            self._fields.append((self._select, ""))
        elif tag == "option" and self._select and "selected" in a:
            self._fields[-1] = (self._select, a.get("value", ""))
        elif tag == "textarea":
            self._textarea = a.get("name")
            self._fields.append((self._textarea, ""))

    def handle_data(self, data):
        if self._textarea and self._fields:
            name, value = self._fields[-1]
            self._fields[-1] = (name, value + data)

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form" and self._fields is not None:
            self.forms.append(self._fields)
            self._fields = None


def form_fields(html: str, marker: str) -> dict[str, str]:
    parser = FormParser()
    parser.feed(html)
    for fields in parser.forms:
        if any(name == marker for name, _ in fields):
            return dict(fields)
    raise AssertionError(f"no form with a {marker!r} field")


class Browser:
    def __init__(self, base: str):
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def request(self, path: str, data: dict | None = None, headers: dict | None = None):
        """(status, headers, body, final URL); redirects are followed."""
        body = None
        if data is not None:
            token = next((c.value for c in self.cookies if c.name == "csrftoken"), "")
            body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, **data}).encode()
        req = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            with self.opener.open(req, timeout=60) as response:
                return response.status, response.headers, response.read(), response.url
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read(), error.url

    def get(self, path: str, **kwargs):
        return self.request(path, **kwargs)

    def upload(self, path: str, files: dict[str, tuple[str, bytes]]):
        """A multipart POST of files (field -> (file name, content)), as a file input sends them."""
        boundary = secrets.token_hex(16)
        token = next((c.value for c in self.cookies if c.name == "csrftoken"), "")
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n{token}\r\n'.encode()
        ]
        for field, (name, content) in files.items():
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            parts.append(f"{head}Content-Type: text/csv\r\n\r\n".encode() + content + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        req = urllib.request.Request(
            self.base + path, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        try:
            with self.opener.open(req, timeout=60) as response:
                return response.status, response.headers, response.read(), response.url
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read(), error.url

    def post(self, path: str, data: dict):
        return self.request(path, data=data)

    def sign_in(self, username: str) -> str:
        self.get("/accounts/login/")
        status, _headers, body, url = self.post("/accounts/login/", {"username": username, "password": PASSWORD})
        assert status == 200, body[-2000:]
        return url


def totp_now() -> str:
    from django_otp.oath import totp

    return f"{totp(bytes.fromhex(TOTP_KEY)):06d}"


# ---------------------------------------------------------------------------------------------
# The test

SETUP_ACCOUNTS = f"""
from django.contrib.auth.models import User
from django_otp.plugins.otp_totp.models import TOTPDevice
from cohort.models import Centre, Membership
nurse = User.objects.create_user("ps_nurse", password={PASSWORD!r})
Membership.objects.create(user=nurse, centre=Centre.objects.get(code="AMC"), role="nurse")
coordinator = User.objects.create_user("ps_coordinator", password={PASSWORD!r})
for centre in Centre.objects.all():
    Membership.objects.create(user=coordinator, centre=centre, role="coordinator")
TOTPDevice.objects.create(user=coordinator, name="phone", confirmed=True, key={TOTP_KEY!r})
"""


def request_report(browser: Browser, kind: str) -> int:
    status, _h, body, _url = browser.get("/reports/")
    before = set(map(int, re.findall(rb'data-job="(\d+)"', body)))
    status, _h, body, _url = browser.post("/reports/new/", {"kind": kind, "scope": "all"})
    assert status == 200
    new = set(map(int, re.findall(rb'data-job="(\d+)"', body))) - before
    assert len(new) == 1, f"expected one new job on the reports page, found {sorted(new)}"
    return new.pop()


def wait_for_job(browser: Browser, job_id: int) -> dict:
    def finished():
        status, _h, body, _url = browser.get(f"/reports/{job_id}/status.json")
        job = json.loads(body)
        assert job["status"] != "failed", job
        return job if job["status"] == "done" else None

    return wait_for(finished, timeout=DEADLINE, what=f"report job {job_id}")


def test_the_compose_services_work_together_over_http(tmp_path, database, redis_server):
    owner_url, app_url = database
    broker = redis_server.rsplit("/", 1)[0] + "/7"  # a database of its own: no other test's worker
    media = tmp_path / "media-volume"
    media.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    image = build_image(tmp_path)
    containers = {name: Container(image, name) for name in ("migrate", "web", "worker", "beat")}

    def env_of(container: Container, **extra) -> dict[str, str]:
        return {
            **base_env(container.tmp),
            "DEBUG": "0",
            "SECRET_KEY": secret_key,
            "ALLOWED_HOSTS": "127.0.0.1",
            "CSRF_TRUSTED_ORIGINS": base,
            "SECURE_SSL_REDIRECT": "0",  # the TLS proxy's part
            "SECURE_COOKIES": "0",
            "DATABASE_URL": app_url,
            "CELERY_BROKER_URL": broker,
            "MEDIA_ROOT": str(media),
            **extra,
        }

    def service_argv(container: Container, *replace: tuple[str, str]) -> list[str]:
        argv = compose_command(container.name)
        for old, new in replace:
            argv = [new if part == old else part for part in argv]
        return argv

    secret_key = secrets.token_urlsafe(50)
    try:
        # migrate: the owner's credentials, once.
        migrate = containers["migrate"]
        migrate.run(compose_command("migrate"), env_of(migrate, DATABASE_OWNER_URL=owner_url))

        web = containers["web"]
        web_env = env_of(web)
        for code, name in (("AMC", "Synthetic Centre A"), ("UMCU", "Synthetic Centre B"), ("RUMC", "Synthetic C")):
            web.run(["python", "manage.py", "create_centre", code, name], web_env)
        web.run(["python", "manage.py", "import_cohort", "tests/data/cohort31"], web_env)
        web.run(["python", "manage.py", "shell", "-c", SETUP_ACCOUNTS], web_env)

        web.start(service_argv(web, ("0.0.0.0:8000", f"127.0.0.1:{port}")), web_env)
        worker = containers["worker"]
        worker.start(service_argv(worker) + ["-n", "worker1@%h"], env_of(worker))
        beat = containers["beat"]
        beat.start(
            service_argv(
                beat,
                ("/tmp/celerybeat-schedule", str(beat.tmp / "schedule")),
                ("/tmp/celerybeat.pid", str(beat.tmp / "beat.pid")),
            ),
            env_of(beat),
        )
        browser = Browser(base)

        def healthy() -> bool:
            assert web.process.poll() is None, "gunicorn exited"
            try:
                return browser.get("/healthz")[0] == 200
            except urllib.error.URLError:  # not listening yet
                return False

        wait_for(healthy, timeout=DEADLINE, what="the web service's health check")
        status, _h, body, _url = browser.get("/healthz")
        assert json.loads(body) == {"database": "ok", "broker": "ok"}

        # A nurse signs in and saves a form.
        nurse = Browser(base)
        assert nurse.sign_in("ps_nurse").endswith("/patients/")
        form_url = "/patients/AMC-001/forms/follow_up/"
        status, _h, body, _url = nurse.get(form_url)
        assert status == 200
        fields = form_fields(body.decode(), "next_therapy")
        fields["next_therapy"] = "vedolizumab (production-shape test)"
        if "reason_for_change" in fields:
            fields["reason_for_change"] = "Correction from the source document."
        fields.pop("csrfmiddlewaretoken", None)
        status, _h, body, url = nurse.post(form_url, fields)
        assert status == 200 and not url.endswith(form_url), body.decode()[-3000:]
        assert query(
            owner_url,
            "SELECT next_therapy FROM cohort_followup f JOIN cohort_patient p "
            "ON p.id = f.patient_id WHERE p.study_id = 'AMC-001'",
        ) == [("vedolizumab (production-shape test)",)]
        ((version,),) = query(owner_url, "SELECT last_value FROM reports_data_version")

        # The nurse imports a change through the import page: the worker (another filesystem; the
        # upload on the media volume) checks the preview, then applies it with her reason.
        exported = tmp_path / "exported"
        web.run(["python", "manage.py", "export_cohort", str(exported)], web_env)
        header, *rows = csv.reader(io.StringIO((exported / "follow_up.csv").read_text(encoding="utf-8")))
        row = next(r for r in rows if r[0] == "AMC-002")
        row[header.index("next_therapy")] = "adalimumab (import test)"
        upload = io.StringIO()
        csv.writer(upload, lineterminator="\n").writerows([header, row])
        status, _h, body, url = nurse.upload("/imports/", {"files": ("follow_up.csv", upload.getvalue().encode())})
        assert status == 200 and re.search(r"/imports/\d+/$", url), body.decode()[-3000:]
        import_id = int(url.rstrip("/").rsplit("/", 1)[1])

        def import_state(*states: str):
            def reached():
                status, _h, body, _url = nurse.get(f"/imports/{import_id}/status/")
                state = json.loads(body)
                assert state["status"] not in ("failed", "invalid"), state
                return state if state["status"] in states else None

            return reached

        wait_for(import_state("ready"), timeout=DEADLINE, what=f"the preview of import {import_id}")
        status, _h, body, _url = nurse.get(f"/imports/{import_id}/")
        assert status == 200 and b"adalimumab (import test)" in body
        assert query(
            owner_url,
            "SELECT next_therapy FROM cohort_followup f JOIN cohort_patient p "
            "ON p.id = f.patient_id WHERE p.study_id = 'AMC-002'",
        ) != [("adalimumab (import test)",)], "the preview wrote"
        nurse.post(f"/imports/{import_id}/apply/", {"reason": "Follow-up corrected from the clinic letter."})
        wait_for(import_state("applied"), timeout=DEADLINE, what=f"import {import_id} applied")
        assert query(
            owner_url,
            "SELECT next_therapy FROM cohort_followup f JOIN cohort_patient p "
            "ON p.id = f.patient_id WHERE p.study_id = 'AMC-002'",
        ) == [("adalimumab (import test)",)]
        ((version,),) = query(owner_url, "SELECT last_value FROM reports_data_version")

        # A coordinator signs in with a TOTP code and sees the dashboard reach that version.
        coordinator = Browser(base)
        verify = urllib.parse.urlsplit(coordinator.sign_in("ps_coordinator"))
        assert verify.path == "/accounts/mfa/verify/"
        status, _h, body, url = coordinator.post(f"{verify.path}?{verify.query}", {"token": totp_now()})
        assert status == 200 and "/mfa/" not in url, body.decode()[-2000:]

        def dashboard_current():
            status, _h, body, _url = coordinator.get("/outcomes/all/status.json")
            state = json.loads(body)
            return state["data_version"] is not None and state["data_version"] >= version and not state["updating"]

        wait_for(dashboard_current, timeout=DEADLINE, what=f"the dashboard to reach data version {version}")
        status, _h, body, _url = coordinator.get("/outcomes/all/")
        assert status == 200 and b"31" in body

        # The monitoring loop (SPEC section 10): the coordinator raises a query on the week-8 CRP,
        # the nurse corrects it and answers in one save, the coordinator closes it, verifies the
        # visit and locks the casebook; then the nurse's next save is refused by the lock.
        ((week_8, crp),) = query(
            owner_url,
            "SELECT a.id, a.crp_mg_l FROM cohort_assessment a JOIN cohort_patient p ON p.id = a.patient_id"
            " WHERE p.study_id = 'AMC-001' AND a.visit = 'week_8'",
        )
        status, _h, body, _url = coordinator.post(
            "/patients/AMC-001/queries/new/",
            {"form": "week_8", "row": str(week_8), "field": "crp_mg_l", "text": "Please check this CRP."},
        )
        assert status == 200 and b"raised" in body, body.decode()[-2000:]
        ((query_id,),) = query(owner_url, "SELECT id FROM cohort_query WHERE row_id = %s", (week_8,))
        week_8_url = "/patients/AMC-001/forms/week_8/"
        status, _h, body, _url = nurse.get(week_8_url)
        assert b"Please check this CRP." in body
        fields = form_fields(body.decode(), "crp_mg_l")
        fields.pop("csrfmiddlewaretoken", None)
        fields["crp_mg_l"] = "7.5" if str(crp) != "7.50" else "8.5"
        fields[f"answer_{query_id}"] = "Corrected from the lab report."
        status, _h, body, url = nurse.post(week_8_url, fields)
        assert status == 200 and not url.endswith(week_8_url), body.decode()[-3000:]
        assert query(owner_url, "SELECT state FROM cohort_query WHERE id = %s", (query_id,)) == [("answered",)]
        coordinator.post(f"/queries/{query_id}/", {"action": "close", "text": "Thank you."})
        coordinator.post("/patients/AMC-001/verify/", {"column": "week_8"})
        coordinator.post("/patients/AMC-001/lock/", {"reason": "monitoring visit done"})
        assert query(owner_url, "SELECT state FROM cohort_query WHERE id = %s", (query_id,)) == [("closed",)]
        assert query(owner_url, "SELECT count(*) FROM cohort_verification WHERE row_id = %s", (week_8,)) == [(1,)]
        status, _h, body, _url = nurse.get(week_8_url)
        assert b"lock-banner" in body
        del fields[f"answer_{query_id}"]
        fields["crp_mg_l"], fields["version"] = "99", str(int(fields["version"]) + 1)
        fields["reason_for_change"] = "a change the lock must refuse"
        status, _h, body, url = nurse.post(week_8_url, fields)
        assert status == 200 and b"record is locked" in body, body.decode()[-3000:]
        ((crp_now,),) = query(owner_url, "SELECT crp_mg_l FROM cohort_assessment WHERE id = %s", (week_8,))
        assert crp_now != 99
        # The automatic queries, as the beat job runs them: twice opens nothing twice.
        first = web.run(["python", "manage.py", "data_checks"], web_env).stdout
        again = web.run(["python", "manage.py", "data_checks"], web_env).stdout
        assert re.match(r"data_checks: \d+ opened, \d+ closed, \d+ open", first), first
        assert again.startswith("data_checks: 0 opened"), again

        # The cohort PDF and the SPSS export, rendered by the worker, downloaded through the web.
        pdf_job = request_report(coordinator, "cohort_pdf")
        sav_job = request_report(coordinator, "wide_sav")
        for job_id, suffix in ((pdf_job, ".pdf"), (sav_job, ".sav")):
            wait_for_job(coordinator, job_id)
            status, headers, content, _url = coordinator.get(f"/reports/{job_id}/download/")
            assert status == 200
            path = tmp_path / f"download-{job_id}{suffix}"
            path.write_bytes(content)
        import pdfplumber
        import pyreadstat

        with pdfplumber.open(tmp_path / f"download-{pdf_job}.pdf") as document:
            assert len(document.pages) >= 3
            assert "Cohort report" in (document.pages[0].extract_text() or "")
        frame, meta = pyreadstat.read_sav(str(tmp_path / f"download-{sav_job}.sav"))
        assert len(frame) == 31 and "study_id" in meta.column_names

        # Static files: compressed, cached for ever (their names change with their content).
        status, _h, body, _url = browser.get("/accounts/login/")
        (css,) = re.findall(rb'href="(/static/vendor/bootstrap/bootstrap\.min\.[0-9a-f]{12}\.css)"', body)
        status, headers, _content, _url = browser.get(css.decode(), headers={"Accept-Encoding": "gzip"})
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        assert "max-age=315360000" in headers["Cache-Control"] and "immutable" in headers["Cache-Control"]

        # Two workers: each report is rendered exactly once.
        worker.stop()
        second = Container(image, "worker-2")
        worker.start(service_argv(worker) + ["-n", "worker1@%h"], env_of(worker))
        second.start(compose_command("worker") + ["-n", "worker2@%h"], env_of(second))
        jobs = [request_report(coordinator, "cohort_pdf") for _ in range(4)]
        for job_id in jobs:
            wait_for_job(coordinator, job_id)
        rows = query(owner_url, "SELECT id, attempts, file_name FROM reports_reportjob WHERE id = ANY(%s)", (jobs,))
        assert sorted((job_id, attempts) for job_id, attempts, _name in rows) == [
            (job_id, 1) for job_id in sorted(jobs)
        ]
        files = sorted(path.name for path in (media / "reports").iterdir())
        assert not [name for name in files if name.endswith(".part")]
        for job_id, _attempts, name in rows:
            assert [f for f in files if f.startswith(f"{job_id}-")] == [name]
        containers["worker-2"] = second

        # What the operator reads: a JSON line per request and per task, and no traceback anywhere.
        web.stop()
        assert '"event":"request"' in web.text()
        assert '"event":"task"' in worker.text() + second.text()
    except BaseException:
        for container in containers.values():
            sys.stderr.write(f"\n----- {container.name} log -----\n{tail(container.log, 60)}\n")
        raise
    finally:
        for container in containers.values():
            container.stop()
    for container in containers.values():
        assert "Traceback" not in container.text(), f"{container.name} logged a traceback:\n{tail(container.log)}"
