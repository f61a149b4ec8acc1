"""The durable recompute requests (SPEC section 6) without a worker: a write never waits for
another centre's open transaction, and a burst of requests is claimed and recomputed at once."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading

import pytest
import redis
from django.db import connection, connections, transaction

from cohort.models import Assessment, DataCheckRequest
from cohort.services import crf_row_save
from reports import services
from reports.models import OutcomeSnapshot, RecomputeRequest
from tests.base import make_patient, make_record
from tests.conftest import point_at

pytestmark = pytest.mark.django_db(transaction=True)


def save_week_8(patient, user, hbi):
    row = Assessment.objects.get(patient=patient, visit="week_8")
    row.hbi = hbi
    return crf_row_save(row=row, by=user, expected_version=row.version, reason="test")


def test_a_save_does_not_wait_for_another_centres_open_transaction(people):
    at_a = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    at_b = make_record(make_patient(people["centre_b"], people["nurse_b"]))
    written, release, failures = threading.Event(), threading.Event(), []

    def long_import_at_a():
        try:
            with transaction.atomic():
                save_week_8(at_a, people["nurse_a"], hbi=11)  # asks for 'all' and 'AMC'
                written.set()
                release.wait(timeout=30)  # still open: an import of many files, say
        except Exception as error:  # reported by the test's thread
            failures.append(error)
        finally:
            connections.close_all()

    other = threading.Thread(target=long_import_at_a)
    other.start()
    try:
        assert written.wait(timeout=30)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")  # waiting would fail the save
            save_week_8(at_b, people["nurse_b"], hbi=12)  # asks for 'all' and 'UMCU' too
    finally:
        release.set()
        other.join(timeout=30)
    assert failures == []
    assert Assessment.objects.get(patient=at_a, visit="week_8").hbi == 11
    assert Assessment.objects.get(patient=at_b, visit="week_8").hbi == 12


def test_a_burst_of_requests_is_claimed_and_recomputed_once(people):
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    OutcomeSnapshot.objects.all().delete()
    RecomputeRequest.objects.all().delete()
    with transaction.atomic():  # ten saves; the in-process worker is woken when they commit
        for hbi in range(5, 15):
            save_week_8(patient, people["nurse_a"], hbi=hbi)
        pending = RecomputeRequest.objects.filter(scope="all", status="pending")
        assert pending.count() == 10  # one request per write statement, none waits for another
        newest = max(pending.values_list("data_version", flat=True))

    snapshot = services.latest_snapshot("all")
    assert OutcomeSnapshot.objects.filter(scope="all").count() == 1
    assert snapshot.data_version == newest
    assert snapshot.result["clinical_remission"]["week_8"]["observed"]["n"] == 0  # HBI 14, the last save
    assert not RecomputeRequest.objects.exclude(status="done").exists()
    assert services.recompute("all") is None  # nothing left: safe to run twice
    assert services.pending_scopes() == []


def test_the_sweep_asks_for_the_outcomes_of_a_centre_without_patients(people):
    """No data change will ever ask for a new centre's (empty) outcomes; the sweep does."""
    OutcomeSnapshot.objects.all().delete()
    RecomputeRequest.objects.all().delete()
    make_record(make_patient(people["centre_a"], people["nurse_a"]))  # AMC and all are computed
    assert not OutcomeSnapshot.objects.filter(scope="UMCU").exists()

    services.sweep()  # what beat runs every 30 s; without a broker the recompute runs here

    umcu = services.latest_snapshot("UMCU")
    assert umcu is not None and umcu.result["n_patients"] == 0
    assert services.request_missing() == []  # every scope has its outcomes now


def test_the_dashboard_says_when_the_last_recompute_failed(client, people):
    from tests.base import login_as

    OutcomeSnapshot.objects.all().delete()
    RecomputeRequest.objects.all().delete()
    make_record(make_patient(people["centre_a"], people["nurse_a"]))
    services.sweep()  # the in-process worker takes every waiting request
    snapshot = services.latest_snapshot("AMC")
    RecomputeRequest.objects.create(
        scope="AMC", status="failed", data_version=snapshot.data_version + 1, requested_at=snapshot.computed_at,
        attempts=3, error="ZeroDivisionError()",
    )  # fmt: skip
    login_as(client, people["nurse_a"])
    page = client.get("/outcomes/AMC/").content.decode()
    assert 'id="recompute-failed"' in page and "These outcomes are out of date" in page
    assert 'id="recompute-failed"' not in client.get("/outcomes/all/").content.decode()


def test_the_sweep_takes_back_a_claim_whose_heartbeat_stopped_and_leaves_a_beating_one(people):
    from django.utils import timezone

    from reports import background

    make_record(make_patient(people["centre_a"], people["nurse_a"]))  # every scope computed in-process
    version = services.latest_snapshot("all").data_version
    now = timezone.now()
    stopped = now - background.CLAIM_STALE - dt.timedelta(seconds=1)
    claim = {"status": "running", "data_version": version + 1, "requested_at": now, "started_at": stopped}
    lost = RecomputeRequest.objects.create(scope="all", heartbeat_at=stopped, claimed_by="dead", attempts=1, **claim)
    alive = RecomputeRequest.objects.create(scope="AMC", heartbeat_at=now, claimed_by="alive", attempts=1, **claim)

    services.sweep()  # what beat runs every 5 s; without a broker the recompute runs here

    lost.refresh_from_db()
    alive.refresh_from_db()
    assert (lost.status, lost.attempts) == ("done", 2)
    assert alive.status == "running"  # its worker is alive: not taken
    assert services.latest_snapshot("all").data_version >= version + 1


