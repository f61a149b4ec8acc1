"""A lock refuses every write of what it covers, whatever the path (SPEC section 10): the ORM, a
bulk import, the admin, raw SQL. Statement-level triggers with transition tables check the rows a
statement touched against the active locks; with no active lock they return at once.

The message names the lock ("record is locked (casebook lock of AMC-001 by coord on 2026-12-02:
database freeze)"); cohort/locks.py words the same check for the forms before the database has to.
"""

from django.db import migrations

FORM_TABLES = {  # table -> the data dictionary form a row lock names
    "cohort_priorbiologic": "prior_biologics",
    "cohort_ustekinumabdose": "ustekinumab_doses",
    "cohort_reinduction": "reinduction",
    "cohort_assessment": "assessments",
    "cohort_followup": "follow_up",
    "cohort_adverseevent": "adverse_events",
}

FUNCTIONS = """
CREATE OR REPLACE FUNCTION cohort_lock_label(lock_id bigint) RETURNS text AS $$
    SELECT CASE l.kind
               WHEN 'study' THEN 'study lock'
               WHEN 'centre' THEN 'centre lock of ' || c.code
               WHEN 'patient' THEN 'casebook lock of ' || p.study_id
               ELSE 'form lock of ' || p.study_id || ' ' || l.form || ' #' || l.row_id
           END
           || ' by ' || coalesce(u.username, '?') || ' on ' || to_char(l.locked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')
           || ': ' || l.reason
    FROM cohort_lock l
    LEFT JOIN cohort_centre c ON c.id = l.centre_id
    LEFT JOIN cohort_patient p ON p.id = l.patient_id
    LEFT JOIN auth_user u ON u.id = l.locked_by_id
    WHERE l.id = lock_id
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE FUNCTION cohort_refuse_if_locked(
    centre_ids bigint[], patient_ids bigint[], form_name text, row_ids bigint[]
) RETURNS void AS $$
DECLARE
    hit bigint;
BEGIN
    SELECT l.id INTO hit FROM cohort_lock l
    WHERE l.unlocked_at IS NULL AND (
        l.kind = 'study'
        OR (l.kind = 'centre' AND l.centre_id = ANY(centre_ids))
        OR (l.kind = 'patient' AND l.patient_id = ANY(patient_ids))
        OR (l.kind = 'row' AND l.form = form_name AND l.row_id = ANY(row_ids))
    )
    ORDER BY CASE l.kind WHEN 'study' THEN 0 WHEN 'centre' THEN 1 WHEN 'patient' THEN 2 ELSE 3 END, l.id
    LIMIT 1;
    IF hit IS NOT NULL THEN
        RAISE EXCEPTION 'record is locked (%)', cohort_lock_label(hit)
            USING HINT = 'A coordinator can unlock it, with a reason.';
    END IF;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION cohort_patient_locked() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM cohort_lock WHERE unlocked_at IS NULL) THEN
        PERFORM cohort_refuse_if_locked(
            ARRAY(SELECT DISTINCT centre_id FROM changed_rows), ARRAY(SELECT id FROM changed_rows),
            TG_ARGV[0], ARRAY(SELECT id FROM changed_rows)
        );
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION cohort_form_locked() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM cohort_lock WHERE unlocked_at IS NULL) THEN
        PERFORM cohort_refuse_if_locked(
            ARRAY(SELECT DISTINCT p.centre_id FROM cohort_patient p
                  WHERE p.id IN (SELECT patient_id FROM changed_rows)),
            ARRAY(SELECT DISTINCT patient_id FROM changed_rows), TG_ARGV[0], ARRAY(SELECT id FROM changed_rows)
        );
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""


def triggers(table: str, function: str, form: str) -> str:
    # A transition table per trigger, hence one trigger per event. An update checks the rows as
    # they were (OLD): a row cannot be moved out from under its lock either.
    return "\n".join(
        f"CREATE TRIGGER cohort_locked_{event.lower()} AFTER {event} ON {table} "
        f"REFERENCING {'NEW' if event == 'INSERT' else 'OLD'} TABLE AS changed_rows "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}('{form}');"
        for event in ("INSERT", "UPDATE", "DELETE")
    )


def drop(table: str) -> str:
    return "\n".join(
        f"DROP TRIGGER IF EXISTS cohort_locked_{event} ON {table};" for event in ("insert", "update", "delete")
    )


FORWARD = "\n".join(
    [
        FUNCTIONS,
        triggers("cohort_patient", "cohort_patient_locked", "patients"),
        *(triggers(table, "cohort_form_locked", form) for table, form in FORM_TABLES.items()),
    ]
)
BACKWARD = "\n".join(
    [
        drop("cohort_patient"),
        *(drop(table) for table in FORM_TABLES),
        "DROP FUNCTION IF EXISTS cohort_form_locked(); DROP FUNCTION IF EXISTS cohort_patient_locked();",
        "DROP FUNCTION IF EXISTS cohort_refuse_if_locked(bigint[], bigint[], text, bigint[]);",
        "DROP FUNCTION IF EXISTS cohort_lock_label(bigint);",
    ]
)


class Migration(migrations.Migration):
    dependencies = [("cohort", "0005_lock")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
