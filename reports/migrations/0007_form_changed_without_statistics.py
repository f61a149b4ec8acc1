"""A form's recompute request looks up its patients' centres by primary key, whatever the planner
knows of cohort_patient.

Migration 0002's `p.id IN (SELECT patient_id FROM changed_rows)` is planned from the table's
statistics; before the first ANALYZE (a fresh install, or a bulk load in one transaction, which
autovacuum cannot see until it commits) the planner may read and hash the whole patient table for
each statement: 6.7 s of the backend's time in `seed_demo --patients 100000` on 10,000 patients,
growing with the cohort. A scalar subquery per distinct patient is an index lookup whatever the
statistics say. Same requests: 'all' and the centre of each patient the statement changed.
"""

from django.db import migrations

FORM_CHANGED = """
CREATE OR REPLACE FUNCTION reports_form_changed() RETURNS trigger AS $$
BEGIN
    PERFORM reports_request_recompute_for(ARRAY(
        SELECT DISTINCT r.centre_id FROM (
            SELECT (SELECT p.centre_id FROM cohort_patient p WHERE p.id = c.patient_id) AS centre_id
            FROM (SELECT DISTINCT patient_id FROM changed_rows) AS c
        ) AS r
        WHERE r.centre_id IS NOT NULL
    ));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

# Backwards: migration 0002's function as it was.
PREVIOUS = """
CREATE OR REPLACE FUNCTION reports_form_changed() RETURNS trigger AS $$
BEGIN
    PERFORM reports_request_recompute_for(ARRAY(
        SELECT DISTINCT p.centre_id FROM cohort_patient p WHERE p.id IN (SELECT patient_id FROM changed_rows)
    ));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0006_report_job_odm"),
    ]

    operations = [
        migrations.RunSQL(FORM_CHANGED, PREVIOUS),
    ]
