"""A later change to a signed casebook makes its signature no longer valid (SPEC section 10), whatever
the path: the web, the admin, the importer, raw SQL. Statement-level triggers with transition tables
on every CRF table (the patient's own row included, so a removal counts) set `invalidated_at` and
the reason on the valid signatures of the patients whose rows a statement inserted, changed or
removed. With no valid signature anywhere they return at once.

An update counts when a column other than the row's bookkeeping (version, updated_at) changed: a
save that changes nothing changes no signed data. The signature's update is audited like any
other, inside the change's transaction, so the trail says who changed what and why. Flag
confirmations, queries, verification marks and locks live in tables of their own: not data changes.

cohort/signatures.py reads the signatures, and compares each valid one's hash with the data too.
"""

from django.db import migrations

TABLES = {  # table -> the column naming the row's patient
    "cohort_patient": "id",
    "cohort_priorbiologic": "patient_id",
    "cohort_ustekinumabdose": "patient_id",
    "cohort_reinduction": "patient_id",
    "cohort_assessment": "patient_id",
    "cohort_followup": "patient_id",
    "cohort_adverseevent": "patient_id",
}

# The same words as cohort.signatures.CHANGED_AFTER_SIGNING (the reader translates them).
REASON = "casebook changed after signing"

FUNCTION = f"""
CREATE OR REPLACE FUNCTION cohort_casebook_changed() RETURNS trigger AS $$
DECLARE
    patient_key text := TG_ARGV[0];
    changed bigint[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM cohort_signature WHERE invalidated_at IS NULL) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        changed := ARRAY(SELECT (to_jsonb(n) ->> patient_key)::bigint FROM new_rows n);
    ELSIF TG_OP = 'DELETE' THEN
        changed := ARRAY(SELECT (to_jsonb(o) ->> patient_key)::bigint FROM old_rows o);
    ELSE
        -- Both patients, should a row be moved from one to another.
        changed := ARRAY(
            SELECT unnest(ARRAY[(to_jsonb(n) ->> patient_key)::bigint, (to_jsonb(o) ->> patient_key)::bigint])
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE to_jsonb(n) - 'version' - 'updated_at' IS DISTINCT FROM to_jsonb(o) - 'version' - 'updated_at'
        );
    END IF;
    UPDATE cohort_signature SET invalidated_at = now(), invalidated_because = '{REASON}'
    WHERE invalidated_at IS NULL AND patient_id = ANY(changed);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

TRANSITIONS = {
    "INSERT": "NEW TABLE AS new_rows",
    "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "DELETE": "OLD TABLE AS old_rows",
}


def triggers(table: str, key: str) -> str:
    # After the lock triggers (cohort_locked_*, alphabetically first): a refused write is no change.
    return "\n".join(
        f"CREATE TRIGGER cohort_signed_{event.lower()} AFTER {event} ON {table} REFERENCING {transition} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION cohort_casebook_changed('{key}');"
        for event, transition in TRANSITIONS.items()
    )


def drop(table: str) -> str:
    return "\n".join(f"DROP TRIGGER IF EXISTS cohort_signed_{event.lower()} ON {table};" for event in TRANSITIONS)


FORWARD = "\n".join([FUNCTION, *(triggers(table, key) for table, key in TABLES.items())])
BACKWARD = "\n".join([*(drop(table) for table in TABLES), "DROP FUNCTION IF EXISTS cohort_casebook_changed();"])


class Migration(migrations.Migration):
    dependencies = [("cohort", "0009_queries_signatures")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
