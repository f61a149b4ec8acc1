"""Recomputing the outcomes: claim a waiting request, load, compute, store a snapshot.

Requests are written by database triggers (reports/migrations/0002) in the transaction that
changes study data; `wake_workers_on_commit` then nudges a worker. Nothing here trusts the broker:
a lost message is re-sent by `sweep`; a killed worker's claim stops beating and is taken again
(reports/background.py has the timings).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import gc
import logging
import time
import uuid
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, JSONField, Q, Value, When
from django.utils import timezone

from cohort.access import ALL_SCOPE
from cohort.models import DataCheckRequest
from reports import background, loaders, outcome_columns, outcomes
from reports.models import OutcomeSnapshot, RecomputeRequest

log = logging.getLogger(__name__)

# A request is taken once no change has come for this long, so a burst of saves coalesces into
# one recompute per scope. In-process mode (no broker) recomputes at once.
DEBOUNCE = dt.timedelta(seconds=1)
MAX_ATTEMPTS = background.MAX_ATTEMPTS
# The Celery task that runs `recompute` (reports/tasks.py), woken by its name.
RECOMPUTE_TASK = "reports.tasks.recompute_outcomes"
DATA_CHECKS_TASK = "reports.tasks.data_checks"
# The one that runs the data checks saves requested (cohort.data_checks.run_requested).
REQUESTED_CHECKS_TASK = "reports.tasks.requested_data_checks"


def thresholds() -> outcomes.Thresholds:
    return outcomes.Thresholds(
        hbi_max=settings.REMISSION_HBI_MAX, crp_max=settings.REMISSION_CRP_MAX, fcal_max=settings.REMISSION_FCAL_MAX
    )


@contextlib.contextmanager
def _without_cyclic_gc():
    """Loading 100,000 patients makes millions of small tuples; the cyclic garbage collector would
    walk the growing heap again and again (time grew faster than the patients). They hold no
    reference cycles, so reference counting frees them; collection resumes afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# True inside data_snapshot's own transaction (not one it joined): one that sees committed data
# only, so a second connection importing its snapshot sees exactly what it sees.
_own_snapshot: contextvars.ContextVar[bool] = contextvars.ContextVar("own_snapshot", default=False)


@contextlib.contextmanager
def data_snapshot():
    """A read-only REPEATABLE READ transaction: every query inside sees the same committed data
    (the loader's seven, a report's tables). Inside a transaction already open (a test case) that
    transaction's view is used as it is."""
    outer = transaction.get_connection().in_atomic_block
    with transaction.atomic():
        if not outer:
            with transaction.get_connection().cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        own = _own_snapshot.set(not outer)
        try:
            yield
        finally:
            _own_snapshot.reset(own)


def shares_snapshot() -> bool:
    """Whether the current transaction is data_snapshot's own (committed data only, read only), so
    the loader may read it on two connections. Not in a transaction data_snapshot joined (a test
    case's, whose uncommitted rows another connection cannot see), nor outside data_snapshot."""
    return _own_snapshot.get() and transaction.get_connection().in_atomic_block


class ScopeOutcomes(NamedTuple):
    patients: list[outcomes.PatientData]  # as loaded: every (not deleted) patient of the scope
    result: dict
    load_seconds: float
    compute_seconds: float


def scope_outcomes(scope: str) -> ScopeOutcomes:
    """The outcome dict of a scope from the current data, computed per patient with
    reports/outcomes.py's definitions (the readable form; the recompute and the cohort report use
    `scope_columns`), with the patients it was computed from."""
    with _without_cyclic_gc():
        started = time.perf_counter()
        patients = loaders.load_patients(scope)
        loaded = time.perf_counter()
        result = outcomes.compute(patients, scope=scope, thresholds=thresholds())
        return ScopeOutcomes(patients, result, loaded - started, time.perf_counter() - loaded)


class ScopeColumns(NamedTuple):
    columns: dict[str, np.ndarray]  # as loaded: every (not deleted) patient of the scope
    result: dict
    load_seconds: float
    compute_seconds: float


def scope_columns(scope: str) -> ScopeColumns:
    """The outcome dict of a scope from the current data, read and computed as columns
    (loaders.load_columns, reports/outcome_columns.py): the same dict as scope_outcomes gives, in a
    fraction of the time at 100,000 patients; with the columns it was computed from (for tables
    that must add up to it, such as the cohort report's completeness)."""
    started = time.perf_counter()
    columns = loaders.load_columns(scope, share_snapshot=shares_snapshot())
    loaded = time.perf_counter()
    result = outcome_columns.compute(columns, scope=scope, thresholds=thresholds())
    return ScopeColumns(columns, result, loaded - started, time.perf_counter() - loaded)


def compute_scope(scope: str) -> tuple[dict, float, float]:
    """The outcome dict of a scope from the current data (`scope_columns`), with load and compute
    seconds: what a recompute stores."""
    computed = scope_columns(scope)
    return computed.result, computed.load_seconds, computed.compute_seconds


