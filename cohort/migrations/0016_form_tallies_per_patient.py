"""The form rows' tally trigger counts the statement's rows per patient first, then looks up only
those patients' centres.

Migration 0013's version joined the transition table straight to cohort_patient; for a statement of
more than a few rows the planner hashed the whole patient table for it (100,000 patients read and
hashed for every 2,000-row COPY of `seed_demo`: 250-490 ms of a 420-820 ms statement). Grouped by
patient first, the join is one index lookup per distinct patient (a few hundred), whatever the
cohort size. Same tallies: one per centre the statement changed, with the signed number of rows.
"""

from importlib import import_module

from django.db import migrations

FORM_ROWS_TALLIED = """
CREATE OR REPLACE FUNCTION cohort_form_rows_tallied() RETURNS trigger AS $$
BEGIN
    INSERT INTO cohort_crfrowtally (centre_id, crf_rows, patients, waiting_queries, answered_queries)
    SELECT p.centre_id, CASE TG_OP WHEN 'INSERT' THEN sum(r.n) ELSE -sum(r.n) END, 0, 0, 0
    FROM (SELECT patient_id, count(*) AS n FROM changed_rows GROUP BY patient_id) AS r
    JOIN cohort_patient p ON p.id = r.patient_id
    WHERE p.deleted_at IS NULL
    GROUP BY p.centre_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

# Backwards: migration 0013's functions as they were.
PREVIOUS = import_module("cohort.migrations.0013_crf_row_tallies").FUNCTIONS


class Migration(migrations.Migration):
    dependencies = [
        ("cohort", "0015_induction_dates_in_their_indexes"),
    ]

    operations = [
        migrations.RunSQL(FORM_ROWS_TALLIED, PREVIOUS),
    ]
