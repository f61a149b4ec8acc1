"""Every change to study data asks for its outcomes to be recomputed, in the same transaction.

Statement-level triggers with transition tables: one request per scope ('all' and the centre of
each changed patient) per statement, however many rows it touched, so a bulk import or seed pays
one insert per statement, not per row. The request carries the next value of a data-version
sequence, so a snapshot can say which data it reflects.
"""

from django.db import migrations

CHILD_TABLES = [
    "cohort_priorbiologic",
    "cohort_ustekinumabdose",
    "cohort_reinduction",
    "cohort_assessment",
    "cohort_followup",
    "cohort_adverseevent",
]

FUNCTION = """
CREATE SEQUENCE IF NOT EXISTS reports_data_version;

CREATE OR REPLACE FUNCTION reports_request_recompute_for(centre_ids bigint[]) RETURNS void AS $$
DECLARE
    version bigint := nextval('reports_data_version');
BEGIN
    INSERT INTO reports_recomputerequest (scope, status, data_version, requested_at, attempts, error)
    SELECT scope, 'pending', version, clock_timestamp(), 0, ''
    FROM (
        SELECT 'all'::varchar AS scope
        UNION
        SELECT code FROM cohort_centre WHERE id = ANY(centre_ids)
    ) AS scopes
    ON CONFLICT (scope) WHERE status = 'pending'
    DO UPDATE SET data_version = EXCLUDED.data_version, requested_at = EXCLUDED.requested_at;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION reports_patient_changed() RETURNS trigger AS $$
BEGIN
    PERFORM reports_request_recompute_for(ARRAY(SELECT DISTINCT centre_id FROM changed_rows));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION reports_form_changed() RETURNS trigger AS $$
BEGIN
    PERFORM reports_request_recompute_for(ARRAY(
        SELECT DISTINCT p.centre_id FROM cohort_patient p WHERE p.id IN (SELECT patient_id FROM changed_rows)
    ));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""


def triggers(table: str, function: str) -> str:
    # Transition tables allow one event per trigger, hence three triggers per table.
    return "\n".join(
        f"CREATE TRIGGER reports_recompute_{event.lower()} AFTER {event} ON {table} "
        f"REFERENCING {'OLD' if event == 'DELETE' else 'NEW'} TABLE AS changed_rows "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}();"
        for event in ("INSERT", "UPDATE", "DELETE")
    )


def drop(table: str) -> str:
    return "\n".join(
        f"DROP TRIGGER IF EXISTS reports_recompute_{event} ON {table};" for event in ("insert", "update", "delete")
    )


FORWARD = "\n".join(
    [
        FUNCTION,
        triggers("cohort_patient", "reports_patient_changed"),
        *(triggers(table, "reports_form_changed") for table in CHILD_TABLES),
    ]
)
BACKWARD = "\n".join(
    [
        *(drop(table) for table in ["cohort_patient", *CHILD_TABLES]),
        "DROP FUNCTION IF EXISTS reports_form_changed();",
        "DROP FUNCTION IF EXISTS reports_patient_changed();",
        "DROP FUNCTION IF EXISTS reports_request_recompute_for(bigint[]);",
        "DROP SEQUENCE IF EXISTS reports_data_version;",
    ]
)


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0001_initial"),
        ("cohort", "0002_user_profile"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
