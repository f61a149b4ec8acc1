"""What an operator watches: GET /healthz and one structured log line per request (SPEC section 6)."""

from __future__ import annotations

import json
import logging
import time

import pytest
from django.urls import reverse

from tests.conftest import free_port

pytestmark = pytest.mark.django_db


def test_the_health_check_answers_without_a_login(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "not configured (tasks run in-process)"}
    assert response["Cache-Control"] == "no-store"


def test_the_health_check_answers_plain_http_on_any_host_in_production(client, settings):
    # The container's own check calls http://127.0.0.1:8000/healthz: no HTTPS redirect, no 400.
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["ecrf.example.org"]

    response = client.get("/healthz", HTTP_HOST="127.0.0.1:8000")

    assert response.status_code == 200
    assert client.get(reverse("login"), HTTP_HOST="127.0.0.1:8000").status_code == 400  # everything else checks


def test_the_health_check_reports_a_broker_that_is_down_without_failing(client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["database"] == "ok"
    assert response.json()["broker"].startswith("unreachable")
    assert time.monotonic() - started < 2


def test_every_request_is_logged_once_with_user_status_and_duration(client, people, caplog):
    client.force_login(people["nurse_a"])

    with caplog.at_level(logging.INFO, logger="ecrf.request"):
        client.get(reverse("cohort:patient-list") + "?q=secret")

    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "ecrf.request"]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "request" and line["method"] == "GET" and line["status"] == 200
    assert line["path"] == reverse("cohort:patient-list")  # no query string: it may hold clinical data
    assert line["user"] == people["nurse_a"].pk
    assert isinstance(line["duration_ms"], float)


def test_an_anonymous_request_is_logged_without_a_user(client, caplog):
    with caplog.at_level(logging.INFO, logger="ecrf.request"):
        client.get(reverse("cohort:patient-list"))

    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ecrf.request"]
    assert line["status"] == 302 and line["user"] is None
