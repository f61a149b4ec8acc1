from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cohort.importer import ImportFailed, import_cohort
from cohort.management.commands._user import acting_user


class Command(BaseCommand):
    help = (
        "Import DIR/<form>.csv files (SPEC section 8). All or nothing: every error is printed as "
        "file:row: variable: message and nothing is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path)
        parser.add_argument("--user", help="username recorded in the audit trail (default: system)")

    def handle(self, *args, directory: Path, user=None, **options):
        if not directory.is_dir():
            raise CommandError(f"{directory}: not a directory.")
        try:
            summary = import_cohort(directory, user=acting_user(user))
        except ImportFailed as failure:
            for error in failure.errors:
                self.stderr.write(error)
            raise CommandError(str(failure), returncode=1) from None
        for line in summary.lines():
            self.stdout.write(line)
        self.stdout.write(f"Imported {directory}: {summary.changes} change(s).")
