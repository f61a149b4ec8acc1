"""Backup and restore (docs/operations.md): `pg_dump -Fc` of the database restored with `pg_restore`
into an empty database gives the same export, byte for byte, and the same audit trail, still
written by its triggers for the app role."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.errors
import pytest
from django.conf import settings
from django.db import connection

from cohort import embedded_pg
from cohort.audit import audit_context
from cohort.management.commands.migrate import audit_tables
from cohort.models import Assessment
from cohort.services import patient_soft_delete
from tests.base import make_patient, make_record

BASE_DIR = Path(__file__).resolve().parent.parent


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def pg_program(name: str) -> str:
    # pg_dump refuses a server of a later major version: the embedded server's own programs.
    if settings.DATABASES["default"]["ENGINE"] == embedded_pg.ENGINE:
        return str(embedded_pg.bin_dir() / name)
    program = shutil.which(name)
    if program is None:
        pytest.fail(f"{name} is not installed (Debian: postgresql-client)", pytrace=False)
    return program


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=BASE_DIR, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def export_cohort(database_url: str, directory: Path) -> dict[str, bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "EMBEDDED_PG_"))}
    env.update(DJANGO_SETTINGS_MODULE="cohort.settings", DATABASE_URL=database_url, DEBUG="1")
    run([sys.executable, "manage.py", "export_cohort", str(directory)], env=env)
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def audit_rows(database_url: str) -> dict[str, list[tuple]]:
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cursor:
            rows = {}
            for table in sorted(audit_tables()):
                cursor.execute(f'SELECT * FROM "{table}" ORDER BY 1')
                rows[table] = cursor.fetchall()
    finally:
        conn.close()
    return rows


@pytest.mark.django_db(transaction=True)
def test_a_dump_restored_into_an_empty_database_gives_the_same_export_and_audit_trail(
    people, test_database_url, tmp_path
):
    # Dumps and restores are the owner's work (with one role for everything, that role's).
    owner_url = os.environ.get("DATABASE_OWNER_URL", "").strip() or os.environ["DATABASE_URL"]
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    with audit_context(user=people["nurse_a"], reason="transcription error"):
        Assessment.objects.filter(patient=patient, visit="week_8").update(hbi=9)
    withdrawn = make_record(make_patient(people["centre_b"], people["nurse_b"]))
    patient_soft_delete(patient=withdrawn, by=people["nurse_b"], reason="withdrew consent")
    name = connection.settings_dict["NAME"]
    restored = f"{name}_restored"
    dump = tmp_path / "ecrf.dump"

    run([pg_program("pg_dump"), "--format=custom", f"--file={dump}", f"--dbname={with_database(owner_url, name)}"])
    admin = psycopg2.connect(with_database(owner_url, "postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{restored}"')
            cursor.execute(f'CREATE DATABASE "{restored}"')
        run([pg_program("pg_restore"), "--exit-on-error", f"--dbname={with_database(owner_url, restored)}", str(dump)])

        app_source, app_restored = test_database_url, with_database(test_database_url, restored)
        exported = export_cohort(app_source, tmp_path / "source")
        assert exported == export_cohort(app_restored, tmp_path / "restored")
        assert b"transcription error" not in exported["assessments.csv"]  # the export has the data...
        trail = audit_rows(with_database(owner_url, name))
        assert trail == audit_rows(with_database(owner_url, restored))  # ...the trail its history
        assert len(trail["cohort_assessmentevent"]) == 8 + 1
        assert any(row for row in trail["pghistory_context"] if "withdrew consent" in str(row))

        # The restored triggers and grants: the app role's write is audited, its TRUNCATE refused.
        conn = psycopg2.connect(app_restored)
        try:
            with conn.cursor() as cursor:
                cursor.execute("UPDATE cohort_centre SET name = 'Renamed after restore'")
                cursor.execute(
                    "SELECT count(*) FROM cohort_centreevent"
                    " WHERE pgh_label = 'update' AND name = 'Renamed after restore'"
                )
                assert cursor.fetchone() == (2,)
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cursor.execute("TRUNCATE cohort_assessmentevent")
        finally:
            conn.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{restored}"')
        admin.close()
