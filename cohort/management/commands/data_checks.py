"""python manage.py data_checks (SPEC section 8): run the automatic data queries of section 10
now, for the whole cohort; beat runs the same every hour. Running it twice opens nothing twice."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from cohort import data_checks


class Command(BaseCommand):
    help = (
        "Run the automatic data queries now: open a query for each unconfirmed flag, overdue visit and "
        "form left incomplete after its window, and close those whose cause is gone; store the patient list's "
        "summary of each casebook."
    )

    def handle(self, *args, **options):
        self.stdout.write(f"data_checks: {data_checks.run()}")