def _debounce() -> dt.timedelta:
    return dt.timedelta(0) if settings.CELERY_TASK_ALWAYS_EAGER else DEBOUNCE


def recompute(scope: str, *, claim: str | None = None) -> OutcomeSnapshot | None:
    """Take the scope's waiting requests (if any, and if the burst is over) and store a snapshot.

    Every write statement appends a request (reports/migrations/0004); all of the scope's pending
    ones are claimed together, so a burst of saves gives one recompute, reflecting the newest.
    `claim` names the task message: delivered again after its worker died, it takes back the
    requests it had claimed. Returns None when there is nothing to do: no request, or another
    worker has them. Raises StillChanging while changes are still arriving (the caller retries
    later). Safe to run twice."""
    claim = claim or uuid.uuid4().hex
    Status = RecomputeRequest.Status
    with transaction.atomic():
        # A recompute that killed its worker every time (out of memory, say) must not loop for ever.
        RecomputeRequest.objects.filter(
            scope=scope, status=Status.RUNNING, claimed_by=claim, attempts__gte=MAX_ATTEMPTS
        ).update(status=Status.FAILED, error="worker lost during every attempt")
        claimed = list(
            RecomputeRequest.objects.select_for_update(skip_locked=True)
            .filter(Q(status=Status.PENDING) | Q(status=Status.RUNNING, claimed_by=claim), scope=scope)
            .values_list("pk", "data_version", "requested_at", "attempts")
        )
        if not claimed:
            return None
        if max(requested_at for _pk, _version, requested_at, _attempts in claimed) > timezone.now() - _debounce():
            raise StillChanging(scope)
        ids = [pk for pk, *_rest in claimed]
        data_version = max(version for _pk, version, _at, _attempts in claimed)
        attempts = 1 + max(attempts for *_rest, attempts in claimed)
        now = timezone.now()
        RecomputeRequest.objects.filter(pk__in=ids).update(
            status=Status.RUNNING, started_at=now, heartbeat_at=now, claimed_by=claim, attempts=attempts
        )

    # Every write names the claim: a worker taken over (by the sweep) changes nothing of the new one's.
    mine = RecomputeRequest.objects.filter(pk__in=ids, status=Status.RUNNING, claimed_by=claim)
    try:
        with background.heartbeat(lambda: mine.all()):
            # One snapshot of the data: every query of the loader sees the same committed state,
            # which includes every claimed request's change (committed before they could be seen).
            with data_snapshot():
                result, load_seconds, compute_seconds = compute_scope(scope)
            snapshot = OutcomeSnapshot.objects.create(
                scope=scope,
                computed_at=timezone.now(),
                data_version=data_version,
                algorithm_version=outcomes.ALGORITHM_VERSION,
                result=result,
                load_seconds=load_seconds,
                compute_seconds=compute_seconds,
            )
    except Exception as error:
        mine.update(status=Status.PENDING if attempts < MAX_ATTEMPTS else Status.FAILED, error=repr(error)[:2000])
        raise
    mine.update(status=Status.DONE, finished_at=timezone.now())
    return snapshot


class StillChanging(Exception):
    """The scope's data changed less than DEBOUNCE ago: recompute a little later."""


def pending_scopes() -> list[str]:
    pending = RecomputeRequest.objects.filter(status=RecomputeRequest.Status.PENDING)
    return list(pending.order_by("scope").values_list("scope", flat=True).distinct())


def enqueue(scopes: list[str]) -> int:
    """Wake a worker per scope, best-effort: a broker that is down is the sweep's business, never
    the save's (reports/background.py)."""
    countdown = _debounce().total_seconds()
    return sum(background.wake(RECOMPUTE_TASK, scope, countdown=countdown) for scope in scopes)


def wake_workers_on_commit(scopes: list[str] | None = None) -> None:
    """After the current transaction commits, wake workers for `scopes` (the ones the change asked
    for, when the caller knows them), or for every scope with a waiting request."""
    transaction.on_commit(lambda: enqueue(pending_scopes()) if scopes is None else wake_once(scopes))


# When this process last sent each wake-up, by task and arguments (time.monotonic(), read before sending).
_woken: dict[tuple, float] = {}


def wake_once(scopes: list[str]) -> int:
    """Wake a worker for each of `scopes`, but not for a scope this process woke one for less than
    the wake-up's countdown (DEBOUNCE) ago: that task starts no sooner than the countdown after it
    was sent and takes every request committed by then, so a change committed meanwhile (as the
    caller's is: this runs after its commit) needs no message of its own. A burst of saves sends
    one per scope and process, not one per save; the sweep re-sends whatever is left waiting."""
    return sum(_wake_once(RECOMPUTE_TASK, scope) for scope in scopes)


def _wake_once(task_name: str, *args) -> bool:
    """Send this wake-up (with the countdown) unless this process sent it less than the countdown ago."""
    countdown = _debounce().total_seconds()
    now = time.monotonic()
    if now - _woken.get((task_name, *args), -countdown) < countdown:
        return False
    if not background.wake(task_name, *args, countdown=countdown):
        return False
    _woken[(task_name, *args)] = now
    return True


