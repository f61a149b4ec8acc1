from pathlib import Path

from django.core.management.base import BaseCommand

from cohort.csvformat import export_cohort


class Command(BaseCommand):
    help = "Write DIR/<form>.csv for every form, in the import format (SPEC section 8)."

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path)

    def handle(self, *args, directory: Path, **options):
        counts = export_cohort(directory)
        for form, count in counts.items():
            self.stdout.write(f"{directory / (form + '.csv')}: {count} row(s)")
