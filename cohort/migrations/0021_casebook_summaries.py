"""The patient list's summaries of the casebooks (cohort.models.CasebookSummary), and the stamp that
says whether one is current.

Statement-level triggers with transition tables, as the tallies (0013): each statement that
inserts, changes or deletes rows of a table a summary is made from (the patient row, its forms'
rows, flag confirmations, verification marks) raises the data stamp of each patient it touched,
once per statement. A deleted patient's summary goes with it. Every patient present gets a row
(stamp 1, no summary yet), so a summary is only ever stored over a row the triggers keep.
"""

import django.db.models.deletion
from django.db import migrations, models

FORM_TABLES = [
    "cohort_priorbiologic",
    "cohort_ustekinumabdose",
    "cohort_reinduction",
    "cohort_assessment",
    "cohort_followup",
    "cohort_adverseevent",
]
# What else a summary is made from: the flags confirmed (its flag count), the marks (its verification).
MONITORING_TABLES = ["cohort_flagconfirmation", "cohort_verification"]

FUNCTIONS = """
CREATE FUNCTION cohort_summary_stale() RETURNS trigger AS $$
BEGIN
    INSERT INTO cohort_casebooksummary AS s (patient_id, data_stamp)
    SELECT DISTINCT patient_id, 1 FROM changed_rows ORDER BY patient_id
    ON CONFLICT (patient_id) DO UPDATE SET data_stamp = s.data_stamp + 1;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION cohort_patient_summary_stale() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM cohort_casebooksummary WHERE patient_id IN (SELECT id FROM changed_rows);
    ELSE
        INSERT INTO cohort_casebooksummary AS s (patient_id, data_stamp)
        SELECT id, 1 FROM changed_rows ORDER BY id
        ON CONFLICT (patient_id) DO UPDATE SET data_stamp = s.data_stamp + 1;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""


def _triggers(table: str, function: str) -> list[str]:
    return [
        f"CREATE TRIGGER cohort_summary_stale_{event.lower()} AFTER {event} ON {table} "
        f"REFERENCING {'OLD' if event == 'DELETE' else 'NEW'} TABLE AS changed_rows "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}();"
        for event in ("INSERT", "UPDATE", "DELETE")
    ]


TRIGGERS = "\n".join(
    [
        *_triggers("cohort_patient", "cohort_patient_summary_stale"),
        *(line for table in FORM_TABLES + MONITORING_TABLES for line in _triggers(table, "cohort_summary_stale")),
    ]
)

START = "INSERT INTO cohort_casebooksummary (patient_id, data_stamp) SELECT id, 1 FROM cohort_patient;"

BACKWARD = "\n".join(
    [
        *(
            f"DROP TRIGGER IF EXISTS cohort_summary_stale_{event} ON {table};"
            for table in ["cohort_patient", *FORM_TABLES, *MONITORING_TABLES]
            for event in ("insert", "update", "delete")
        ),
        "DROP FUNCTION IF EXISTS cohort_summary_stale();",
        "DROP FUNCTION IF EXISTS cohort_patient_summary_stale();",
    ]
)


class Migration(migrations.Migration):
    dependencies = [
        ("cohort", "0020_query_list_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="CasebookSummary",
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
                ("data_stamp", models.BigIntegerField(db_default=1)),
                ("summary_stamp", models.BigIntegerField(null=True)),
                ("rules", models.CharField(blank=True, db_default="", max_length=64)),
                ("summary", models.JSONField(null=True)),
            ],
        ),
        migrations.RunSQL(FUNCTIONS + TRIGGERS + START, BACKWARD),
    ]
