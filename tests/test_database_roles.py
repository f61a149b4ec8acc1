"""Database roles (SPEC section 4 and section 6, "Database roles"): the app connects as a role that
cannot empty, edit or silence the audit trail, and that can still do everything the app does.

The suite itself connects as the owner (it creates and empties databases); these tests log in as
the app role through its own URL (`test_database_url`), as web, worker and beat do in production.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from cohort import embedded_pg
from cohort.management.commands.migrate import audit_tables, ignore_function_name
from cohort.models import Centre, Patient

pytestmark = pytest.mark.django_db
BASE_DIR = Path(__file__).resolve().parent.parent
COHORT = BASE_DIR / "tests" / "data" / "cohort31"


@pytest.fixture
def app_database(test_database_url):
    """A connection to the test database as the app role, in a transaction rolled back at the end."""
    if not settings.DATABASE_OWNER:
        pytest.skip("DATABASE_OWNER_URL is unset, so the app connects as the owner: no app role to test")
    conn = psycopg2.connect(test_database_url)
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


def refused(conn, statement: str) -> bool:
    """Whether PostgreSQL refuses `statement` for lack of privilege (the transaction is rolled back)."""
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    except psycopg2.errors.InsufficientPrivilege:
        return True
    finally:
        conn.rollback()
    return False


def triggers_on(cursor, *tables: str) -> list[str]:
    cursor.execute(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = ANY(%s::regclass[]) ORDER BY 1",
        [list(tables)],
    )
    return [name for (name,) in cursor.fetchall()]


def app_role_env(test_database_url: str) -> dict[str, str]:
    ours = ("DATABASE_", "EMBEDDED_PG_", "CELERY_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(ours)}
    return {**env, "DJANGO_SETTINGS_MODULE": "cohort.settings", "DATABASE_URL": test_database_url, "DEBUG": "1"}


def test_the_app_connects_as_a_role_that_is_not_the_owner(app_database):
    with app_database.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        user, superuser = cursor.fetchone()
        cursor.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace"
            " WHERE nspname = 'public'"
        )
        owners = {owner for (owner,) in cursor.fetchall()}
    assert user == settings.DATABASE_APP_ROLE["USER"]
    assert not superuser
    assert user not in owners  # owning a table would let it disable the table's triggers


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE {event}",
        "TRUNCATE pghistory_context",
        "UPDATE {event} SET pgh_label = 'forged'",
        "DELETE FROM {event}",
        "DELETE FROM pghistory_context",
        "ALTER TABLE {event} DISABLE TRIGGER ALL",
        "ALTER TABLE cohort_assessment DISABLE TRIGGER ALL",
        "ALTER TABLE cohort_assessment DISABLE TRIGGER USER",
        "DROP TRIGGER {trigger} ON cohort_assessment",
        "SET session_replication_role = replica",
        "CREATE OR REPLACE FUNCTION {ignore}(trigger_name NAME) RETURNS BOOLEAN AS 'SELECT TRUE' LANGUAGE sql",
        "UPDATE django_migrations SET name = 'forged'",
    ],
)
def test_the_app_role_cannot_empty_edit_or_switch_off_the_audit_trail(app_database, statement):
    with app_database.cursor() as cursor:
        (trigger, *_) = triggers_on(cursor, "cohort_assessment")
    app_database.rollback()
    event = "cohort_assessmentevent"
    assert event in audit_tables()

    assert refused(app_database, statement.format(event=event, trigger=trigger, ignore=ignore_function_name()))


def test_the_ignore_switch_is_the_owners_alone(app_database):
    # The owner (the suite's connection, in the test's transaction) may switch a trigger off...
    with connection.cursor() as cursor:
        insert_trigger = next(name for name in triggers_on(cursor, "cohort_centre") if "insert" in name)
        cursor.execute("SET LOCAL pgtrigger.ignore = %s", ["{" + insert_trigger + "}"])
        maintenance = Centre.objects.create(code="MAINT", name="Maintenance")
        cursor.execute("SET LOCAL pgtrigger.ignore = '{}'")
    assert not maintenance.pgh_event_model.objects.filter(pgh_obj_id=maintenance.pk).exists()

    # ...the app role, naming every trigger of a table and of its event table, silences none.
    with app_database.cursor() as cursor:
        switch = "{" + ",".join(triggers_on(cursor, "cohort_centre", "cohort_centreevent")) + "}"
        cursor.execute("SET LOCAL pgtrigger.ignore = %s", [switch])
        cursor.execute(
            "INSERT INTO cohort_centre (code, name, active, created_at) VALUES ('RAW', 'Raw SQL', true, now())"
            " RETURNING id"
        )
        (centre_id,) = cursor.fetchone()
        cursor.execute("UPDATE cohort_centre SET name = 'Raw SQL, renamed' WHERE id = %s", [centre_id])
        cursor.execute("DELETE FROM cohort_centre WHERE id = %s", [centre_id])
        cursor.execute("SELECT pgh_label FROM cohort_centreevent WHERE pgh_obj_id = %s ORDER BY pgh_id", [centre_id])
        events = [label for (label,) in cursor.fetchall()]
        cursor.execute(f"SELECT {ignore_function_name()}(%s)", [insert_trigger])
        (ignored,) = cursor.fetchone()

    assert events == ["insert", "update", "delete"]
    assert ignored is False


def test_the_switch_stays_locked_after_a_later_migrate():
    from pgtrigger import registered

    def function_source() -> str:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT prosrc FROM pg_proc WHERE oid = %s::regprocedure", [f"{ignore_function_name()}(name)"]
            )
            return cursor.fetchone()[0]

    assert "pg_has_role" in function_source()
    # Every trigger a migration installs re-creates pgtrigger's function, open to all.
    model, trigger = next((model, trigger) for model, trigger in registered() if model is Centre)
    trigger.install(model)
    assert "pg_has_role" not in function_source()

    call_command("migrate", verbosity=0)

    assert "pg_has_role" in function_source()


@pytest.mark.django_db(transaction=True)
def test_the_app_role_can_do_what_the_app_does(app_database, test_database_url, tmp_path):
    script = textwrap.dedent(
        f"""
        import django
        django.setup()
        from django.core.management import call_command
        from django.db import connection
        from cohort import services

        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cursor.fetchone() == ("{settings.DATABASE_APP_ROLE["USER"]}", False), "not the app role"
        from cohort.models import Patient
        from tests.base import make_user

        for code in ("AMC", "UMCU", "RUMC"):
            call_command("create_centre", code, f"Synthetic centre {{code}}")
        call_command("import_cohort", "{COHORT}")
        nurse = make_user("nurse_app_role", centre=Patient.objects.get(study_id="AMC-001").centre)
        patient = Patient.objects.get(study_id="AMC-001")
        patient.smoking = "former"
        services.crf_row_save(row=patient, by=nurse, expected_version=patient.version, reason="transcription error")
        services.patient_soft_delete(patient=Patient.objects.get(study_id="AMC-002"), by=nurse, reason="withdrew")
        call_command("export_cohort", "{tmp_path}")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=BASE_DIR,
        env=app_role_env(test_database_url),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "patients.csv").read_text().count("\n") == 1 + 30  # the deleted patient is not exported
    assert Patient.all_objects.count() == 31
    assert Patient.all_objects.get(study_id="AMC-002").deleted_at is not None
    assert Patient.objects.get(study_id="AMC-001").smoking == "former"
    for study_id, reason in (("AMC-001", "transcription error"), ("AMC-002", "withdrew")):
        trail = Patient.pgh_event_model.objects.filter(pgh_obj_id=Patient.all_objects.get(study_id=study_id).pk)
        assert [event.pgh_label for event in trail.order_by("pgh_id")] == ["insert", "update"]
        assert trail.order_by("pgh_id").last().pgh_context.metadata["reason"] == reason


