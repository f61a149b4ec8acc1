"""Benchmark: every page kind under load, served as in production, at two cohort sizes, against its floor.

Run: .venv/bin/python bench/pages.py [--sizes 1000,100000] [--seconds 30] [--floor-seconds 15] [--workers 2]

Method: a throwaway embedded PostgreSQL server, migrated and seeded with seed_demo (8 centres) up to
the smallest size; each larger size is a copy of the previous size's database (CREATE DATABASE ...
TEMPLATE) seeded on up to it, so every size keeps its own database (not timed). After seeding: the
automatic data checks (cohort/data_checks.py, which raise the open queries and store the patient
list's casebook summaries, cohort/listing.py) of every patient, as beat's hourly run leaves them,
and the outcome snapshots of the scopes the clients read ("all" and that centre), as a worker would
have left them; the CRF row tallies folded after the checks, as the hourly task does
(reports.tasks.data_checks, the code beat runs). Then the database is settled as an operator's would
be some minutes after a bulk load (harness.settle): VACUUM ANALYZE as the tables' owner (what
autovacuum does), a CHECKPOINT (the load's dirty pages written out) and no autovacuum worker
running, so that neither autovacuum nor the checkpointer works through the seed during the
measurement. The same pages and the same load at every size.

Order: each size's load runs in two halves, the sizes in turn and back (1,000, 100,000, 100,000,
1,000: A B B A), each served by its own gunicorn on its own database, the others idle; each half
after every client requested each of its kinds once more, untimed (the server's caches warm again). A drift of
the machine's speed during the run (another tenant of the host, the CPU's clock after the seeding)
then falls on every size alike. Until 2026-12-03 the sizes ran one after the other on one server,
the largest last, right after its seeding: a run's drift went wholly into the ratio (in one run
every kind's CPU, even the pages that read no patient, 3-7% slower at 100,000).

Server: per size, gunicorn (`--workers` sync workers) on a free loopback port with DEBUG off (a random
SECRET_KEY; SECURE_SSL_REDIRECT and secure cookies off, the only production settings changed, as
the benchmark speaks plain HTTP), static files collected into a temporary STATIC_ROOT by
collectstatic (compressed and hashed) and served by WhiteNoise; a throwaway redis-server is the
broker, with no worker. This script is the WSGI module: the project's URLconf plus the floor view.

Clients: 9 threads, each a browser over http.client (a new connection per request): 8 research nurses
of ONE centre (the demo's nurse and 7 more accounts made here), signed in through the login page, and
the coordinator (signed in with the password, then a TOTP code computed from a device made here).
Each client requests page kinds at random (uniformly among the kinds its role reaches; the same
sequence of kinds per client at every size, common random numbers, so that the sizes differ in their
data and not in their draw of the mix), each for a random patient of the centre where it needs one:
the patient list (first page, a random page, a search by part of a study ID, a monitoring filter),
the casebook, every form page, the patient's history, the query list, the outcomes dashboard, the
reports page, the enrolment form, the account pages; the coordinator also the list of all centres,
the locks pages. Every answer must be HTTP 200.
A warm-up pass requests every kind once per client and size (and the pages' static files once)
untimed; then `--seconds` of load per size, in its two halves. Latency is the client's wall clock
(connect to last byte).

CPU: every answer carries the server's CPU seconds of the request (harness.counting_queries): the
gunicorn worker's `time.process_time` and the PostgreSQL backend's scheduler clock (/proc), printed
as the mean per kind ("py ms", "pg ms"); and each load phase's CPU seconds by process group (the
machine, gunicorn, PostgreSQL inside and outside the requests, the client threads, everything else),
so that growth shows in the cost of a request, not only in latencies that depend on the machine's
other load.

Floor: for each page kind, a bare Django view behind the same middleware (session, login, django-otp,
the account checks, pghistory, messages, axes) rendering a plain Django form with as many fields as
the page has inputs, and a table with as many rows and cells as the page's tables (counted on the
page itself during warm-up), in a bare HTML page. The floors are loaded the same way for
`--floor-seconds` per size (two halves, A B B A) after the pages.

Printed per size: requests/s, p50 and p95 per page kind, the SQL statements of one request of the
kind (counted in the server), and the floor's p95; then per kind the 100,000/1,000 ratio of p95.
Targets (SPEC section 9, issue 14): p95 under 100 ms or within 1.5x of the floor's p95; the ratio
of the largest to the smallest size under 1.2.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
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
from dataclasses import dataclass, field
from pathlib import Path

STARTED = time.monotonic()
ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("BENCH_PAGES_SERVER") == "1"  # imported by gunicorn as the WSGI module
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cohort.settings")
if not SERVER:
    os.environ["DEBUG"] = "1"  # the parent seeds and checks; the server runs with DEBUG off
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(name, None)
    os.environ["EMBEDDED_PG_DIR"] = tempfile.mkdtemp(prefix="bench-pages-pg-")
    os.environ["EMBEDDED_PG_THROWAWAY"] = "1"

import django  # noqa: E402

django.setup()

import harness  # noqa: E402
from django import forms  # noqa: E402
from django.conf import settings  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.template import engines  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.views.decorators.http import require_safe  # noqa: E402
from harness import Browser, Failure, percentile, stop  # noqa: E402

FLOOR_URL = "/bench/floor/"
FLOOR_PAGE = engines["django"].from_string(
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body><main><h1>{{ title }}</h1>
<form method="post">{% csrf_token %}{{ form }}<button type="submit">Save</button></form>
<table><tbody>{% for row in rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table></main></body></html>"""
)


