"""Benchmark: a CRF form save under load against a bare Django view that writes one row, in one run.

Run: .venv/bin/python bench/form_save.py [--requests 400] [--concurrency 4] [--workers 2]
     [--sizes 1000,10000] [--broker redis|eager]

Method: a throwaway embedded PostgreSQL server, migrated and seeded with seed_demo (8 centres; not
timed) up to each of `--sizes` patients in turn, the measurement below repeated at each size (a save
should cost the same whatever the cohort's size). The project is served by gunicorn (sync workers)
on a free port of 127.0.0.1, with the project's settings and middleware; this script is the WSGI
module, so its URLconf is the project's (cohort.site_urls) plus one path, the bare view. The bare
view is a POST behind the same middleware (session, CSRF, login required, django-otp, the account
checks, pghistory's context, messages, axes) that inserts one row into django_admin_log with
LogEntry.objects.create (a stock Django table with no triggers; checked below) and answers a
redirect, as a save does.

Load: `--concurrency` client threads (http.client, one connection per request, as gunicorn's sync
workers close it), each signed in as the research nurse of one centre through the login page
(django-axes, password checked; nurses need no second factor), with the CSRF token taken from the
follow-up form's page like a browser. The form save is the real follow-up form (cohort.views.form_edit,
services.crf_row_save) of that nurse's patients in turn: the stored values with `next_therapy`
toggled, the current `version` (each thread owns its patients and counts their versions) and a
reason for change (the seeded forms are complete). Only the success redirect to the casebook counts
as a save; anything else fails the run. After warm-up, each endpoint gets `--requests` requests in
two halves, in the order bare, form, form, bare; latency is the client's wall clock per request
(connect to last byte); throughput is requests over the phases' wall clock. Then one request of
each kind counts its SQL statements in the server (a WSGI wrapper around Django, active only on
requests that ask for it with a header).

Outcome recompute: SPEC section 6 has workers recompute after a save, with Redis as the broker. By
default a throwaway redis-server on a Unix socket is the broker and no worker runs, so a save pays
what it pays in production (its recompute request row by trigger, a wake-up message per waiting
scope) and the recompute itself is not part of it. `--broker eager` is the embedded default without
a broker instead, where the recompute runs inside the request after commit.

Settings as in production: DEBUG off (so Django keeps no log of the SQL statements), the static
files collected into a throwaway STATIC_ROOT and served by WhiteNoise from its manifest, plain HTTP
on the loopback (no HTTPS redirect, no secure-only cookies). The statements are counted by
connection.execute_wrapper (the WSGI wrapper below), not by DEBUG's log; BEGIN and COMMIT are not statements Django
executes, so a save's transaction adds two round trips the count does not show.
SPEC target (section 9): the form save's median latency within 2x of the bare view's.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STARTED = time.monotonic()
ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
SERVER = os.environ.get("BENCH_FORM_SAVE_SERVER") == "1"  # imported by gunicorn as the WSGI module
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cohort.settings")
if not SERVER:
    WORK = Path(tempfile.mkdtemp(prefix="bench-form-save-"))
    # Production's settings: DEBUG off (no statement log, the manifest storage for static files),
    # plain HTTP on the loopback (no HTTPS redirect, cookies not marked secure).
    os.environ.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(48),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        SECURE_COOKIES="0",
        STATIC_ROOT=str(WORK / "static"),
    )
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    os.environ["EMBEDDED_PG_DIR"] = tempfile.mkdtemp(prefix="bench-form-save-pg-")
    os.environ["EMBEDDED_PG_THROWAWAY"] = "1"
# In the server, DATABASE_URL (the parent's embedded server) and the broker come from the parent.

import django  # noqa: E402
import harness  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.admin.models import ADDITION, LogEntry  # noqa: E402
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.views.decorators.http import require_POST  # noqa: E402
from harness import Failure, percentile, stop  # noqa: E402

BARE_URL = "/bench/bare-write/"
BARE_DONE = "/bench/bare-write/?done=1"


@require_POST
def bare_write(request: HttpRequest) -> HttpResponse:
    """The baseline: one row written with the ORM, then a redirect (login and CSRF by middleware)."""
    LogEntry.objects.create(user_id=request.user.pk, action_flag=ADDITION, object_repr="bench", change_message="")
    return HttpResponseRedirect(BARE_DONE)


urlpatterns = [
    path(BARE_URL.strip("/") + "/", bare_write, name="bench-bare-write"),
    path("", include("cohort.site_urls")),
]
# This module is the URLconf (the project's plus the bare view), in the server and in the parent.
settings.ROOT_URLCONF = __name__

if SERVER:
    from cohort import wsgi  # the production application, loaded and frozen as gunicorn's workers load it

    application = harness.counting_queries(wsgi.application)


# --- the load generator (parent process) ---------------------------------------------------------

REASON = "benchmark: data checked"
TOKEN_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
ERROR_RE = re.compile(r'class="[^"]*(?:invalid-feedback|alert-danger|errorlist)[^"]*"[^>]*>(.*?)</', re.S)


class Browser(harness.Browser):
    """harness.Browser, plus the follow-up form's page opened for its CSRF token."""

    def open_form(self, url: str) -> None:
        """GET a form page as a browser would, taking its CSRF token (the cookie was rotated at login)."""
        status, _, _, page = self.request("GET", url)
        text = page.decode()
        token = TOKEN_RE.search(text)
        if status != 200 or token is None or 'name="version"' not in text or 'name="reason_for_change"' not in text:
            raise Failure(f"form page {url}: HTTP {status}, not the editable form with version and reason")
        self.token = token.group(1)


