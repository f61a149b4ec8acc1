import json

from django.core.management.base import BaseCommand, CommandError

from cohort.access import ALL_SCOPE
from cohort.models import Centre
from reports.services import compute_scope, data_snapshot
from reports.text import outcome_table


class Command(BaseCommand):
    help = "Print the study outcomes (SPEC section 5) computed from the current data, as JSON or a table."

    def add_arguments(self, parser):
        parser.add_argument("--centre", help="a centre code; default: all centres")
        parser.add_argument("--format", choices=["json", "text"], default="json")

    def handle(self, *args, centre=None, format="json", **options):
        scope = centre or ALL_SCOPE
        if centre and not Centre.objects.filter(code=centre).exists():
            raise CommandError(f"--centre: no centre with code '{centre}'.")
        with data_snapshot():  # the same consistent view of the data as the workers' recompute
            result, _load, _compute = compute_scope(scope)
        if format == "json":
            self.stdout.write(json.dumps(result, indent=2, sort_keys=False))
        else:
            self.stdout.write(outcome_table(result))
