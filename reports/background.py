"""What the recompute requests, the report jobs and the import jobs share: the wake-up sent to the workers after a
commit, and the heartbeat that keeps a worker's claim on its work alive (SPEC section 6).

The database row is the work; the broker message is only a hint. A save never waits for Redis:
a wake-up that cannot be sent is left to the sweep, and after one failure this process does not
try again for BROKER_BACKOFF, so a hung Redis costs one save in each 5 s (per web process) one
socket timeout (0.25 s, cohort/settings.py) rather than costing every save.

How fast work is taken over when its worker dies, with these defaults:

- the worker refreshes its claim every HEARTBEAT (5 s), from a thread of its own;
- the sweep (beat, every SWEEP = 5 s) takes back a claim whose heartbeat is older than
  CLAIM_STALE (15 s: three missed beats, so a busy but living worker is not taken over);
- a worker killed at time k beat last at k or before, so its claim is stale by k + 15 s and
  taken back by the sweep by k + 20 s, which wakes a worker at once: claimed again within about
  21 s, below the 30 s promised. When only a pool child died (prefork), acks_late with
  reject_on_worker_lost puts the very message back in the queue; it finds the claim still held by
  its own task id and takes it over within a second or two, without waiting for the sweep.

The sweep is a task like the others: it needs a worker process that is not busy rendering.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from cohort.celery import app

log = logging.getLogger(__name__)

HEARTBEAT = dt.timedelta(seconds=5)
CLAIM_STALE = dt.timedelta(seconds=15)
SWEEP = dt.timedelta(seconds=5)  # CELERY_BEAT_SCHEDULE in cohort/settings.py
# A wake-up not taken within this long is dropped by the worker (the sweep re-sends the work if it
# is still waiting), so the sweep's wake-ups never pile up behind long renders.
WAKE_UP_EXPIRES = dt.timedelta(seconds=60)
BROKER_BACKOFF = 5.0  # seconds
# Deliveries of one job before it fails for good (a render that kills its worker every time).
MAX_ATTEMPTS = 3

_broker_down_until = 0.0


def wake(task_name: str, *args, countdown: float = 0) -> bool:
    """Send the task registered as `task_name` (reports/tasks.py) with `args` to the workers,
    best-effort: False (logged once) when the broker is down. By name, so that the tasks import
    the services they call and never the other way round."""
    global _broker_down_until
    task = app.tasks[task_name]  # a wrong name is a bug, not an outage: it raises
    if settings.CELERY_TASK_ALWAYS_EAGER:  # no broker: run it here and now
        task.apply_async(args=args)
        return True
    if time.monotonic() < _broker_down_until:
        return False
    try:
        task.apply_async(args=args, countdown=countdown or None, expires=WAKE_UP_EXPIRES.total_seconds())
    except Exception:  # broker down, unreachable or hung: the row is durable, the sweep re-sends it
        _broker_down_until = time.monotonic() + BROKER_BACKOFF
        log.warning("broker unreachable; workers are not woken for %.0f s (the sweep catches up)", BROKER_BACKOFF)
        return False
    _broker_down_until = 0.0
    return True


@contextlib.contextmanager
def heartbeat(claim: Callable[[], QuerySet], fields: Callable[[], dict] | None = None):
    """Set `heartbeat_at` on the rows of `claim()` every HEARTBEAT while the body runs, from a thread
    with its own database connection; it stops early once the claim matches no row (taken over).
    `fields()`: more columns to set with each beat, e.g. the progress of work whose own connection
    is inside a transaction that other connections cannot see into."""
    if transaction.get_connection().in_atomic_block:
        # Inside a transaction (a test's): the claim is not visible to other connections, and the
        # beat would wait for this transaction's row locks.
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(HEARTBEAT.total_seconds()):
                try:
                    if not claim().update(heartbeat_at=timezone.now(), **(fields() if fields else {})):
                        return
                except Exception:  # the database is unreachable for now: try again at the next beat
                    log.warning("claim heartbeat failed", exc_info=True)
                    connection.close()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name="claim-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=HEARTBEAT.total_seconds())


def stale_before() -> dt.datetime:
    """Claims whose heartbeat is older than this belong to a worker that died."""
    return timezone.now() - CLAIM_STALE


def claim_job(jobs: QuerySet, job_id: int, *, claim: str, queued: str, running: str, **fields) -> bool:
    """Claim a job row (a report or an import job) for the task message `claim`: a queued one, or
    one this very message held before its worker died (delivered again, it takes the job over as a
    new attempt rather than waiting for the sweep). A job lost by its worker MAX_ATTEMPTS times
    fails instead of looping for ever. `fields` are set with the claim. False: another worker has
    it, or it is finished."""
    now = timezone.now()
    jobs.filter(pk=job_id, status=running, claimed_by=claim, attempts__gte=MAX_ATTEMPTS).update(
        status="failed", error="worker lost during every attempt", message="", finished_at=now
    )
    return bool(
        jobs.filter(Q(status=queued) | Q(status=running, claimed_by=claim), pk=job_id).update(
            status=running, heartbeat_at=now, claimed_by=claim, progress=0, attempts=F("attempts") + 1, **fields
        )
    )