def _count(request: HttpRequest, name: str) -> int:
    return max(0, min(int(request.GET.get(name) or 0), 5000))


@require_safe
def floor(request: HttpRequest) -> HttpResponse:
    """The floor of a page kind: a plain form with `fields` fields and a table of `rows` x `cells`."""
    fields, rows, cells = _count(request, "fields"), _count(request, "rows"), _count(request, "cells")
    form_class = type("Floor", (forms.Form,), {f"field_{i}": forms.CharField(required=False) for i in range(fields)})
    table = [[f"{r}.{c}" for c in range(cells)] for r in range(rows)]
    return HttpResponse(FLOOR_PAGE.render({"title": "floor", "form": form_class(), "rows": table}, request))


urlpatterns = [
    path(FLOOR_URL.strip("/") + "/", floor, name="bench-floor"),
    path("", include("cohort.site_urls")),
]
# This module is the URLconf (the project's plus the floor view), in the server and in the parent.
settings.ROOT_URLCONF = __name__

if SERVER:
    from cohort import wsgi  # the production application, loaded and frozen as gunicorn's workers load it

    application = harness.counting_queries(wsgi.application)


# --- the load generator (parent process) ---------------------------------------------------------

NURSES = 8
STATIC_RE = re.compile(r'(?:href|src)="(/static/[^"]+)"')
FIELD_RE = re.compile(r"<(?:select|textarea)\b|<input\b(?![^>]*type=\"hidden\")")


@dataclass
class Kind:
    """A page kind: its name and how to make a URL of it for a client (rng, the centre's data)."""

    name: str
    url: object  # (random.Random, Cohort) -> str
    shape: str = ""  # the floor's query string, counted on the page during warm-up


@dataclass
class Cohort:
    """What the clients pick their URLs from, read after each size is seeded."""

    study_ids: list[str]  # a sample of the measured centre's patients
    all_study_ids: list[str]  # a sample of every centre's patients (the coordinator's)
    pages: int  # pages of the nurses' patient list
    all_pages: int  # pages of the coordinator's list
    query_ids: list[int] = field(default_factory=list)  # open queries of the centre


