"""Recompute requests are appended, never upserted.

0002 kept one pending row per scope and updated it from every write transaction, so each
transaction held the lock on the 'all' row until it committed: every write at every centre queued
behind the one before (a long import held up every nurse), and two transactions touching two
centres in opposite orders deadlocked, failing a save. Now each statement appends its request rows;
inserts take no lock that another transaction waits for. The worker claims all of a scope's
pending rows at once, so bursts still coalesce into one recompute (reports/services.py).
"""

from django.db import migrations, models

FUNCTION = """
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
    ) AS scopes;
END;
$$ LANGUAGE plpgsql;
"""

PREVIOUS = """
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
"""


class Migration(migrations.Migration):
    dependencies = [("reports", "0003_report_job")]

    operations = [
        # The function first: the old one's ON CONFLICT needs the unique index removed below.
        migrations.RunSQL(FUNCTION, PREVIOUS),
        migrations.RemoveConstraint(model_name="recomputerequest", name="one_pending_request_per_scope"),
        migrations.AddIndex(
            model_name="recomputerequest",
            index=models.Index(fields=["scope", "status"], name="recompute_scope_status_idx"),
        ),
        # The latest snapshot is the one of the newest data (reports.services.LATEST_FIRST).
        migrations.RemoveIndex(model_name="outcomesnapshot", name="snapshot_scope_latest_idx"),
        migrations.AddIndex(
            model_name="outcomesnapshot",
            index=models.Index(fields=["scope", "-data_version", "-computed_at"], name="snapshot_scope_newest_idx"),
        ),
    ]