class PatientForm:
    """One follow-up form a thread owns: its stored values and the version it is at."""

    def __init__(self, follow_up):
        self.study_id = follow_up.patient.study_id
        self.version = follow_up.version
        self.original_next_therapy = follow_up.next_therapy
        self.toggled = False
        stopped = follow_up.discontinuation_date
        self.values = {
            "status": follow_up.status,
            "last_follow_up_date": follow_up.last_follow_up_date.isoformat(),
            "discontinuation_date": stopped.isoformat() if stopped else "",
            "discontinuation_reason": follow_up.discontinuation_reason,
            "form_status": follow_up.form_status,
        }
        self.url = f"/patients/{self.study_id}/forms/follow_up/"
        self.done = f"/patients/{self.study_id}/"

    def post_data(self, token: str) -> dict:
        self.toggled = not self.toggled
        other = "" if self.original_next_therapy else "vedolizumab"
        return {
            **self.values,
            "next_therapy": other if self.toggled else self.original_next_therapy,
            "version": str(self.version),
            "reason_for_change": REASON,
            "csrfmiddlewaretoken": token,
        }


class Client:
    """One load thread: a nurse's browser and the patients it saves in turn."""

    def __init__(self, port: int, username: str, password: str, forms: list[PatientForm]):
        self.browser = Browser(port)
        self.username, self.password = username, password
        self.forms = forms
        self.next_form = 0
        self.saves = 0
        self.bare_writes = 0
        self.failures: list[str] = []

    def prepare(self) -> None:
        self.browser.login(self.username, self.password)
        self.browser.open_form(self.forms[0].url)

    def bare(self, count_queries: bool = False) -> str:
        headers = {"X-Bench-Count-Queries": "1"} if count_queries else None
        status, location, queries, _ = self.browser.request(
            "POST", BARE_URL, {"csrfmiddlewaretoken": self.browser.token}, headers
        )
        if status == 302 and location == BARE_DONE:
            self.bare_writes += 1
        else:
            self.failures.append(f"bare view: HTTP {status} {location}")
        return queries

    def save(self, count_queries: bool = False) -> str:
        form = self.forms[self.next_form % len(self.forms)]
        self.next_form += 1
        headers = {"X-Bench-Count-Queries": "1"} if count_queries else None
        status, location, queries, page = self.browser.request(
            "POST", form.url, form.post_data(self.browser.token), headers
        )
        if status == 302 and location == form.done:
            form.version += 1
            self.saves += 1
        else:
            errors = [re.sub(r"<[^>]+>|\s+", " ", e).strip() for e in ERROR_RE.findall(page.decode(errors="replace"))]
            self.failures.append(
                f"save of {form.study_id} v{form.version} refused: HTTP {status} {location} {errors[:3]}"
            )
            form.toggled = not form.toggled
        return queries


