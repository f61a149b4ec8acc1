"""What an operator watches (SPEC section 6): the health check and one structured log line per
request and per background task.

- `GET /healthz` answers without a login, before host validation and the HTTPS redirect (the
  container's own health check calls it over plain HTTP on 127.0.0.1): 200 when the database
  answers, 503 when it does not. The broker's state is reported, never required: saves and pages
  work without it (the durable requests and the sweep catch up).
- Every request and every task ends with one JSON log line (logger `ecrf.request` / `ecrf.task`):
  who, what, the outcome and how long it took. No query strings and no form values: they may hold
  clinical data.
"""

from __future__ import annotations

import json
import logging
import time

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse

HEALTH_PATH = "/healthz"
request_log = logging.getLogger("ecrf.request")
task_log = logging.getLogger("ecrf.task")


def log_event(logger: logging.Logger, event: str, **fields) -> None:
    logger.info(json.dumps({"event": event, **fields}, default=str, separators=(",", ":")))


def database_state() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as error:
        return f"unreachable ({type(error).__name__})"
    return "ok"


def broker_state(timeout: float = 0.5) -> str:
    url = settings.CELERY_BROKER_URL
    if not url:
        return "not configured (tasks run in-process)"
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except redis.exceptions.RedisError as error:
        return f"unreachable ({type(error).__name__})"
    finally:
        client.close()
    return "ok"


def health() -> JsonResponse:
    state = {"database": database_state(), "broker": broker_state()}
    response = JsonResponse(state, status=200 if state["database"] == "ok" else 503)
    response["Cache-Control"] = "no-store"
    return response


class OperationsMiddleware:
    """First in MIDDLEWARE: answers the health check, and logs every request once it is answered."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return health()
        started = time.perf_counter()
        status = 500  # what the client gets if the code below raises
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            user = getattr(request, "user", None)
            log_event(
                request_log,
                "request",
                method=request.method,
                path=request.path,
                status=status,
                duration_ms=round(1000 * (time.perf_counter() - started), 1),
                user=user.pk if user is not None and user.is_authenticated else None,
            )


def connect_task_logging() -> None:
    """One line per finished task, from Celery's signals (called by cohort/celery.py)."""
    from celery import signals

    started: dict[str, float] = {}

    @signals.task_prerun.connect(weak=False)
    def _started(task_id=None, **_kwargs):
        started[task_id] = time.perf_counter()

    @signals.task_postrun.connect(weak=False)
    def _finished(task_id=None, task=None, state=None, **_kwargs):
        begun = started.pop(task_id, None)
        log_event(
            task_log,
            "task",
            task=getattr(task, "name", None),
            id=task_id,
            state=state,
            duration_ms=round(1000 * (time.perf_counter() - begun), 1) if begun is not None else None,
        )
