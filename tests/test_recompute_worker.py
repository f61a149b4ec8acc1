"""Outcomes are recomputed by a real Celery worker through a real Redis (SPEC section 6): a saved
visit gives a new snapshot within seconds, a burst of saves coalesces, and a save made while the
broker is down still succeeds and is caught up by the sweep."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from cohort.models import Assessment
from cohort.services import crf_row_save
from reports import services
from reports.models import OutcomeSnapshot, RecomputeRequest
from tests.base import make_patient, make_record

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout: float = 45, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s")


def settled(scope: str = "all") -> bool:
    return not RecomputeRequest.objects.filter(scope=scope, status__in=["pending", "running"]).exists()


def save_week_8(patient, user, **values):
    row = Assessment.objects.get(patient=patient, visit="week_8")
    for name, value in values.items():
        setattr(row, name, value)
    return crf_row_save(row=row, by=user, expected_version=row.version, reason="test")


@pytest.fixture
def cohort(people, celery_worker, celery_on_redis):
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    # Bring the outcomes up to date before the test's own change.
    services.sweep()
    wait_for(lambda: settled("all") and settled("AMC"))
    time.sleep(1.5)  # wake-ups still queued from set-up find nothing to do
    return patient


def test_saving_a_visit_gives_a_new_snapshot_within_seconds(cohort, people):
    before = services.latest_snapshot("all")
    assert before is not None and before.result["clinical_remission"]["week_8"]["observed"]["n"] == 1
    started = time.monotonic()
    save_week_8(cohort, people["nurse_a"], hbi=12)  # week 8 out of remission now

    def newer():
        latest = services.latest_snapshot("all")
        return latest if latest.pk != before.pk and settled("all") and settled("AMC") else None

    after = wait_for(newer, timeout=30)
    elapsed = time.monotonic() - started
    assert after.data_version > before.data_version
    assert after.result["clinical_remission"]["week_8"]["observed"]["n"] == 0
    assert services.latest_snapshot("AMC").data_version == after.data_version
    assert elapsed < 15, elapsed


def test_a_burst_of_50_saves_gives_at_most_3_recomputes(cohort, people):
    since = timezone.now()
    for value in range(50):
        save_week_8(cohort, people["nurse_a"], crp_mg_l=value % 20)
    wait_for(lambda: settled("all") and settled("AMC"), timeout=60)
    time.sleep(2)  # any late duplicate wake-ups have run by now
    recomputes = OutcomeSnapshot.objects.filter(scope="all", computed_at__gte=since).count()
    assert 1 <= recomputes <= 3, recomputes
    latest = services.latest_snapshot("all")
    assert latest.data_version == RecomputeRequest.objects.filter(scope="all").order_by("-data_version")[0].data_version


def test_saves_succeed_with_the_broker_down_and_the_sweep_catches_up(cohort, people, celery_on_redis):
    from tests.conftest import _drop_broker_connections, free_port

    app = celery_on_redis
    working_broker = app.conf.broker_url
    before = services.latest_snapshot("all")
    _drop_broker_connections(app)
    app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: the broker is down
    try:
        saved = save_week_8(cohort, people["nurse_a"], hbi=11)
    finally:
        _drop_broker_connections(app)
        app.conf.broker_url = working_broker
    assert saved.version >= 2
    assert Assessment.objects.get(pk=saved.pk).hbi == 11
    assert RecomputeRequest.objects.filter(scope="all", status="pending").exists()
    time.sleep(3)
    assert services.latest_snapshot("all").pk == before.pk  # nobody was told

    assert services.sweep() >= 1  # what beat runs every 30 s, now that the broker is back
    caught_up = wait_for(lambda: services.latest_snapshot("all").pk != before.pk and settled("all"))
    assert caught_up
    assert services.latest_snapshot("all").result["clinical_remission"]["week_8"]["observed"]["n"] == 0