def run_phase(clients: list[Client], kind: str, total: int, deadline: float) -> tuple[list[float], float]:
    """`total` requests of one kind, spread over the clients' threads; latencies (s) and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(clients) + 1)

    def work(client: Client, share: int) -> None:
        mine = []
        barrier.wait()
        for _ in range(share):
            if time.monotonic() > deadline:
                client.failures.append("time limit reached before all requests were sent")
                break
            started = time.perf_counter()
            try:
                client.bare() if kind == "bare" else client.save()
            except (OSError, http.client.HTTPException) as error:
                client.failures.append(f"{kind}: {error!r}")
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    shares = [total // len(clients) + (1 if i < total % len(clients) else 0) for i in range(len(clients))]
    threads = [threading.Thread(target=work, args=(c, s), daemon=True) for c, s in zip(clients, shares, strict=True)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started


def start_broker(kind: str, work: Path) -> tuple[subprocess.Popen | None, dict[str, str], str]:
    if kind == "eager":
        return None, {}, "none (recompute in-process, inside the request)"
    try:
        process, env = harness.start_redis(work)
    except Failure as error:
        raise Failure(f"{error}, or run with --broker eager") from None
    return process, env, "redis-server (Unix socket, no worker)"


def prepare_database(work: Path) -> tuple[str, int]:
    """Migrate the throwaway database and collect the static files (DEBUG off serves them from
    STATIC_ROOT through WhiteNoise's manifest, as in production)."""
    from django.core.management import call_command
    from django.db import connection

    with contextlib.redirect_stdout(io.StringIO()):
        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
    with connection.cursor() as cursor:
        triggers_of = "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal"
        cursor.execute(triggers_of, ["django_admin_log"])
        (triggers,) = cursor.fetchone()
        cursor.execute(triggers_of, ["cohort_followup"])
        (followup_triggers,) = cursor.fetchone()
        cursor.execute("SHOW server_version")
        (pg_version,) = cursor.fetchone()
    if triggers:
        raise Failure(f"django_admin_log has {triggers} triggers; the bare view should write a plain row")
    return pg_version, followup_triggers


def seed_up_to(patients: int, work: Path) -> dict[str, tuple[str, str]]:
    """seed_demo the patients missing to reach `patients` (8 centres); the demo logins."""
    from django.core.management import call_command

    from cohort.management.commands.seed_demo import _read_logins
    from cohort.models import Patient

    logins_file = work / "demo_logins.txt"
    missing = patients - Patient.objects.count()
    if missing > 0:
        with contextlib.redirect_stdout(io.StringIO()):
            call_command("seed_demo", patients=missing, centres=8, seed=patients, logins_file=str(logins_file))
    return _read_logins(logins_file)


def plan_clients(concurrency: int, logins: dict[str, tuple[str, str]]):
    """(username, password, forms) per client thread: thread i is the nurse of centre i mod
    centres; threads sharing a centre split its patients (50 follow-up forms each at most)."""
    from cohort.choices import Role
    from cohort.models import FollowUp, Membership

    nurses = list(Membership.objects.filter(role=Role.NURSE).select_related("user", "centre").order_by("centre__pk"))
    plan = []
    for index in range(concurrency):
        membership = nurses[index % len(nurses)]
        sharing = [i for i in range(concurrency) if i % len(nurses) == index % len(nurses)]
        follow_ups = list(
            FollowUp.objects.filter(patient__centre=membership.centre)
            .select_related("patient")
            .order_by("patient__study_id")
        )
        slot = sharing.index(index)
        mine = follow_ups[slot :: len(sharing)][:50]
        if not mine:
            raise Failure(f"no follow-up forms for thread {index} at {membership.centre.code}")
        username = membership.user.username
        plan.append((username, logins[username][1], [PatientForm(f) for f in mine]))
    return plan


def measure(port: int, plan, args, work: Path) -> dict:
    """The load phases at the current size: the figures of both endpoints and the checks."""
    from cohort.models import FollowUp

    clients = [Client(port, username, password, forms) for username, password, forms in plan]
    versions_before = {f.study_id: f.version for c in clients for f in c.forms}
    events_before = FollowUp.pgh_event_model.objects.count()
    bare_before = LogEntry.objects.filter(object_repr="bench").count()
    messages_before = harness.redis_messages(work) if args.broker == "redis" else None
    for client in clients:
        client.prepare()

    deadline = time.monotonic() + args.time_limit
    for kind in ("bare", "form"):  # warm-up: connections, caches, code paths; not timed
        run_phase(clients, kind, args.warmup * len(clients), deadline)
    half = [args.requests // 2, args.requests - args.requests // 2]
    results: dict[str, tuple[list[float], float]] = {"bare": ([], 0.0), "form": ([], 0.0)}
    for kind, total in (("bare", half[0]), ("form", half[0]), ("form", half[1]), ("bare", half[1])):
        latencies, seconds = run_phase(clients, kind, total, deadline)
        results[kind] = (results[kind][0] + latencies, results[kind][1] + seconds)
    queries = {"bare": clients[0].bare(count_queries=True), "form": clients[0].save(count_queries=True)}

    failures = [failure for client in clients for failure in client.failures]
    saves = sum(c.saves for c in clients)
    bare_writes = sum(c.bare_writes for c in clients)
    # Every counted save is a new version of its form and an audit event; every bare request a row.
    stored = dict(
        FollowUp.objects.filter(patient__study_id__in=versions_before).values_list("patient__study_id", "version")
    )
    expected = {f.study_id: f.version for c in clients for f in c.forms}
    if stored != expected:
        failures.append("stored versions differ from the saves counted")
    events = FollowUp.pgh_event_model.objects.count() - events_before
    bare_rows = LogEntry.objects.filter(object_repr="bench").count() - bare_before
    if events != saves:
        failures.append(f"{events} audit events written for {saves} saves")
    if bare_rows != bare_writes:
        failures.append(f"{bare_rows} rows written by the bare view for {bare_writes} successes")
    messages = harness.redis_messages(work) if args.broker == "redis" else None
    return {
        "clients": clients,
        "results": results,
        "queries": queries,
        "failures": failures,
        "saves": saves,
        "events": events,
        "stored_ok": stored == expected,
        "bare_rows": bare_rows,
        "messages": None if messages is None else messages - (messages_before or 0),
    }


def report(size: int, figures: dict) -> float:
    """Print one size's table and checks; returns the ratio of the medians."""
    clients, results, queries = figures["clients"], figures["results"], figures["queries"]
    print()
    print(f"{size:,} patients")
    header = ("endpoint", "requests", "conc", "median ms", "p95 ms", "req/s", "queries")
    print("{:<26} {:>8} {:>5} {:>10} {:>8} {:>7} {:>8}".format(*header))
    medians = {}
    for kind, label in (("bare", "bare view (1-row INSERT)"), ("form", "form save (follow-up)")):
        latencies, seconds = results[kind]
        medians[kind] = statistics.median(latencies) * 1000
        print(
            f"{label:<26} {len(latencies):>8} {len(clients):>5} {medians[kind]:>10.1f} "
            f"{percentile(latencies, 0.95) * 1000:>8.1f} {len(latencies) / seconds:>7.1f} "
            f"{queries[kind].split(' ')[0] or '?':>8}"
        )
    ratio = medians["form"] / medians["bare"]
    verdict = "within" if ratio <= 2 else "ABOVE"
    print(f"ratio form save / bare view (median latency): {ratio:.2f}x, {verdict} the SPEC target of 2x")
    print(f"SQL statements per request (server side): bare {queries['bare']}; form save {queries['form']}")
    print(
        f"checks (warm-up included): {figures['saves']} saves redirected to the casebook, {figures['events']} audit "
        f"events, stored versions {'as counted' if figures['stored_ok'] else 'NOT as counted'}; "
        f"{figures['bare_rows']} rows by the bare view; problems: {len(figures['failures'])}"
    )
    if figures["messages"] is not None:
        print(f"broker: {figures['messages']} wake-up messages queued by the saves (no worker consumes them here)")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400, help="timed requests per endpoint (default 400)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument(
        "--sizes", default="1000,10000", help="seeded patients, comma-separated, each measured (default 1000,10000)"
    )
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests per endpoint and thread")
    parser.add_argument("--broker", choices=["redis", "eager"], default="redis")
    parser.add_argument("--time-limit", type=float, default=120, help="seconds for each size's phases (default 120)")
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.sizes.split(",") if size.strip()})
    if args.requests < 2 or args.concurrency < 1 or args.workers < 1 or not sizes:
        parser.error("--requests >= 2, --concurrency >= 1, --workers >= 1 and at least one size")

    # Stopped from outside: still stop the server and the broker (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    broker = server = None
    server_log = WORK / "gunicorn.log"
    ok = False
    try:
        pg_version, followup_triggers = prepare_database(WORK)
        logins = seed_up_to(sizes[0], WORK)
        broker, broker_env, broker_name = start_broker(args.broker, WORK)
        # LOG_LEVEL: no INFO line per login (django-axes) in the server log; warnings and errors stay
        # (and one line per request, as in production: cohort/operations.py).
        env = {**os.environ, "BENCH_FORM_SAVE_SERVER": "1", "LOG_LEVEL": "WARNING", **broker_env}
        if args.broker == "eager":
            env.pop("CELERY_BROKER_URL", None)
            env.pop("CELERY_RESULT_BACKEND", None)
        server, port = harness.start_gunicorn("form_save:application", args.workers, env, server_log, ROOT)
        print(
            f"form save benchmark: {os.cpu_count()} CPUs, embedded PostgreSQL {pg_version.split()[0]}; "
            f"gunicorn {args.workers} sync workers on 127.0.0.1:{port}, DEBUG off, static files collected "
            f"(WhiteNoise); broker: {broker_name}"
        )
        print(
            f"bare view: POST {BARE_URL}, one INSERT into django_admin_log (no triggers), redirect; "
            f"form save: POST follow-up form (cohort_followup: {followup_triggers} triggers), redirect"
        )
        ratios, failures = {}, []
        for size in sizes:
            logins = seed_up_to(size, WORK)
            plan = plan_clients(args.concurrency, logins)
            figures = measure(port, plan, args, WORK)
            if size == sizes[0]:
                names = ", ".join(sorted({c.username for c in figures["clients"]}))
                print(f"clients: {len(figures['clients'])} threads as nurses {names}")
            ratios[size] = report(size, figures)
            failures += figures["failures"]
        if len(sizes) > 1:
            print()
            growth = ", ".join(f"{size:,}: {ratio:.2f}x" for size, ratio in ratios.items())
            print(
                f"growth: ratio {growth}; largest/smallest {ratios[sizes[-1]] / ratios[sizes[0]]:.2f} "
                f"({sizes[-1] // sizes[0]}x the patients)"
            )
        if failures:
            sys.stdout.flush()
            print(f"FAILED: {len(failures)} problems, first ones:", file=sys.stderr)
            for failure in failures[:10]:
                print(f"  {failure}", file=sys.stderr)
            return 1
        print(f"whole run: {time.monotonic() - STARTED:.0f} s (database start, migrate and seed included)")
        ok = True
        return 0
    except Failure as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
        stop(server)
        stop(broker)
        text = server_log.read_text(errors="replace") if server_log.exists() else ""
        # One JSON line per request is the production request log (cohort/operations.py), not a problem.
        log = [line for line in text.splitlines() if line.strip() and '"event":"request"' not in line]
        if log:
            print(f"server log ({len(log)} lines besides the request log):", file=sys.stderr)
            print("\n".join(log[-20:]), file=sys.stderr)
        if ok and not log:
            shutil.rmtree(WORK, ignore_errors=True)
        else:
            print(f"kept for inspection: {WORK}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
