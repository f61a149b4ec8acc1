"""A centre's patients and CRF rows counted by appended tallies (cohort.models.CrfRowTally), not by counting.

Statement-level triggers with transition tables, as the recompute requests (reports/migrations/0002
and 0004): each statement that inserts or deletes form rows, enrols or deletes patients, or removes
or restores one (deleted_at) appends one tally per centre it changed, with the signed number of
rows. Nothing is updated in place, so no write waits for another. The tallies are started from a
count of the rows present.
"""

import django.db.models.deletion
from django.db import migrations, models

CHILD_TABLES = [
    "cohort_priorbiologic",
    "cohort_ustekinumabdose",
    "cohort_reinduction",
    "cohort_assessment",
    "cohort_followup",
    "cohort_adverseevent",
]
OWN_ROWS = " + ".join(f"(SELECT count(*) FROM {table} WHERE patient_id = patient)" for table in CHILD_TABLES)

# The query states waiting for the site, and answered (cohort.models.QUERY_WAITING_FOR_SITE).
WAITING = "ARRAY['open', 'reopened']::text[]"
ANSWERED = "ARRAY['answered']::text[]"

FUNCTIONS = f"""
-- A patient's CRF rows: the patient row and its forms' rows.
CREATE OR REPLACE FUNCTION cohort_crf_rows_of(patient bigint) RETURNS bigint AS $$
    SELECT 1 + {OWN_ROWS}
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE FUNCTION cohort_form_rows_tallied() RETURNS trigger AS $$
BEGIN
    INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries)
    SELECT p.centre_id, CASE TG_OP WHEN 'INSERT' THEN count(*) ELSE -count(*) END, 0, 0, 0
    FROM changed_rows r JOIN cohort_patient p ON p.id = r.patient_id
    WHERE p.deleted_at IS NULL
    GROUP BY p.centre_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- A patient's data queries in these states.
CREATE OR REPLACE FUNCTION cohort_queries_of(patient bigint, states text[]) RETURNS bigint AS $$
    SELECT count(*) FROM cohort_query WHERE patient_id = patient AND state = ANY(states)
$$ LANGUAGE sql STABLE;

-- A query raised, answered, closed, re-opened or deleted: the centre's waiting and answered ones.
CREATE OR REPLACE FUNCTION cohort_queries_tallied() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries)
        SELECT p.centre_id, 0, 0, count(*) FILTER (WHERE q.state = ANY({WAITING})),
            count(*) FILTER (WHERE q.state = ANY({ANSWERED}))
        FROM new_rows q JOIN cohort_patient p ON p.id = q.patient_id
        WHERE p.deleted_at IS NULL AND q.state = ANY({WAITING} || {ANSWERED})
        GROUP BY p.centre_id;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries)
        SELECT p.centre_id, 0, 0, -count(*) FILTER (WHERE q.state = ANY({WAITING})),
            -count(*) FILTER (WHERE q.state = ANY({ANSWERED}))
        FROM old_rows q JOIN cohort_patient p ON p.id = q.patient_id
        WHERE p.deleted_at IS NULL AND q.state = ANY({WAITING} || {ANSWERED})
        GROUP BY p.centre_id;
    ELSE
        INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries)
        SELECT p.centre_id, 0, 0, sum(w), sum(a) FROM (
            SELECT patient_id, (state = ANY({WAITING}))::int AS w, (state = ANY({ANSWERED}))::int AS a FROM new_rows
            UNION ALL
            SELECT patient_id, -(state = ANY({WAITING}))::int, -(state = ANY({ANSWERED}))::int FROM old_rows
        ) AS q JOIN cohort_patient p ON p.id = q.patient_id
        WHERE p.deleted_at IS NULL
        GROUP BY p.centre_id
        HAVING sum(w) <> 0 OR sum(a) <> 0;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Enrolled: one row (its forms come later). Deleted: its rows, if it was not removed before (the
-- ORM deletes the forms' rows first, which tallied them). Removed, restored or moved: all its rows.
CREATE OR REPLACE FUNCTION cohort_patient_rows_tallied() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries)
        SELECT centre_id, count(*), count(*), 0, 0 FROM new_rows WHERE deleted_at IS NULL GROUP BY centre_id;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries)
        SELECT centre_id, -sum(cohort_crf_rows_of(id)), -count(*), -sum(cohort_queries_of(id, {WAITING})),
            -sum(cohort_queries_of(id, {ANSWERED}))
        FROM old_rows WHERE deleted_at IS NULL
        GROUP BY centre_id;
    ELSE
        INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries)
        SELECT centre_id, sum(n), sum(m), sum(w), sum(a) FROM (
            SELECT o.centre_id, -cohort_crf_rows_of(o.id) AS n, -1 AS m, -cohort_queries_of(o.id, {WAITING}) AS w,
                -cohort_queries_of(o.id, {ANSWERED}) AS a FROM old_rows o JOIN new_rows c ON c.id = o.id
            WHERE o.deleted_at IS NULL AND (c.deleted_at IS NOT NULL OR c.centre_id <> o.centre_id)
            UNION ALL
            SELECT c.centre_id, cohort_crf_rows_of(c.id), 1, cohort_queries_of(c.id, {WAITING}),
                cohort_queries_of(c.id, {ANSWERED}) FROM old_rows o JOIN new_rows c ON c.id = o.id
            WHERE c.deleted_at IS NULL AND (o.deleted_at IS NOT NULL OR c.centre_id <> o.centre_id)
        ) AS moved
        GROUP BY centre_id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

TRIGGERS = "\n".join(
    [
        "CREATE TRIGGER cohort_rows_tallied_insert AFTER INSERT ON cohort_patient REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION cohort_patient_rows_tallied();",
        "CREATE TRIGGER cohort_rows_tallied_update AFTER UPDATE ON cohort_patient "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION cohort_patient_rows_tallied();",
        "CREATE TRIGGER cohort_rows_tallied_delete AFTER DELETE ON cohort_patient REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION cohort_patient_rows_tallied();",
        "CREATE TRIGGER cohort_queries_tallied_insert AFTER INSERT ON cohort_query REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION cohort_queries_tallied();",
        "CREATE TRIGGER cohort_queries_tallied_update AFTER UPDATE ON cohort_query "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION cohort_queries_tallied();",
        "CREATE TRIGGER cohort_queries_tallied_delete AFTER DELETE ON cohort_query REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION cohort_queries_tallied();",
        *(
            f"CREATE TRIGGER cohort_rows_tallied_{event.lower()} AFTER {event} ON {table} "
            f"REFERENCING {'NEW' if event == 'INSERT' else 'OLD'} TABLE AS changed_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION cohort_form_rows_tallied();"
            for table in CHILD_TABLES
            for event in ("INSERT", "DELETE")
        ),
    ]
)

START = f"""
INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries)
SELECT p.centre_id, count(*), count(*) FILTER (WHERE r.own),
    (SELECT count(*) FROM cohort_query q JOIN cohort_patient qp ON qp.id = q.patient_id
     WHERE qp.centre_id = p.centre_id AND qp.deleted_at IS NULL AND q.state = ANY({WAITING})),
    (SELECT count(*) FROM cohort_query q JOIN cohort_patient qp ON qp.id = q.patient_id
     WHERE qp.centre_id = p.centre_id AND qp.deleted_at IS NULL AND q.state = ANY({ANSWERED}))
