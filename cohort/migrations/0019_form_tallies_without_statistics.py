"""The form rows' tally trigger looks up each patient's centre by its primary key whatever the
planner knows of cohort_patient.

Migration 0016 grouped the statement's rows per patient and joined them to cohort_patient. That
plan depends on the table's statistics: before the first ANALYZE (a fresh install, or a bulk load
in one transaction, which autovacuum cannot see until it commits) PostgreSQL guesses that 0.5% of
the patients have `deleted_at IS NULL`, reads them all through the partial index `patient_list`
and hashes them, for every statement. In `seed_demo --patients 100000` on 10,000 patients that
was 12.5 s of the backend's time (about 10 ms for each 2,000-row COPY, growing with the cohort);
a scalar subquery per distinct patient is an index lookup whatever the statistics say (the same
2,000-row statement: 1-2 ms). Same tallies: one per centre the statement changed, with the signed
number of rows of its patients that are not removed.
"""

from importlib import import_module

from django.db import migrations

FORM_ROWS_TALLIED = """
CREATE OR REPLACE FUNCTION cohort_form_rows_tallied() RETURNS trigger AS $$
BEGIN
    INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries)
    SELECT r.centre_id, CASE TG_OP WHEN 'INSERT' THEN sum(r.n) ELSE -sum(r.n) END, 0, 0, 0
    FROM (
        SELECT (
            SELECT p.centre_id FROM cohort_patient p WHERE p.id = c.patient_id AND p.deleted_at IS NULL
        ) AS centre_id, c.n
        FROM (SELECT patient_id, count(*) AS n FROM changed_rows GROUP BY patient_id) AS c
    ) AS r
    WHERE r.centre_id IS NOT NULL
    GROUP BY r.centre_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

# Backwards: migration 0016's function as it was.
PREVIOUS = import_module("cohort.migrations.0016_form_tallies_per_patient").FORM_ROWS_TALLIED


class Migration(migrations.Migration):
    dependencies = [
        ("cohort", "0018_api_tokens"),
    ]

    operations = [
        migrations.RunSQL(FORM_ROWS_TALLIED, PREVIOUS),
    ]
