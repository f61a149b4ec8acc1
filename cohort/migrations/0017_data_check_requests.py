"""Data checks requested by saves (models.DataCheckRequest): the row is the work, the broker
message after the commit only a wake-up, so a burst of saves sends one message instead of one per
save (issue 14)."""

import django.db.models.deletion
import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cohort", "0016_form_tallies_per_patient"),
    ]

    operations = [
        migrations.CreateModel(
            name="DataCheckRequest",
            fields=[
                (
                    "patient",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="cohort.patient",
                    ),
                ),
                ("requested_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
            ],
        ),
    ]