def nurse_kinds() -> list[Kind]:
    from cohort import crf, monitoring

    def patient(suffix: str):
        return lambda rng, c: f"/patients/{rng.choice(c.study_ids)}/{suffix}"

    kinds = [
        Kind("patient list", lambda rng, c: "/patients/"),
        Kind("patient list, page n", lambda rng, c: f"/patients/?page={rng.randint(1, c.pages)}"),
        Kind("patient list, search", lambda rng, c: f"/patients/?q={search_term(rng.choice(c.study_ids))}"),
        Kind("patient list, filter", lambda rng, c: f"/patients/?filter={rng.choice(list(monitoring.FILTERS))}"),
        Kind("casebook", patient("")),
        Kind("history", patient("history/")),
    ]
    for case_form in crf.FORMS:
        where = "rows" if case_form.repeating else "forms"
        kinds.append(Kind(f"form {case_form.key}", patient(f"{where}/{case_form.key}/")))
    kinds += [
        Kind("query list", lambda rng, c: "/queries/"),
        Kind("query", lambda rng, c: f"/queries/{rng.choice(c.query_ids)}/"),
        Kind("outcomes dashboard", lambda rng, c: "/outcomes/"),
        Kind("reports", lambda rng, c: "/reports/"),
        Kind("enrolment form", lambda rng, c: "/patients/new/"),
        Kind("password change", lambda rng, c: "/accounts/password/change/"),
        Kind("two-factor page", lambda rng, c: "/accounts/mfa/"),
    ]
    return kinds


def coordinator_kinds() -> list[Kind]:
    from cohort import monitoring

    def patient(suffix: str):
        return lambda rng, c: f"/patients/{rng.choice(c.all_study_ids)}/{suffix}"

    return [
        Kind("coord: patient list", lambda rng, c: "/patients/"),
        Kind("coord: patient list, page n", lambda rng, c: f"/patients/?page={rng.randint(1, c.all_pages)}"),
        Kind("coord: patient list, filter", lambda rng, c: f"/patients/?filter={rng.choice(list(monitoring.FILTERS))}"),
        Kind("coord: casebook", patient("")),
        Kind("coord: form follow_up", patient("forms/follow_up/")),
        Kind("coord: query list", lambda rng, c: "/queries/"),
        Kind("coord: outcomes dashboard", lambda rng, c: "/outcomes/"),
        Kind("coord: reports", lambda rng, c: "/reports/"),
        Kind("coord: locks", lambda rng, c: "/locks/"),
    ]


def floor_shape(page: str) -> str:
    """The floor's query string for a page: its input fields, its table rows and cells per row."""
    fields = len(FIELD_RE.findall(page))
    rows = page.count("<tr")
    cells = round((page.count("<td") + page.count("<th")) / rows) if rows else 0
    return f"fields={fields}&rows={rows}&cells={cells}"


class Client(threading.Thread):
    """One signed-in user requesting its kinds at random until the deadline."""

    def __init__(self, browser: Browser, kinds: list[Kind], seed: int):
        super().__init__(daemon=True)
        self.browser, self.kinds, self.seed = browser, kinds, seed
        # Two generators: the sequence of kinds comes from its own, so that every size (and the
        # floors) sees the same sequence per client, whatever the URLs drew from the other one (a
        # choice among 231 or 12,500 patients draws a different number of random bits).
        self.order, self.rng = random.Random(seed), random.Random(seed + 1)
        self.cohort: Cohort | None = None
        self.floors = False
        self.deadline = 0.0
        self.latencies: dict[str, list[float]] = {}
        self.cpu: dict[str, list[tuple[float, float]]] = {}  # the server's (python, postgres) seconds
        self.failures: list[str] = []

    def fetch(self, kind: Kind) -> tuple[float, bytes]:
        url = FLOOR_URL + "?" + kind.shape if self.floors else kind.url(self.rng, self.cohort)
        started = time.perf_counter()
        status, location, _, body = self.browser.request("GET", url)
        elapsed = time.perf_counter() - started
        if status != 200:
            self.failures.append(f"{kind.name}: GET {url}: HTTP {status} {location}")
        return elapsed, body

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            kind = self.order.choice(self.kinds)
            try:
                elapsed, _ = self.fetch(kind)
            except OSError as error:
                self.failures.append(f"{kind.name}: {error!r}")
                continue
            self.latencies.setdefault(kind.name, []).append(elapsed)
            if self.browser.cpu is not None:
                self.cpu.setdefault(kind.name, []).append(self.browser.cpu)


