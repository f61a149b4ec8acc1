"""`manage.py migrate` as the owner role, then the app role's privileges (SPEC section 6, "Database
roles"; docs/operations.md).

The app connects as a role that may read and write the study tables but may only read and append
to the audit trail: no UPDATE, DELETE or TRUNCATE of the event tables, no table of its own (so no
ALTER TABLE ... DISABLE TRIGGER), and no use of django-pgtrigger's `pgtrigger.ignore` switch. With
DATABASE_OWNER_URL set, this command connects as that owner to the default connection's database,
runs the migrations, and then grants and revokes so the app role has exactly that. The switch is
locked after every run, because each trigger a migration installs re-creates pgtrigger's function.
"""

from __future__ import annotations

import pghistory.models
import pgtrigger.features
from django.apps import apps
from django.conf import settings
from django.core.management import CommandError
from django.core.management.commands import migrate
from django.db import DEFAULT_DB_ALIAS, connections, transaction

# What the app role may do with the audit trail: read it and add to it (the triggers insert as
# the role that writes). pghistory's context rows are upserted by the triggers while a context
# block runs, hence UPDATE of those two columns.
AUDIT_PRIVILEGES = "SELECT, INSERT"
CONTEXT_COLUMNS = "(metadata, updated_at)"
TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
# The app reads the migration history (runserver's check) but never writes it.
READ_ONLY_TABLES = {"django_migrations"}

# pgtrigger's ignore function, as pgtrigger installs it, except that the switch is honoured only
# for the role that owns the function (the one that ran the migrations) and superusers: anyone can
# set a custom setting such as `pgtrigger.ignore`. Catalog names are schema-qualified so that a
# search_path with pg_temp first cannot put a look-alike in front of them. The common case (the
# setting empty) returns before the role check, so ordinary writes pay nothing more.
LOCKED_IGNORE_FUNCTION = """
CREATE OR REPLACE FUNCTION {name}(trigger_name NAME)
RETURNS BOOLEAN AS $$
    DECLARE
        _pgtrigger_ignore TEXT[];
    BEGIN
        BEGIN
            SELECT INTO _pgtrigger_ignore CURRENT_SETTING('pgtrigger.ignore');
            EXCEPTION WHEN OTHERS THEN
        END;
        IF _pgtrigger_ignore IS NULL OR NOT (trigger_name = ANY(_pgtrigger_ignore)) THEN
            RETURN FALSE;
        END IF;
        RETURN pg_catalog.pg_has_role(
            CURRENT_USER,
            (SELECT p.proowner FROM pg_catalog.pg_proc p
             WHERE p.oid = '{name}(pg_catalog.name)'::pg_catalog.regprocedure),
            'MEMBER'
        );
    END;
$$ LANGUAGE plpgsql;
"""


class Command(migrate.Command):
    help = migrate.Command.help + " Connects as DATABASE_OWNER_URL when set and grants the app role its privileges."

    def handle(self, *args, **options):
        alias = options["database"]
        connection = connections[alias]
        owner = settings.DATABASE_OWNER if alias == DEFAULT_DB_ALIAS else None
        saved = dict(connection.settings_dict)
        switch = bool(owner) and any(saved.get(key) != value for key, value in owner.items())
        if switch:
            connection.close()
            connection.settings_dict.update(owner)
        try:
            super().handle(*args, **options)
            if options["plan"] or options["check_unapplied"]:  # they change nothing
                return
            with transaction.atomic(using=alias), connection.cursor() as cursor:
                lock_ignore_switch(cursor)
                if owner:
                    app = settings.DATABASE_APP_ROLE
                    grant_app_role(cursor, connection, user=app["USER"], password=app["PASSWORD"])
        finally:
            if switch:
                connection.close()
                connection.settings_dict.clear()
                connection.settings_dict.update(saved)


def ignore_function_name() -> str:
    # As pgtrigger.core names it in every trigger it installs.
    return f'"{pgtrigger.features.schema()}"._pgtrigger_should_ignore'


def lock_ignore_switch(cursor) -> None:
    cursor.execute(LOCKED_IGNORE_FUNCTION.format(name=ignore_function_name()))


def audit_tables() -> set[str]:
    """The pghistory event tables and pghistory's context table."""
    models = [model for model in apps.get_models() if issubclass(model, pghistory.models.Event)]
    models.append(pghistory.models.Context)
    return {model._meta.db_table for model in models if model._meta.managed and not model._meta.proxy}


def grant_app_role(cursor, connection, *, user: str, password: str | None) -> None:
    """Give the app role exactly what the app needs; idempotent."""
    cursor.execute("SELECT current_user, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
    owner, owner_is_superuser, owner_creates_roles = cursor.fetchone()
    if not user or user == owner:
        raise CommandError(
            f"DATABASE_URL connects as {owner}, the owner that runs the migrations: the app must connect as "
            "another role, which cannot change the audit trail (docs/operations.md)."
        )
    role = connection.ops.quote_name(user)
    cursor.execute("SELECT oid, rolsuper FROM pg_roles WHERE rolname = %s", [user])
    row = cursor.fetchone()
    if row is None:
        if not (owner_is_superuser or owner_creates_roles):
            raise CommandError(
                f"The app role {user} does not exist and {owner} may not create it. As a superuser: "
                f"CREATE ROLE {role} LOGIN PASSWORD '...'; then run migrate again (docs/operations.md)."
            )
        cursor.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", [password or None])
        cursor.execute("SELECT oid, rolsuper FROM pg_roles WHERE rolname = %s", [user])
        row = cursor.fetchone()
    app_oid, app_is_superuser = row
    if app_is_superuser:
        raise CommandError(f"The app role {user} is a superuser, which no privilege binds.")
    cursor.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", [user, owner])
    if cursor.fetchone()[0]:
        raise CommandError(f"The app role {user} is a member of {owner} and so has all its rights.")
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relowner = %s ORDER BY 1",
        [app_oid],
    )
    owned = [name for (name,) in cursor.fetchall()]
    if owned:
        raise CommandError(
            f"The app role {user} owns {', '.join(owned)}, so it could disable their triggers. As a "
            f"superuser: REASSIGN OWNED BY {role} TO {connection.ops.quote_name(owner)}; then run migrate again."
        )

    tables = set(connection.introspection.table_names(cursor))
    audit = audit_tables() & tables
    database = connection.ops.quote_name(connection.settings_dict["NAME"])
    statements = [
        f"GRANT CONNECT ON DATABASE {database} TO {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        # A table created later by other means than migrate (which comes back here) starts read
        # and append only.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    ]
    quote = connection.ops.quote_name
    for table in sorted(tables):
        if table in audit:
            statements.append(f"GRANT {AUDIT_PRIVILEGES} ON {quote(table)} TO {role}")
        elif table in READ_ONLY_TABLES:
            statements.append(f"GRANT SELECT ON {quote(table)} TO {role}")
        else:
            statements.append(f"GRANT {TABLE_PRIVILEGES} ON {quote(table)} TO {role}")
    context_table = pghistory.models.Context._meta.db_table
    if context_table in tables:
        statements.append(f"GRANT UPDATE {CONTEXT_COLUMNS} ON {quote(context_table)} TO {role}")
    for statement in statements:
        cursor.execute(statement)
