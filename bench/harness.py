"""What the load benchmarks share (bench/form_save.py, bench/pages.py): a signed-in browser over
http.client, the percentile, starting and stopping gunicorn and a throwaway redis-server, the
server's CPU per request and the machine's CPU by process group.

Imported by the benchmark scripts (bench/ is their sys.path[0]) and, inside gunicorn, through
--pythonpath bench."""

from __future__ import annotations

import collections
import contextlib
import http.client
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path

TOKEN_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Failure(Exception):
    pass


class Browser:
    """One signed-in user's cookies over http.client (a new connection per request, as gunicorn's
    sync workers close it)."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}
        self.token = ""
        self.cpu: tuple[float, float] | None = None  # the last answer's X-Bench-CPU (counting_queries)

    def request(self, method: str, url: str, data: dict | None = None, headers: dict | None = None):
        """Status, Location, the X-Bench-Queries header and the body of one request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            send = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(headers or {})}
            body = None
            if data is not None:
                body = urllib.parse.urlencode(data)
                send["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, url, body=body, headers=send)
            response = conn.getresponse()
            content = response.read()
            cpu = response.getheader("X-Bench-CPU", "").split()
            self.cpu = (float(cpu[0]), float(cpu[1])) if len(cpu) == 2 else None
            for header in response.msg.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(header).items():
                    # A browser would show the flash message on the next page; not followed here.
                    if name != "messages":
                        self.cookies[name] = morsel.value
            return (
                response.status,
                response.getheader("Location", ""),
                response.getheader("X-Bench-Queries", ""),
                content,
            )
        finally:
            conn.close()

    def post_form(self, url: str, data: dict) -> tuple[int, str]:
        """GET a form page for its CSRF token, then POST `data` to it; status and Location."""
        status, _, _, page = self.request("GET", url)
        token = TOKEN_RE.search(page.decode())
        if status != 200 or token is None:
            raise Failure(f"{url}: HTTP {status}, no form with a CSRF token")
        status, location, _, _ = self.request("POST", url, {**data, "csrfmiddlewaretoken": token.group(1)})
        return status, location

    def login(self, username: str, password: str) -> None:
        """Through the login page (django-axes, the password checked), as a browser."""
        status, location = self.post_form("/accounts/login/", {"username": username, "password": password})
        if status != 302 or "sessionid" not in self.cookies:
            raise Failure(f"login of {username} refused: HTTP {status} {location}")


def _cpu_seconds(pid: int) -> float:
    """CPU time of one process (Linux's scheduler clock, nanoseconds), in seconds; 0 if it is gone."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _backend_pid(connection) -> int | None:
    """The PostgreSQL backend serving Django's connection, if it is open."""
    raw = connection.connection
    try:
        return raw.info.backend_pid if raw is not None and not raw.closed else None
    except Exception:
        return None


def counting_queries(django_app):
    """The WSGI application `django_app`, plus:
    - on every response, X-Bench-CPU: the CPU seconds of the request in this worker process
      (`time.process_time`, Python and the C it calls) and in the PostgreSQL backend serving its
      connection (the backend's scheduler clock from /proc, before and after; a backend opened
      during the request counts from its start), "python postgres";
    - only on requests that ask for it with the header X-Bench-Count-Queries: 1, its SQL statements
      counted by kind in the X-Bench-Queries header."""
    from django.db import connection

    def measured(environ, start_response):
        pid = _backend_pid(connection)
        pg_before = _cpu_seconds(pid) if pid else 0.0
        py_before = time.process_time()
        body = django_app(environ, start_response)
        py = time.process_time() - py_before
        after = _backend_pid(connection)
        pg = (_cpu_seconds(after) - (pg_before if after == pid else 0.0)) if after else 0.0
        return body, f"{py:.6f} {pg:.6f}"

    def application(environ, start_response):
        started: list = []
        count = environ.get("HTTP_X_BENCH_COUNT_QUERIES") == "1"
        kinds: collections.Counter[str] = collections.Counter()

        def counter(execute, sql, params, many, context):
            statement = sql.lstrip()
            if statement.startswith("SELECT set_config('pghistory"):  # pghistory's audit context, prefixed
                statement = statement.split(";", 1)[-1].lstrip()
            kinds[statement.split(None, 1)[0].upper() if statement else "?"] += 1
            return execute(sql, params, many, context)

        def capture(status, headers, exc_info=None):
            started.append((status, headers))

        with connection.execute_wrapper(counter) if count else contextlib.nullcontext():
            body, cpu = measured(environ, capture)
        status, headers = started[0]
        extra = [("X-Bench-CPU", cpu)]
        if count:
            summary = " ".join(f"{kind}={n}" for kind, n in kinds.most_common())
            extra.append(("X-Bench-Queries", f"{sum(kinds.values())} {summary}"))
        start_response(status, [*headers, *extra])
        return body

    return application


class MachineCpu:
    """The machine's CPU seconds during a phase, by process group: every CPU (/proc/stat), the
    gunicorn workers, the PostgreSQL server (every process under the postmaster: backends, and
    autovacuum, checkpointer, WAL writer...) and this process (the client threads). A group is its
    root, its children alive at either end, and the children it reaped meanwhile."""

    def __init__(self, gunicorn_pid: int, postmaster_pid: int):
        self.roots = {"gunicorn": gunicorn_pid, "postgres": postmaster_pid}
        self.tick = os.sysconf("SC_CLK_TCK")

    def _busy(self) -> float:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / self.tick

    def _reaped(self, pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[13]) + int(fields[14])) / self.tick  # cutime + cstime

    def snapshot(self) -> dict:
        children: dict[int, list[int]] = collections.defaultdict(list)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    children[int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])].append(int(entry.name))
        groups = {}
        for name, root in self.roots.items():
            alive = {pid: _cpu_seconds(pid) for pid in children.get(root, [])}
            groups[name] = (_cpu_seconds(root) + self._reaped(root), alive)
        return {"machine": self._busy(), "self": time.process_time(), "wall": time.monotonic(), "groups": groups}

    @staticmethod
    def delta(before: dict, after: dict) -> dict[str, float]:
        """CPU seconds per group between two snapshots, and "wall" seconds."""
        result = {"wall": after["wall"] - before["wall"], "machine": after["machine"] - before["machine"],
                  "clients": after["self"] - before["self"]}  # fmt: skip
        for name, (own_after, alive_after) in after["groups"].items():
            own_before, alive_before = before["groups"][name]
            result[name] = own_after - own_before + sum(alive_after.values()) - sum(alive_before.values())
        return result


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(fraction * len(ordered)))) - 1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, seconds: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Failure(f"{what} exited with status {process.returncode}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise Failure(f"{what} did not start within {seconds:.0f} s")


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def start_redis(work: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    """A throwaway redis-server on a Unix socket under `work`, and the broker settings naming it."""
    server = shutil.which("redis-server")
    if server is None:
        raise Failure("redis-server not found (make redis)")
    sock = work / "redis.sock"
    process = subprocess.Popen(
        [server, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700", "--save", "",
         "--appendonly", "no", "--dir", str(work), "--logfile", str(work / "redis.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip

    def ping() -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    wait_for(ping, 15, "redis-server", process)
    url = f"redis+socket://{sock}"
    return process, {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}


def redis_messages(work: Path) -> int | None:
    """Messages waiting in the broker's default queue (None without a broker)."""
    sock = work / "redis.sock"
    if not sock.exists():
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(str(sock))
        s.sendall(b"LLEN celery\r\n")
        reply = s.recv(64)
    return int(reply[1:].split(b"\r\n")[0]) if reply.startswith(b":") else None


def start_gunicorn(app: str, workers: int, env: dict[str, str], log: Path, root: Path) -> tuple[subprocess.Popen, int]:
    """gunicorn (sync workers) serving `app` ("module:callable", bench/ and the repository on its
    path) on a free loopback port, once the login page answers; the process and its port."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
             "--worker-class", "sync", "--timeout", "60", "--graceful-timeout", "5", "--no-control-socket",
             "--log-level", "warning", "--pythonpath", f"{root / 'bench'},{root}", app],
            cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    wait_for(lambda: Browser(port).request("GET", "/accounts/login/")[0] == 200, 60, "gunicorn", process)
    return process, port


def vacuum_analyze() -> None:
    """VACUUM ANALYZE as the tables' owner, as autovacuum does some minutes after a bulk load. The
    app role may not vacuum them: PostgreSQL skips each table with a warning, leaving the planner's
    statistics and the visibility map (index-only scans) to whatever autovacuum had reached."""
    import os

    import psycopg2
    from django.db import connection

    connection.ensure_connection()  # starts the embedded server, which exports DATABASE_OWNER_URL
    owner = psycopg2.connect(os.environ["DATABASE_OWNER_URL"])
    try:
        owner.autocommit = True
        with owner.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    finally:
        owner.close()


def settle(seconds: float = 600) -> float:
    """The database as it is long after a bulk load, when an operator measures: VACUUM ANALYZE
    (vacuum_analyze), then a CHECKPOINT (the bulk load's dirty pages written out, not by the
    checkpointer during the measurement) and no autovacuum worker running. Returns the seconds
    waited for autovacuum."""
    import os

    import psycopg2
    from django.db import connection

    from cohort import embedded_pg

    vacuum_analyze()
    connection.ensure_connection()
    server = embedded_pg._servers.get(Path(os.environ["EMBEDDED_PG_DIR"]).resolve())
    if server is None:
        raise Failure("CHECKPOINT needs the embedded server's superuser: this process did not start it")
    server.psql("CHECKPOINT;")
    owner = psycopg2.connect(os.environ["DATABASE_OWNER_URL"])
    started = time.monotonic()
    try:
        owner.autocommit = True
        with owner.cursor() as cursor:
            while True:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
                if cursor.fetchone()[0] == 0:
                    return time.monotonic() - started
                if time.monotonic() - started > seconds:
                    raise Failure(f"autovacuum still running after {seconds:.0f} s")
                time.sleep(1)
    finally:
        owner.close()