@dataclass
class Phase:
    """What one load phase measured: latencies and the server's CPU per request, by kind; the wall
    time; the machine's CPU seconds by process group (harness.MachineCpu.delta)."""

    latencies: dict[str, list[float]]
    cpu: dict[str, list[tuple[float, float]]]
    wall: float
    usage: dict[str, float]


def load(clients: list[Client], seconds: float, floors: bool, machine: harness.MachineCpu, run: int) -> Phase:
    """Every client requesting at random for `seconds`; the clients' sequences of kinds are those of
    their seed and `run`, the same at every size."""
    threads = []
    for client in clients:
        thread = Client(client.browser, client.kinds, client.seed + 1000 * run)
        thread.cohort, thread.floors, thread.deadline = client.cohort, floors, time.monotonic() + seconds
        threads.append(thread)
    before = machine.snapshot()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    usage = machine.delta(before, machine.snapshot())
    latencies: dict[str, list[float]] = {}
    cpu: dict[str, list[tuple[float, float]]] = {}
    for thread in threads:
        client_failures = thread.failures
        if client_failures:
            raise Failure(f"{len(client_failures)} failed requests, first: {client_failures[:3]}")
        for name, values in thread.latencies.items():
            latencies.setdefault(name, []).extend(values)
        for name, values in thread.cpu.items():
            cpu.setdefault(name, []).extend(values)
    return Phase(latencies, cpu, wall, usage)


def joined(first: Phase | None, second: Phase) -> Phase:
    """Two load phases of one size as one: their requests, wall time and CPU seconds added up."""
    if first is None:
        return second
    latencies = {name: [*first.latencies.get(name, []), *second.latencies.get(name, [])]
                 for name in {*first.latencies, *second.latencies}}  # fmt: skip
    cpu = {name: [*first.cpu.get(name, []), *second.cpu.get(name, [])] for name in {*first.cpu, *second.cpu}}
    usage = {key: first.usage[key] + second.usage[key] for key in first.usage}
    return Phase(latencies, cpu, first.wall + second.wall, usage)


