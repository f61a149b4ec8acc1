"""A real Celery worker reads committed study data from PostgreSQL, reached through Redis."""

from __future__ import annotations

import datetime as dt

import pytest
from celery.result import EagerResult
from django.contrib.auth.models import User
from django.db import connection

from cohort import services
from reports.tasks import database_health

pytestmark = pytest.mark.services


def enrol(centre, nurse):
    return services.patient_enrol(
        centre=centre,
        by=nurse,
        enrolment_date=dt.date(2020, 3, 1),
        consent="yes",
        sex="F",
        birth_year=1980,
        diagnosis_year=2000,
        montreal_location="L1",
        upper_gi="no",
        montreal_behaviour="B1",
        perianal="no",
        prior_resection="no",
        smoking="never",
    )


@pytest.mark.django_db(transaction=True)
def test_it_reports_committed_patients_from_the_worker(celery_worker, celery_on_redis, redis_server):
    from tests.conftest import point_at

    # This probe task's caller waits for its result: a result backend here (the app has none).
    point_at(celery_on_redis, redis_server, result_backend=redis_server)
    nurse = User.objects.create_user("nurse-worker", password="a-long-test-password")
    centre = services.centre_create(code="WRK", name="Worker test centre")
    enrol(centre, nurse)

    result = database_health.delay()

    assert not isinstance(result, EagerResult)
    health = result.get(timeout=30)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version')")
        (server_version,) = cursor.fetchone()
    assert health == {"patients": 1, "server_version": server_version}

    # A second enrolment is visible to the next task: the worker reads live committed data.
    enrol(centre, nurse)
    assert database_health.delay().get(timeout=30)["patients"] == 2