def test_the_embedded_server_sets_up_the_same_two_roles(app_database, test_database_url):
    """`make run` (no DATABASE_URL): the embedded server's owner and app roles, after migrate,
    have the privileges of the roles this suite runs with."""
    # As `make test` does: not under pytest's tmp_path, which another pytest run as the same user
    # may close to other users (0700), and the server runs as another user when we are root.
    pgdata = Path(tempfile.mkdtemp(prefix="ecrf-roles-pg-"))
    socket_dir = embedded_pg.start(pgdata, throwaway=True)
    try:
        env = app_role_env(test_database_url)
        del env["DATABASE_URL"]
        env.update(EMBEDDED_PG_DIR=str(pgdata), EMBEDDED_PG_THROWAWAY="1")
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr

        embedded = psycopg2.connect(embedded_pg.url(socket_dir, embedded_pg.APP_ROLE))
        try:
            assert grants_and_owners(embedded) == grants_and_owners(app_database)
            assert refused(embedded, "TRUNCATE cohort_assessmentevent")
        finally:
            embedded.close()
    finally:
        embedded_pg._servers.pop(pgdata.resolve()).cleanup()


def grants_and_owners(conn) -> tuple[dict, set, tuple]:
    """The current user's table privileges, the owners of the tables, and the role's attributes."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type)"
            " FROM information_schema.role_table_grants WHERE grantee = current_user AND table_schema = 'public'"
            " GROUP BY table_name"
        )
        grants = dict(cursor.fetchall())
        cursor.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) = current_user FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = 'public'"
        )
        owns = {owns for (owns,) in cursor.fetchall()}
        cursor.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        attributes = cursor.fetchone()
    conn.rollback()
    return grants, owns, attributes