def test_the_same_message_delivered_again_takes_its_claim_over(people):
    """A pool child killed mid-recompute: its message comes back (acks late, rejected on worker
    loss) and finds the requests still claimed by its own task id."""
    from django.utils import timezone

    make_record(make_patient(people["centre_a"], people["nurse_a"]))
    services.sweep()  # the in-process worker takes every waiting request
    version = services.latest_snapshot("all").data_version
    now = timezone.now() - dt.timedelta(seconds=5)
    RecomputeRequest.objects.create(
        scope="all", status="running", data_version=version + 1, requested_at=now, started_at=now,
        heartbeat_at=now, claimed_by="task-1", attempts=1,
    )  # fmt: skip

    assert services.recompute("all", claim="task-2") is None  # another message: the claim is alive
    snapshot = services.recompute("all", claim="task-1")

    assert snapshot.data_version >= version + 1
    assert not RecomputeRequest.objects.filter(scope="all").exclude(status="done").exists()


def test_the_wake_ups_name_tasks_every_process_has_registered():
    # The services wake the tasks by name (reports.tasks imports the services, never the other
    # way round); the app's start-up registers them, in a web process as in a worker.
    from cohort.celery import app
    from reports import background, jobs

    assert app.tasks[services.RECOMPUTE_TASK].name == services.RECOMPUTE_TASK
    assert app.tasks[services.REQUESTED_CHECKS_TASK].name == services.REQUESTED_CHECKS_TASK
    assert app.tasks[jobs.RUN_TASK].name == jobs.RUN_TASK
    with pytest.raises(KeyError):  # a wrong name is a bug, not a broker outage
        background.wake("reports.tasks.no_such_task", "all")


def queued_tasks(redis_url: str) -> list[tuple[str, list]]:
    """(task name, args) of the messages waiting on the broker's default queue, oldest first."""
    messages = [json.loads(message) for message in reversed(redis.Redis.from_url(redis_url).lrange("celery", 0, -1))]
    return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in messages]


def test_a_burst_of_saves_wakes_each_scope_once_and_checks_each_patient(
    people, celery_on_redis, redis_server, monkeypatch
):
    # A countdown longer than the test: the two saves are within it however slow the machine.
    monkeypatch.setattr(services, "DEBOUNCE", dt.timedelta(seconds=60))
    first = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    second = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    # A Redis database of its own: the suite's shared worker (alive once an earlier test started it)
    # would take the messages, the delayed wake-ups first, before this test reads the queue.
    broker = redis_server.rsplit("/", 1)[0] + "/2"
    point_at(celery_on_redis, broker)
    redis.Redis.from_url(broker).delete("celery")  # the set-up's own wake-ups, forgotten
    services._woken.clear()

    # The first save's wake-up task starts after the countdown and takes the second save's request too.
    save_week_8(first, people["nurse_a"], hbi=11)
    save_week_8(second, people["nurse_a"], hbi=12)

    recomputes = [args for task, args in queued_tasks(broker) if task == services.RECOMPUTE_TASK]
    checks = [args for task, args in queued_tasks(broker) if task == services.REQUESTED_CHECKS_TASK]
    assert sorted(recomputes) == [["AMC"], ["all"]]
    # One data-checks wake-up for the burst; each saved patient's checks are requested in the database.
    assert checks == [[]]
    assert not [task for task, _args in queued_tasks(broker) if task == services.DATA_CHECKS_TASK]
    assert set(DataCheckRequest.objects.values_list("patient_id", flat=True)) == {first.pk, second.pk}
    pending = RecomputeRequest.objects.filter(status=RecomputeRequest.Status.PENDING)
    assert pending.filter(scope="AMC").count() == pending.filter(scope="all").count() >= 2


def test_the_sweep_wakes_the_data_checks_left_waiting(people, celery_on_redis, redis_server):
    """A data-checks wake-up lost (broker down at commit) is re-sent by the sweep, as a recompute's is;
    a request younger than the sweep's period is left to the wake-up its save sent."""
    from django.utils import timezone

    patient = make_patient(people["centre_a"], people["nurse_a"])  # the enrolment requests its checks
    broker = redis_server.rsplit("/", 1)[0] + "/3"  # not the suite's shared worker's (see above)
    point_at(celery_on_redis, broker)
    queue = redis.Redis.from_url(broker)

    def checks_woken() -> list:
        woken = [args for task, args in queued_tasks(broker) if task == services.REQUESTED_CHECKS_TASK]
        queue.delete("celery")
        return woken

    checks_woken()
    services.sweep()
    assert checks_woken() == []

    DataCheckRequest.objects.filter(patient=patient).update(requested_at=timezone.now() - dt.timedelta(minutes=1))
    services.sweep()
    assert checks_woken() == [[]]
