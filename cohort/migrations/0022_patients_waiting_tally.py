"""How many patients of a centre have a data query waiting for the site, tallied like its patients
and queries (0013): the patient list's "with open queries" filter counts from it instead of probing
every patient (13 ms of the coordinator's list at 100,000 patients, a fifth of them with one).

A patient enters the figure when its first waiting query is raised or re-opened and leaves it when
its last is answered, closed or deleted. Whether it crossed zero is not something a statement can
see of itself beside another writer of the same patient's queries, so each patient's waiting count
is kept in one row (cohort.models.WaitingQueries), added to in place by a statement trigger on the
queries (the patients in id order), and a row trigger on that count appends +1 or -1 to the centre's
tally when it crosses zero: two writers of one patient's queries wait for each other's row, and the
second sees the first's count. The patient's own trigger (0013's, replaced here) moves the figure
with a patient removed, restored or moved to another centre, as it moves the queries.
"""

from importlib import import_module

import django.db.models.deletion
from django.db import migrations, models

# The query states waiting for the site (cohort.models.QUERY_WAITING_FOR_SITE), as in 0013.
WAITING = "ARRAY['open', 'reopened']::text[]"
ANSWERED = "ARRAY['answered']::text[]"

FUNCTIONS = f"""
CREATE FUNCTION cohort_waiting_counted() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO cohort_waitingqueries AS w (patient_id, waiting)
        SELECT patient_id, count(*) FROM new_rows WHERE state = ANY({WAITING}) GROUP BY patient_id ORDER BY patient_id
        ON CONFLICT (patient_id) DO UPDATE SET waiting = w.waiting + EXCLUDED.waiting;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO cohort_waitingqueries AS w (patient_id, waiting)
        SELECT patient_id, -count(*) FROM old_rows WHERE state = ANY({WAITING}) GROUP BY patient_id ORDER BY patient_id
        ON CONFLICT (patient_id) DO UPDATE SET waiting = w.waiting + EXCLUDED.waiting;
    ELSE
        INSERT INTO cohort_waitingqueries AS w (patient_id, waiting)
        SELECT patient_id, sum(n) FROM (
            SELECT patient_id, (state = ANY({WAITING}))::int AS n FROM new_rows
            UNION ALL
            SELECT patient_id, -(state = ANY({WAITING}))::int FROM old_rows
        ) AS q
        GROUP BY patient_id HAVING sum(n) <> 0 ORDER BY patient_id
        ON CONFLICT (patient_id) DO UPDATE SET waiting = w.waiting + EXCLUDED.waiting;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- A patient's count crossed zero: the centre's patients with a waiting query, if it is not removed.
CREATE FUNCTION cohort_patients_waiting_tallied() RETURNS trigger AS $$
DECLARE
    change int := (NEW.waiting > 0)::int - CASE WHEN TG_OP = 'UPDATE' THEN (OLD.waiting > 0)::int ELSE 0 END;
BEGIN
    IF change <> 0 THEN
        INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries,
            patients_waiting)
        SELECT centre_id, 0, 0, 0, 0, change FROM cohort_patient WHERE id = NEW.patient_id AND deleted_at IS NULL;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- 0013's, with the patients with a waiting query. Enrolled: one row (its forms and queries come
-- later). Deleted: its rows, if it was not removed before (the ORM deletes the forms' rows and
-- queries first, which tallied them), and its count. Removed, restored or moved: all its rows.
CREATE OR REPLACE FUNCTION cohort_patient_rows_tallied() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries)
        SELECT centre_id, count(*), count(*), 0, 0 FROM new_rows WHERE deleted_at IS NULL GROUP BY centre_id;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries,
            patients_waiting)
        SELECT centre_id, -sum(cohort_crf_rows_of(id)), -count(*), -sum(cohort_queries_of(id, {WAITING})),
            -sum(cohort_queries_of(id, {ANSWERED})), -count(*) FILTER (WHERE cohort_queries_of(id, {WAITING}) > 0)
        FROM old_rows WHERE deleted_at IS NULL
        GROUP BY centre_id;
        DELETE FROM cohort_waitingqueries WHERE patient_id IN (SELECT id FROM old_rows);
    ELSE
        INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries,
            patients_waiting)
        SELECT centre_id, sum(n), sum(m), sum(w), sum(a), sum(sign(w)) FROM (
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

# Each patient's count, then each centre's patients with one, from the queries present; only then
# the triggers (a start counted twice otherwise).
START = f"""
INSERT INTO cohort_waitingqueries (patient_id, waiting)
SELECT patient_id, count(*) FROM cohort_query WHERE state = ANY({WAITING}) GROUP BY patient_id;
INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries, patients_waiting)
SELECT p.centre_id, 0, 0, 0, 0, count(*) FROM cohort_waitingqueries w JOIN cohort_patient p ON p.id = w.patient_id
WHERE p.deleted_at IS NULL AND w.waiting > 0 GROUP BY p.centre_id;
"""

TRIGGERS = "\n".join(
    [
        *(
            f"CREATE TRIGGER cohort_waiting_counted_{event.lower()} AFTER {event} ON cohort_query "
            f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION cohort_waiting_counted();"
            for event, tables in (
                ("INSERT", "NEW TABLE AS new_rows"),
                ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                ("DELETE", "OLD TABLE AS old_rows"),
            )
        ),
        "CREATE TRIGGER cohort_patients_waiting_tallied AFTER INSERT OR UPDATE ON cohort_waitingqueries "
        "FOR EACH ROW EXECUTE FUNCTION cohort_patients_waiting_tallied();",
    ]
)

# Backwards: 0013's patient trigger function as it was (the last function of its FUNCTIONS).
_PREVIOUS = import_module("cohort.migrations.0013_crf_row_tallies").FUNCTIONS
PREVIOUS_PATIENT_FUNCTION = _PREVIOUS[_PREVIOUS.index("-- Enrolled: one row") :]

BACKWARD = "\n".join(
    [
        *(f"DROP TRIGGER IF EXISTS cohort_waiting_counted_{event} ON cohort_query;" for event in ("insert", "update", "delete")),
        "DROP TRIGGER IF EXISTS cohort_patients_waiting_tallied ON cohort_waitingqueries;",
        "DROP FUNCTION IF EXISTS cohort_waiting_counted();",
        "DROP FUNCTION IF EXISTS cohort_patients_waiting_tallied();",
        PREVIOUS_PATIENT_FUNCTION,
    ]
)


class Migration(migrations.Migration):
    dependencies = [
        ("cohort", "0021_casebook_summaries"),
    ]

    operations = [
        migrations.AddField(
            model_name="crfrowtally",
            name="patients_waiting",
            field=models.BigIntegerField(db_default=0),
        ),
        migrations.CreateModel(
            name="WaitingQueries",
            fields=[
                (
                    "patient",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="cohort.patient",
                    ),
                ),
                ("waiting", models.IntegerField()),
            ],
            options={"verbose_name_plural": "waiting queries"},
        ),
        migrations.RunSQL(FUNCTIONS + START + TRIGGERS, BACKWARD),
    ]