def on_data_changed(sender, *, scopes: list[str] | None, patients: list[int] | None = None, **kwargs) -> None:
    """cohort.signals.data_changed: once the change commits, wake workers for the outcome scopes,
    and for the automatic data queries its writer requested (cohort.models.DataCheckRequest) for
    the patients it names. The data checks are woken as the recompute is (wake_once): one message
    per burst of saves and process, taking every request committed by the time it runs; one that is
    lost (broker down) is re-sent by the sweep, and the hourly run checks everyone anyway."""
    wake_workers_on_commit(scopes)
    if patients:
        transaction.on_commit(lambda: _wake_once(REQUESTED_CHECKS_TASK))


# Done requests are kept this long (they say when each scope was recomputed, for a while).
KEEP_DONE = dt.timedelta(days=7)


def sweep() -> int:
    """Take back claims of workers that died mid-recompute (heartbeat stopped), re-send requests
    left waiting (broker down at commit, lost message), recompute requests and data-check requests
    alike, and forget old done requests. Run by beat every few seconds; returns the number of
    wake-ups sent."""
    now = timezone.now()
    running = RecomputeRequest.objects.filter(status=RecomputeRequest.Status.RUNNING)
    lost = running.filter(Q(heartbeat_at__lt=background.stale_before()) | Q(heartbeat_at__isnull=True))
    lost.filter(attempts__gte=MAX_ATTEMPTS).update(
        status=RecomputeRequest.Status.FAILED, error="worker lost during every attempt"
    )
    lost.update(status=RecomputeRequest.Status.PENDING, error="claim expired (worker lost)")
    RecomputeRequest.objects.filter(status=RecomputeRequest.Status.DONE, finished_at__lt=now - KEEP_DONE).delete()
    request_missing()
    # Data checks requested a while ago and still waiting: their wake-up was lost (or is late).
    checks = DataCheckRequest.objects.filter(requested_at__lt=now - background.SWEEP).exists()
    checks_woken = checks and background.wake(REQUESTED_CHECKS_TASK)
    # Every waiting scope, whether its wake-up was lost or not: a duplicate finds nothing to claim.
    return enqueue(pending_scopes()) + checks_woken


def request_missing() -> list[str]:
    """Ask for the outcomes of every scope that has none yet and is not waiting for them: a new
    centre has no patients, so no data change would ever ask for its (empty) outcomes."""
    from cohort.models import Centre

    scopes = [ALL_SCOPE, *Centre.objects.filter(active=True).values_list("code", flat=True)]
    known = set(OutcomeSnapshot.objects.filter(scope__in=scopes).values_list("scope", flat=True).distinct())
    waiting = RecomputeRequest.objects.filter(
        scope__in=scopes, status__in=[RecomputeRequest.Status.PENDING, RecomputeRequest.Status.RUNNING]
    )
    known |= set(waiting.values_list("scope", flat=True).distinct())
    missing = [scope for scope in scopes if scope not in known]
    if missing:
        with transaction.get_connection().cursor() as cursor:
            cursor.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM reports_data_version")
            (version,) = cursor.fetchone()
        now = timezone.now()
        RecomputeRequest.objects.bulk_create(
            RecomputeRequest(scope=scope, data_version=version, requested_at=now) for scope in missing
        )
    return missing


# The newest data first: two workers may recompute a scope at once, and the one that started
# earlier (older data) can finish later.
LATEST_FIRST = ("-data_version", "-computed_at", "-id")


def latest_snapshot(scope: str, *, without_result: list[int] | None = None) -> OutcomeSnapshot | None:
    """The scope's newest snapshot. With `without_result`, the ids of snapshots whose result the
    caller does not need (it keeps what it shows of them): the result document is read in the same
    query only if the newest snapshot is not one of them."""
    snapshots = OutcomeSnapshot.objects.filter(scope=scope).order_by(*LATEST_FIRST)
    if without_result is None:
        return snapshots.first()
    snapshot = (
        snapshots.defer("result")
        .annotate(
            result_unless_kept=Case(
                When(pk__in=without_result, then=Value(None)), default=F("result"), output_field=JSONField()
            )
        )
        .first()
    )
    if snapshot is not None and snapshot.result_unless_kept is not None:
        snapshot.result = snapshot.result_unless_kept
    return snapshot


def last_failure(scope: str, snapshot: OutcomeSnapshot | None) -> RecomputeRequest | None:
    """A recompute of the scope that failed for good after the latest snapshot: its outcomes are stale."""
    failed = RecomputeRequest.objects.filter(scope=scope, status=RecomputeRequest.Status.FAILED)
    if snapshot is not None:
        failed = failed.filter(data_version__gt=snapshot.data_version)
    return failed.order_by("-requested_at").first()


def is_updating(scope: str) -> bool:
    """Whether the scope's outcomes are being recomputed or waiting to be."""
    return RecomputeRequest.objects.filter(
        Q(status=RecomputeRequest.Status.PENDING) | Q(status=RecomputeRequest.Status.RUNNING), scope=scope
    ).exists()