def cpu_means(samples: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean python and postgres CPU milliseconds per request."""
    if not samples:
        return float("nan"), float("nan")
    return (1000 * statistics.fmean(py for py, _ in samples), 1000 * statistics.fmean(pg for _, pg in samples))


def warm_up(clients: list[Client], static_checked: set[str]) -> dict[str, str]:
    """Every kind once per client, untimed; each page's static files once (through WhiteNoise);
    each kind's floor shape from its page; the SQL statements of one request of each kind."""
    queries = {}
    for client in clients:
        for kind in client.kinds:
            url = kind.url(client.rng, client.cohort)
            status, location, counted, body = client.browser.request("GET", url, headers={"X-Bench-Count-Queries": "1"})
            if status != 200:
                raise Failure(f"{kind.name}: GET {url}: HTTP {status} {location}")
            page = body.decode()
            kind.shape = kind.shape or floor_shape(page)
            queries.setdefault(kind.name, counted.split(" ")[0])
            for asset in set(STATIC_RE.findall(page)) - static_checked:
                static_checked.add(asset)
                if client.browser.request("GET", asset)[0] != 200:
                    raise Failure(f"static file {asset} not served")
    return queries


def rewarm(clients: list[Client], floors: bool) -> None:
    """Every kind (or its floor) once per client, untimed, before each half of a size's load: its
    server sat idle while another size was loaded, its workers' and PostgreSQL's caches gone cold."""
    for client in clients:
        for kind in client.kinds:
            url = FLOOR_URL + "?" + kind.shape if floors else kind.url(client.rng, client.cohort)
            status, location, _, _ = client.browser.request("GET", url)
            if status != 200:
                raise Failure(f"{kind.name}: GET {url}: HTTP {status} {location}")


def setup_accounts(logins: dict[str, tuple[str, str]]):
    """The demo nurse of the first centre and NURSES - 1 more there; the coordinator with a TOTP
    device. (username, password) pairs, and the coordinator's (username, password, device)."""
    from django.contrib.auth.models import User
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from cohort.choices import Role
    from cohort.models import Membership

    demo = Membership.objects.filter(role=Role.NURSE).select_related("user", "centre").order_by("centre__code")[0]
    nurses = [(demo.user.username, logins[demo.user.username][1])]
    for number in range(2, NURSES + 1):
        username, password = f"bench.nurse{number}.{demo.centre.code.lower()}", secrets.token_urlsafe(12)
        user = User.objects.create_user(username=username, password=password, email=f"{username}@example.org")
        Membership.objects.create(user=user, centre=demo.centre, role=Role.NURSE)
        nurses.append((username, password))
    coordinator = Membership.objects.filter(role=Role.COORDINATOR).select_related("user").first().user
    device = TOTPDevice.objects.create(user=coordinator, name="bench device", confirmed=True)
    return demo.centre, nurses, (coordinator.username, logins[coordinator.username][1], device)


def sign_in_coordinator(browser: Browser, username: str, password: str, device) -> None:
    from django_otp.oath import totp

    browser.login(username, password)
    code = totp(device.bin_key, device.step, device.t0, device.digits, device.drift)
    status, location = browser.post_form("/accounts/mfa/verify/", {"token": f"{code:0{device.digits}d}"})
    if status != 302:
        raise Failure(f"coordinator's TOTP code refused: HTTP {status} {location}")


def use_database(name: str) -> dict[str, str]:
    """Point this process at the embedded server's database `name` (Django's connection, and the
    owner's URL that harness.settle reads); its URLs as a server's environment has them."""
    from django.db import connection

    from cohort import embedded_pg

    connection.ensure_connection()  # the embedded server started, its socket directory known
    socket_dir = connection.settings_dict["HOST"]
    connection.close()
    connection.settings_dict["NAME"] = name
    urls = {
        "DATABASE_URL": embedded_pg.url(socket_dir, embedded_pg.APP_ROLE, name),
        "DATABASE_OWNER_URL": embedded_pg.url(socket_dir, embedded_pg.OWNER_ROLE, name),
    }
    os.environ.update(urls)
    return urls


def clone_database(source: str, target: str) -> None:
    """CREATE DATABASE target as a copy of source, as their owner (nothing may be connected to it)."""
    import psycopg2
    from django.db import connection

    connection.close()
    owner = psycopg2.connect(os.environ["DATABASE_OWNER_URL"].replace(f"/{source}?", "/postgres?"))
    try:
        owner.autocommit = True
        with owner.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
    finally:
        owner.close()


def seed_to(size: int, work: Path, centre) -> tuple[int, float]:
    """seed_demo up to `size` patients, then the data checks of every patient (as beat's hourly run)
    and the outcome snapshots of "all" and `centre`."""
    from django.core.management import call_command

    from cohort.models import Patient
    from reports import services
    from reports.tasks import data_checks as hourly_data_checks

    missing = size - Patient.objects.count()
    started = time.monotonic()
    if missing > 0:
        with contextlib.redirect_stdout(io.StringIO()):
            call_command("seed_demo", patients=missing, centres=8, seed=size, logins_file=str(work / "demo_logins.txt"))
    harness.vacuum_analyze()  # the planner's statistics of the seed, for the data checks
    if centre is not None:
        hourly_data_checks()  # every patient's checks, then the tallies folded, as beat's hourly run
        for scope in ("all", centre.code):
            services.recompute(scope)
            if services.latest_snapshot(scope) is None:
                raise Failure(f"no outcome snapshot of {scope}")
    # As the database is some minutes after a bulk load, when the operator measures: analyzed (the
    # planner's estimates; the open queries just raised included), vacuumed (the visibility map of
    # index-only scans), checkpointed, and autovacuum idle; not at work during the load.
    harness.settle()
    return Patient.objects.count(), time.monotonic() - started


def search_term(study_id: str) -> str:
    """What the search kind types: the study ID's centre code and the first digit of its number
    ("AMC-2"), which matches a page or more of the centre's patients at every size (32 to 100 of
    its 231 at 1,000 patients, 99 to thousands at 100,000). The ID's last three digits matched 1
    or 2 patients at 1,000 but a full page at 100,000: not the same request at both sizes."""
    prefix, _, number = study_id.rpartition("-")
    return f"{prefix}-{number[0]}"


def cohort_of(centre) -> Cohort:
    from cohort.models import Patient, Query, QueryState
    from cohort.views import PAGE_SIZE

    rng = random.Random(1)
    mine = list(Patient.objects.filter(centre=centre).values_list("study_id", flat=True))
    every = list(Patient.objects.values_list("study_id", flat=True))
    open_queries = list(
        Query.objects.filter(patient__centre=centre, state=QueryState.OPEN).values_list("pk", flat=True)[:500]
    )
    if not open_queries:
        raise Failure("the data checks raised no open query at the measured centre")
    return Cohort(
        study_ids=rng.sample(mine, min(500, len(mine))),
        all_study_ids=rng.sample(every, min(500, len(every))),
        pages=-(-len(mine) // PAGE_SIZE),
        all_pages=-(-len(every) // PAGE_SIZE),
        query_ids=open_queries,
    )


def report(size: int, phase: Phase, floors: Phase, queries: dict, kinds: list[Kind]) -> None:
    results, wall = phase.latencies, phase.wall
    total = sum(len(v) for v in results.values())
    print(f"\n{size:,} patients: {total} requests in {wall:.1f} s, {total / wall:.1f} requests/s")
    columns = ("page kind", "n", "p50 ms", "p95 ms", "py ms", "pg ms", "SQL", "floor p95", "x floor")
    print("{:<30} {:>5} {:>7} {:>7} {:>6} {:>6} {:>4} {:>9} {:>7}  floor shape".format(*columns))
    for kind in kinds:
        values, floor_values = results.get(kind.name, []), floors.latencies.get(kind.name, [])
        if not values:
            print(f"{kind.name:<30} (no requests)")
            continue
        p95 = percentile(values, 0.95) * 1000
        floor_p95 = percentile(floor_values, 0.95) * 1000 if floor_values else float("nan")
        py, pg = cpu_means(phase.cpu.get(kind.name, []))
        verdict = "" if p95 < 100 or p95 <= 1.5 * floor_p95 else "  MISSED"
        print(
            f"{kind.name:<30} {len(values):>5} {statistics.median(values) * 1000:>7.1f} {p95:>7.1f} {py:>6.1f} "
            f"{pg:>6.1f} {queries.get(kind.name, '?'):>4} {floor_p95:>9.1f} {p95 / floor_p95:>6.2f}x  "
            f"{kind.shape}{verdict}"
        )
    everything = [v for values in results.values() for v in values]
    py, pg = cpu_means([sample for samples in phase.cpu.values() for sample in samples])
    floor_py, floor_pg = cpu_means([sample for samples in floors.cpu.values() for sample in samples])
    print(f"{'all pages':<30} {len(everything):>5} {statistics.median(everything) * 1000:>7.1f} "
          f"{percentile(everything, 0.95) * 1000:>7.1f} {py:>6.1f} {pg:>6.1f}")  # fmt: skip
    print(f"{'all floors':<30} {sum(len(v) for v in floors.latencies.values()):>5} {'':>7} {'':>7} "
          f"{floor_py:>6.1f} {floor_pg:>6.1f}")  # fmt: skip
    for name, measured in (("pages", phase), ("floors", floors)):
        usage, cpus = measured.usage, os.cpu_count() or 1
        in_requests = [sample for samples in measured.cpu.values() for sample in samples]
        py_sum, pg_sum = sum(py for py, _ in in_requests), sum(pg for _, pg in in_requests)
        rest = usage["machine"] - usage["gunicorn"] - usage["postgres"] - usage["clients"]
        print(
            f"CPU during the {name} ({usage['wall']:.1f} s, {cpus} CPUs, CPU seconds): machine {usage['machine']:.1f}; "
            f"gunicorn {usage['gunicorn']:.1f} (in requests {py_sum:.1f}); PostgreSQL {usage['postgres']:.1f} "
            f"(backends in requests {pg_sum:.1f}, the rest {usage['postgres'] - pg_sum:.1f}); "
            f"this script's clients {usage['clients']:.1f}; other processes {rest:.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000", help="cohort sizes, ascending (default 1000,100000)")
    parser.add_argument("--seconds", type=float, default=30, help="seconds of page load per size (default 30)")
    parser.add_argument("--floor-seconds", type=float, default=15, help="seconds of floor load per size")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    from django.core.management import call_command

    from cohort import embedded_pg
    from cohort.management.commands.seed_demo import _read_logins

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    broker = None
    servers: dict[int, subprocess.Popen] = {}
    ok = False
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            call_command("migrate", verbosity=0)
        seed_to(sizes[0], work, None)
        centre, nurses, (coordinator, password, device) = setup_accounts(_read_logins(work / "demo_logins.txt"))
        # One database per size: the smallest seeded, checked and settled, then copied and the copy
        # seeded up to the next size; each served by its own gunicorn, so that the sizes' loads can
        # alternate.
        databases: dict[int, dict[str, str]] = {}
        cohorts: dict[int, Cohort] = {}
        seeding: dict[int, float] = {}
        name = embedded_pg.DATABASE_NAME
        for size in sizes:
            if databases:
                previous, name = name, f"{embedded_pg.DATABASE_NAME}_{size}"
                clone_database(previous, name)
            urls = use_database(name)
            seeded, seeding_seconds = seed_to(size, work, centre)
            databases[seeded], cohorts[seeded], seeding[seeded] = urls, cohort_of(centre), seeding_seconds
        broker, broker_env = harness.start_redis(work)
        env = {
            **os.environ,
            **broker_env,
            "BENCH_PAGES_SERVER": "1",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            "SECURE_COOKIES": "0",
            "STATIC_ROOT": str(work / "static"),
            "LOG_LEVEL": "WARNING",  # no line per request or login in the server log
        }
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
        )
        postmaster = int((Path(os.environ["EMBEDDED_PG_DIR"]) / "postmaster.pid").read_text().split()[0])
        nurse_kinds_, coordinator_kinds_ = nurse_kinds(), coordinator_kinds()
        kinds = nurse_kinds_ + coordinator_kinds_
        clients: dict[int, list[Client]] = {}
        machines: dict[int, harness.MachineCpu] = {}
        queries: dict[int, dict[str, str]] = {}
        static_checked: set[str] = set()
        for seeded, urls in databases.items():
            servers[seeded], port = harness.start_gunicorn(
                "pages:application", args.workers, {**env, **urls}, work / f"gunicorn-{seeded}.log", ROOT
            )
            machines[seeded] = harness.MachineCpu(servers[seeded].pid, postmaster)
            browsers = []
            for username, secret in nurses:
                browsers.append(Browser(port))
                browsers[-1].login(username, secret)
            browsers.append(Browser(port))
            sign_in_coordinator(browsers[-1], coordinator, password, device)
            clients[seeded] = [Client(b, nurse_kinds_, 2 * i) for i, b in enumerate(browsers[:-1])]
            clients[seeded].append(Client(browsers[-1], coordinator_kinds_, 2 * NURSES))
            for client in clients[seeded]:
                client.cohort = cohorts[seeded]
            queries[seeded] = warm_up(clients[seeded], static_checked)
        print(
            f"pages benchmark: {os.cpu_count()} CPUs; gunicorn {args.workers} sync workers per size, DEBUG off, "
            f"WhiteNoise; redis-server broker, no worker; {NURSES} nurses of {centre.code} and a coordinator "
            f"(TOTP); {args.seconds:.0f} s of pages and {args.floor_seconds:.0f} s of floors per size, in two "
            f"halves, the sizes in turn and back ({', '.join(f'{s:,}' for s in [*databases, *reversed(databases)])})"
        )
        # The sizes' loads in turn and back again (A B B A): a drift of the machine's speed during the
        # run (another tenant of the host, its clock) falls on every size alike, not on the last.
        phases: dict[int, Phase] = {}
        floor_phases: dict[int, Phase] = {}
        for floors, seconds, into in ((False, args.seconds, phases), (True, args.floor_seconds, floor_phases)):
            for run, order in enumerate((list(databases), list(reversed(databases)))):
                for seeded in order:
                    rewarm(clients[seeded], floors)
                    part = load(clients[seeded], seconds / 2, floors=floors, machine=machines[seeded], run=run)
                    into[seeded] = joined(into.get(seeded), part)
        for seeded in databases:
            print(f"\n(seeded {seeded:,} patients, data checks and snapshots in {seeding[seeded]:.0f} s; "
                  f"{len(cohorts[seeded].query_ids)} open queries at {centre.code})")  # fmt: skip
            report(seeded, phases[seeded], floor_phases[seeded], queries[seeded], kinds)
        if len(phases) > 1:
            small, large = phases[min(phases)], phases[max(phases)]
            print(f"\n{max(phases):,} / {min(phases):,} patients: p95 ratio (target < 1.2), and the server's "
                  "CPU per request (python + postgres ms) at both sizes and its ratio:")  # fmt: skip
            for kind in kinds:
                if kind.name in small.latencies and kind.name in large.latencies:
                    ratio = percentile(large.latencies[kind.name], 0.95) / percentile(small.latencies[kind.name], 0.95)
                    before, after = (sum(cpu_means(p.cpu.get(kind.name, []))) for p in (small, large))
                    print(f"  {kind.name:<30} {ratio:>5.2f}{'' if ratio < 1.2 else '  MISSED':<8} "
                          f"CPU {before:>6.1f} -> {after:>6.1f} ms  {after / before:>5.2f}")  # fmt: skip
            before, after = (sum(cpu_means([x for v in p.cpu.values() for x in v])) for p in (small, large))
            mix = f"CPU {before:>6.1f} -> {after:>6.1f} ms  {after / before:>5.2f}"
            print(f"  {'all pages (the mix)':<30} {'':>13} {mix}")
            # The floors do the same work at both sizes: their ratio is what the machine's other load
            # did to CPU time itself (shared caches, the hypervisor), the yardstick for the ratios above.
            small, large = floor_phases[min(phases)], floor_phases[max(phases)]
            before, after = (sum(cpu_means([x for v in p.cpu.values() for x in v])) for p in (small, large))
            same = f"CPU {before:>6.1f} -> {after:>6.1f} ms  {after / before:>5.2f}"
            print(f"  {'floors (the same work)':<30} {'':>13} {same}")
        print(f"\nwhole run: {time.monotonic() - STARTED:.0f} s (database start, migrate and seed included)")
        ok = True
        return 0
    except Failure as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
        for server in servers.values():
            stop(server)
        stop(broker)
        text = "\n".join(log.read_text(errors="replace") for log in sorted(work.glob("gunicorn-*.log")))
        # One JSON line per request is the production request log (cohort/operations.py), not a problem.
        log = "\n".join(line for line in text.splitlines() if not line.startswith('{"event":"request"')).strip()
        if log:
            print(f"server log ({len(log.splitlines())} lines):", file=sys.stderr)
            print("\n".join(log.splitlines()[-20:]), file=sys.stderr)
        if ok and not log:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept for inspection: {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
