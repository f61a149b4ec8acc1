"""Shared test set-up: the PostgreSQL server in use, and the real Redis and Celery worker.

The suite always runs against PostgreSQL (SPEC section 6): `DATABASE_URL` when set, otherwise the
embedded server (cohort.embedded_pg), started at the first connection (`make test` makes it a
throwaway one). pytest-django creates the `test_...` database on it, as the owner role when
there is one (DATABASE_OWNER_URL; the embedded server has one).

Tests of background work run a real Redis server (the Debian `redis-server` binary, on a free
loopback port, nothing saved to disk) and a real `celery -A cohort worker` subprocess pointed at the
test database. Such tests:

- are marked `@pytest.mark.services` (tests that use these fixtures get the mark automatically, so
  `-m "not services"` leaves them out);
- use `@pytest.mark.django_db(transaction=True)`, because the worker reads through its own
  connection and only sees committed rows;
- request `celery_worker` and `celery_on_redis` (the latter points `cohort.celery.app` at the
  Redis server, not eager, for the duration of the test).

Tests that kill or freeze Redis, or kill a worker, run their own: `RedisServer` (stopped, frozen
and restarted on the same port), `start_worker` and `start_beat` (real `celery -A cohort worker`
and `beat` subprocesses on a given broker, with the production settings: no result backend).
Tests wait for conditions with a deadline (`wait_for`), never for a fixed time.

Without `redis-server` they are skipped with the reason; with `REQUIRE_SERVICES=1` (CI) that is a
failure instead. A failing test that used the worker shows the worker's log in its report.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
SERVICE_FIXTURES = {"redis_server", "celery_worker", "celery_on_redis"}
WORKER_LOG_KEY = pytest.StashKey[Path]()


def services_required() -> bool:
    return os.environ.get("REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes", "on"}


def redis_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (path for path in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(path, os.X_OK)),
        None,
    )


def skip_or_fail(reason: str):
    if services_required():
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------------------------------
# Hooks


def pytest_report_header(config) -> list[str]:
    from django.db import connections

    try:
        # Not through Django's managed connection (database access is not unblocked yet); starts
        # the embedded server if that is the one in use.
        wrapper = connections["default"]
        conn = wrapper.get_new_connection(wrapper.get_connection_params())
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT version()")
                (version,) = cursor.fetchone()
        finally:
            conn.close()
    except Exception as exc:  # the header must not stop the run; the tests will say what is wrong
        version = f"not reachable ({exc.__class__.__name__}: {str(exc).strip()})"
    from cohort import embedded_pg

    where = "DATABASE_URL"
    if embedded_pg._servers:
        throwaway = os.environ.get("EMBEDDED_PG_THROWAWAY") == "1"
        where = "embedded, throwaway" if throwaway else "embedded"
    redis = redis_binary() or "not installed (services tests will be skipped)"
    return [
        f"postgresql ({where}): {version}",
        f"redis-server: {redis}",
        f"REQUIRE_SERVICES: {'set' if services_required() else 'not set'}",
    ]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    # Before `-m` deselection runs, so `-m "not services"` also drops unmarked users of the fixtures.
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("services"):
            item.add_marker(pytest.mark.services)


def pytest_runtest_setup(item) -> None:
    if item.get_closest_marker("services") and redis_binary() is None:
        skip_or_fail("redis-server is not installed (Debian: apt-get install redis-server)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    log = item.config.stash.get(WORKER_LOG_KEY, None)
    if report.failed and log is not None and "celery_worker" in getattr(item, "fixturenames", ()):
        report.sections.append(("celery worker log", tail(log)))
    return report


def tail(path: Path, lines: int = 80) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


# ---------------------------------------------------------------------------------------------
# Fixtures


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def wait_for(predicate, timeout: float = 45, what: str = "condition", log: Path | None = None):
    """The first true value of `predicate()`, polled until the deadline (then an AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s" + (f"\n{tail(log)}" if log else ""))
        time.sleep(0.1)


class RedisServer:
    """A private redis-server on a fixed loopback port, persisting nothing, that a test may kill,
    freeze (SIGSTOP) and start again on the same port."""

    def __init__(self, workdir: Path):
        self.binary = redis_binary()
        if self.binary is None:
            skip_or_fail("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = free_port()
        self.workdir = workdir
        self.log = workdir / "redis.log"
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                + ["--dir", str(self.workdir), "--daemonize", "no"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        client = redis.Redis.from_url(self.url, socket_timeout=1)

        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited:\n{tail(self.log)}")
            try:
                return client.ping()
            except redis.exceptions.ConnectionError:
                return False

        try:
            wait_for(answers, timeout=15, what=f"redis-server on port {self.port}", log=self.log)
        finally:
            client.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            stop(self.process)


def service_env(database_url: str, broker: str, **extra) -> dict[str, str]:
    """The environment of a worker or beat subprocess: production settings on the test database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "EMBEDDED_PG_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="cohort.settings",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker,
        DEBUG="1",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def start_worker(
    database_url: str, broker: str, log: Path, *, pool: str = "solo", name: str = "worker", **env_extra
) -> subprocess.Popen:
    """A `celery -A cohort worker` subprocess (one task at a time) that answers a ping on `broker`."""
    from celery import Celery

    node = f"{name}-{time.monotonic_ns()}@{socket.gethostname()}"
    command = [sys.executable, "-m", "celery", "-A", "cohort", "worker", f"--pool={pool}", "--concurrency=1"]
    command += ["-l", "info", "-n", node, "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=BASE_DIR,
            env=service_env(database_url, broker, **env_extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    probe = Celery("probe", broker=broker, set_as_current=False)
    try:

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the worker exited with {process.returncode}:\n{tail(log)}")
            return bool(probe.control.ping(destination=[node], timeout=0.5))

        wait_for(answers, timeout=90, what=f"the worker {node} to answer", log=log)
    except BaseException:
        stop(process)
        raise
    finally:
        probe.close()
    return process


def start_beat(database_url: str, broker: str, log: Path) -> subprocess.Popen:
    """`celery -A cohort beat` with the production schedule (the sweeps), on `broker`."""
    schedule = log.parent / f"beat-schedule-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "celery", "-A", "cohort", "beat", "-l", "info", "-s", str(schedule)]
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=BASE_DIR,
            env=service_env(database_url, broker),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


@contextlib.contextmanager
def table_locked(table: str, mode: str = "ACCESS EXCLUSIVE"):
    """Hold a lock on `table` from a connection of the test's own: whoever reads it (ACCESS EXCLUSIVE)
    or writes it (EXCLUSIVE), a worker mid-render or mid-recompute, waits there, alive, until the
    block ends."""
    from django.db import connections

    holder = connections.create_connection("default")
    holder.ensure_connection()
    try:
        with holder.connection.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(f"LOCK TABLE {table} IN {mode} MODE")
        yield
    finally:
        with holder.connection.cursor() as cursor:
            cursor.execute("ROLLBACK")
        holder.close()


def waiting_on_lock(table: str) -> bool:
    """Whether some connection waits for a lock on `table` (a worker held up by `table_locked`)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass", [table])
        return cursor.fetchone()[0] > 0


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """The suite connects as the owner role when there is one (the embedded default has one).

    pytest-django creates, migrates and empties (TRUNCATE) the test database, which is exactly what
    the app role may not do. The app role itself is tested in test_database_roles.py, and the
    Celery worker subprocesses connect as it (`test_database_url`).
    """
    from django.conf import settings

    if settings.DATABASE_OWNER:
        settings.DATABASES["default"].update(settings.DATABASE_OWNER)


@pytest.fixture(scope="session")
def test_database_url(django_db_setup, django_db_blocker) -> str:
    """DATABASE_URL of pytest-django's test database, for subprocesses (worker, settings checks):
    the app role's, like the web, worker and beat processes of production."""
    from django.db import connection

    from cohort import embedded_pg

    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    if connection.settings_dict["ENGINE"] == embedded_pg.ENGINE:
        # Started on the first connection, which a run without database tests has not made yet.
        embedded_pg.join(connection.settings_dict)
    url = urlsplit(os.environ["DATABASE_URL"])  # set by the caller, or exported by the embedded server
    return urlunsplit(url._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> str:
    """A private Redis on a free loopback port, persisting nothing; yields its URL."""
    binary = redis_binary()
    if binary is None:
        skip_or_fail("redis-server is not installed (Debian: apt-get install redis-server)")
    import redis

    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    log = workdir / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(workdir), "--daemonize", "no"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1)
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stop(process)
                    pytest.fail(f"redis-server did not start on port {port}:\n{tail(log)}", pytrace=False)
                time.sleep(0.1)
        yield url
    finally:
        client.close()
        stop(process)


@pytest.fixture(scope="session")
def celery_worker(request, redis_server, test_database_url, tmp_path_factory) -> str:
    """A real `celery -A cohort worker` subprocess on the test database and the Redis broker.

    Yields the worker's node name. Tests using it need `django_db(transaction=True)`.
    """
    from celery import Celery

    log = tmp_path_factory.mktemp("celery") / "worker.log"
    request.config.stash[WORKER_LOG_KEY] = log
    node = f"test-worker-{os.getpid()}@{socket.gethostname()}"
    # A result backend for tests/test_worker.py, which waits for a task's result; the app's own
    # tasks ignore results (fire-and-forget).
    env = service_env(test_database_url, redis_server, CELERY_RESULT_BACKEND=redis_server)
    command = [sys.executable, "-m", "celery", "-A", "cohort", "worker", "--pool=solo", "--concurrency=1"]
    # No gossip/mingle/heartbeat: a lone worker has no peers, and mingle adds seconds to the start.
    command += ["-l", "info", "-n", node, "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    probe = Celery("probe", broker=redis_server, set_as_current=False)
    try:
        deadline = time.monotonic() + 90
        while not probe.control.ping(destination=[node], timeout=1.0):
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                state = f"exited with {process.returncode}" if process.poll() is not None else "timed out"
                pytest.fail(f"Celery worker did not answer ping ({state}). Its log:\n{tail(log)}", pytrace=False)
        yield node
    finally:
        probe.close()
        stop(process, timeout=20)
        if process.returncode not in (0, -15):  # anything but a clean exit or our SIGTERM
            sys.stderr.write(f"\nCelery worker exited with {process.returncode}. Its log:\n{tail(log)}\n")


def _drop_broker_connections(app) -> None:
    # Celery caches the broker pool, producer pool and result backend on first use; drop them so
    # the next use connects to the configuration in force (private attributes, test-only).
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    app._backend_cache = None
    if hasattr(app._local, "backend"):
        del app._local.backend
    # kombu keeps producer pools in a process-wide registry keyed by the broker URL: a pool
    # closed above would be handed out again for the same URL.
    import kombu.pools

    kombu.pools.reset()


@pytest.fixture
def celery_on_redis(settings, redis_server):
    """`cohort.celery.app` sends to the test Redis (not eager, no result backend, as in production)
    for this test; restored afterwards. `point_at(app, url)` moves it to another broker."""
    from cohort.celery import app
    from reports import background, services

    # Read the app's configuration before the settings change: its first read loads them.
    keys = ("broker_url", "result_backend", "task_always_eager")
    saved = {key: app.conf[key] for key in keys}
    settings.CELERY_BROKER_URL = redis_server
    settings.CELERY_TASK_ALWAYS_EAGER = False
    # An earlier test's broker outage must not keep this one's wake-ups from being sent, nor its
    # wake-ups (purged at its end) stand for this one's.
    background._broker_down_until = 0.0
    services._woken.clear()
    # Celery's process-wide "inside a task" flag: an eager task run by another thread of an earlier
    # test (the live server) can leave it set, and then result.get() refuses to wait.
    from celery._state import _set_task_join_will_block

    _set_task_join_will_block(False)
    _drop_broker_connections(app)
    app.conf.update(broker_url=redis_server, result_backend=None, task_always_eager=False)
    try:
        yield app
    finally:
        _let_workers_finish(app)
        _drop_broker_connections(app)
        app.conf.update(saved)
        background._broker_down_until = 0.0


def _let_workers_finish(app, timeout: float = 60) -> None:
    """Before the test's database is flushed: drop the tasks still queued on the app's broker and
    wait (with a deadline) until no worker there runs one. A task left running, such as the
    automatic data checks a save queues, would deadlock with the flush's TRUNCATE."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        app.control.purge()
    except Exception:  # the broker is gone (an outage test): no worker gets anything from it
        return

    def idle() -> bool:
        # A worker of --pool=solo answers nobody while it runs a task (no reply is not "idle"
        # then): its transaction in the database says it is still at work. Reserved tasks (taken
        # from the broker before the purge) are work still to come.
        inspector = app.control.inspect(timeout=0.5)
        waiting = [inspector.reserved(), inspector.active()]
        if any(replies and any(tasks for tasks in replies.values()) for replies in waiting):
            return False
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND xact_start IS NOT NULL"
            )
            return cursor.fetchone()[0] == 0

    # Twice in a row: a task the worker took just after one look shows at the next.
    quiet = []
    wait_for(lambda: quiet.append(idle()) or quiet[-2:] == [True, True], timeout, what="the Celery workers to finish")


def point_at(app, broker: str, *, result_backend: str | None = None) -> None:
    """Send `app`'s tasks to another broker from now on (within `celery_on_redis`)."""
    _drop_broker_connections(app)
    app.conf.update(broker_url=broker, result_backend=result_backend)


@pytest.fixture(autouse=True)
def _default_language():
    # A test that switches the interface to Dutch must not leave it on for the next one.
    yield
    from django.utils import translation

    translation.deactivate()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Tests create many accounts; the production hasher's cost is not what they test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people():
    """The personae of tests/base.py: two centres, a nurse at each, a coordinator, an admin."""
    from tests.base import personae

    return personae()


@pytest.fixture
def patient(people):
    """A complete, valid casebook at centre A."""
    from tests.base import make_patient, make_record

    return make_record(make_patient(people["centre_a"], people["nurse_a"]))
