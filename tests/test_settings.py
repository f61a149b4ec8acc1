"""The settings module in production shape: refuses to start without a real SECRET_KEY, and
`manage.py check --deploy` is clean (SPEC section 9).

Each case runs in a fresh interpreter, because settings are read once at import. DATABASE_URL
points at the test database, so no embedded server is started and nothing connects to it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
SETUP = "import django; django.setup(); from django.conf import settings; print('DEBUG', settings.DEBUG)"


@pytest.fixture
def production_env(test_database_url) -> dict[str, str]:
    """The environment of a production process: DEBUG off, DATABASE_URL set, nothing else of ours."""
    ours = ("SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "CELERY_", "EMBEDDED_PG_", "EMAIL_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(ours)}
    env.update(DJANGO_SETTINGS_MODULE="cohort.settings", DATABASE_URL=test_database_url, DEBUG="0")
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def test_it_refuses_to_start_without_secret_key(production_env):
    result = run(["-c", SETUP], production_env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY must be set" in result.stderr


def test_it_refuses_a_short_secret_key(production_env):
    result = run(["-c", SETUP], {**production_env, "SECRET_KEY": "too-short"})

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_it_starts_with_a_long_secret_key(production_env):
    result = run(["-c", SETUP], {**production_env, "SECRET_KEY": secrets.token_urlsafe(50)})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "DEBUG False"


def test_collectstatic_without_a_database_starts_no_server(tmp_path):
    """An image build runs collectstatic with no database: importing the settings must not start
    the embedded PostgreSQL (it starts on the first connection)."""
    pgdata = tmp_path / "postgres"
    ours = ("SECRET_KEY", "DEBUG", "DATABASE_", "CELERY_", "EMBEDDED_PG_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(ours)}
    env.update(
        DJANGO_SETTINGS_MODULE="cohort.settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        STATIC_ROOT=str(tmp_path / "static"),
        EMBEDDED_PG_DIR=str(pgdata),
    )

    result = run(["manage.py", "collectstatic", "--noinput", "-v", "1"], env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "static files copied" in result.stdout
    assert (tmp_path / "static" / "staticfiles.json").exists()
    assert not pgdata.exists()


def test_it_passes_the_deployment_checks(production_env):
    env = {**production_env, "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "example.org"}

    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_collects_the_static_files_for_production(production_env, tmp_path):
    # What the image build does (Dockerfile): every file, its hashed copy, and compressed ones.
    env = {**production_env, "SECRET_KEY": secrets.token_urlsafe(50), "STATIC_ROOT": str(tmp_path)}

    result = run(["manage.py", "collectstatic", "--noinput"], env)

    assert result.returncode == 0, result.stdout + result.stderr
    manifest = (tmp_path / "staticfiles.json").read_text()
    assert "vendor/bootstrap/bootstrap.min.css" in manifest and "css/report.css" in manifest
    assert list(tmp_path.glob("vendor/bootstrap/bootstrap.min.*.css.gz"))


def test_it_sends_mail_through_the_smtp_server_of_the_environment(production_env):
    show = SETUP + "; print(settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS)"
    secret = {"SECRET_KEY": secrets.token_urlsafe(50)}
    smtp = {"EMAIL_HOST": "smtp.example.org", "EMAIL_PORT": "2525", "EMAIL_USE_TLS": "0"}

    configured = run(["-c", show], {**production_env, **secret, **smtp})
    unset = run(["-c", show], {**production_env, **secret})

    smtp_line = "django.core.mail.backends.smtp.EmailBackend smtp.example.org 2525 False"
    assert configured.stdout.splitlines()[-1] == smtp_line
    assert unset.stdout.splitlines()[-1].startswith("django.core.mail.backends.console.EmailBackend")


def test_a_gunicorn_worker_loads_every_view_at_boot_and_freezes_what_it_loaded(production_env):
    """cohort.wsgi, what each gunicorn worker imports: the URLconf and the views are imported before
    the first request (a broken import stops the worker at boot), and the loaded heap is frozen, out
    of the garbage collector's full collections (docs/benchmarks.md)."""
    production_env["SECRET_KEY"] = secrets.token_urlsafe(50)
    boot = "import gc, sys; import cohort.wsgi; print(gc.get_freeze_count(), 'cohort.views' in sys.modules)"

    result = run(["-c", boot], production_env)

    assert result.returncode == 0, result.stderr
    frozen, views_loaded = result.stdout.split()
    assert int(frozen) > 50_000
    assert views_loaded == "True"