FROM (SELECT id AS patient_id, true AS own FROM cohort_patient
      {" ".join(f"UNION ALL SELECT patient_id, false FROM {table}" for table in CHILD_TABLES)}) AS r
JOIN cohort_patient p ON p.id = r.patient_id
WHERE p.deleted_at IS NULL
GROUP BY p.centre_id;
"""

BACKWARD = "\n".join(
    [
        *(
            f"DROP TRIGGER IF EXISTS cohort_rows_tallied_{event} ON {table};"
            for table in ["cohort_patient", *CHILD_TABLES]
            for event in ("insert", "update", "delete")
        ),
        *(
            f"DROP TRIGGER IF EXISTS cohort_queries_tallied_{event} ON cohort_query;"
            for event in ("insert", "update", "delete")
        ),
        "DROP FUNCTION IF EXISTS cohort_queries_tallied();",
        "DROP FUNCTION IF EXISTS cohort_queries_of(bigint, text[]);",
        "DROP FUNCTION IF EXISTS cohort_patient_rows_tallied();",
        "DROP FUNCTION IF EXISTS cohort_form_rows_tallied();",
        "DROP FUNCTION IF EXISTS cohort_crf_rows_of(bigint);",
    ]
)


class Migration(migrations.Migration):
    dependencies = [
        ("cohort", "0012_patient_list_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="CrfRowTally",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("crf_rows", models.BigIntegerField()),
                ("patients", models.BigIntegerField()),
                ("waiting_queries", models.BigIntegerField()),
                ("answered_queries", models.BigIntegerField()),
                (
                    "centre",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="cohort.centre"
                    ),
                ),
            ],
        ),
        migrations.RunSQL(FUNCTIONS + TRIGGERS + START, BACKWARD),
    ]
