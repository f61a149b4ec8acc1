from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cohort.importer import ImportFailed, import_cohort, import_odm, preview_lines
from cohort.management.commands._user import acting_user


class Command(BaseCommand):
    help = (
        "Import DIR/<form>.csv files (SPEC section 8), or FILE.xml, a CDISC ODM 1.3.2 file of our export "
        "(SPEC section 11). All or nothing: every error is printed as file:row: variable: message (row: the "
        "line of the CSV row or of the XML element) and nothing is written. --dry-run prints every patient to be "
        "created or changed, field by field (old -> new), and writes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path, help="a directory of <form>.csv files, or an ODM .xml file")
        parser.add_argument("--user", help="username recorded in the audit trail (default: system)")
        parser.add_argument(
            "--dry-run", action="store_true", help="print what the import would change (old -> new); write nothing"
        )

    def handle(self, *args, directory: Path, user=None, dry_run=False, **options):
        odm = directory.suffix.lower() == ".xml" and directory.is_file()
        if not (directory.is_dir() or odm):
            raise CommandError(f"{directory}: not a directory nor an ODM .xml file.")
        try:
            summary = (import_odm if odm else import_cohort)(
                directory, user=acting_user(user), write=not dry_run, record=dry_run
            )
        except ImportFailed as failure:
            for error in failure.errors:
                self.stderr.write(error)
            raise CommandError(str(failure), returncode=1) from None
        if dry_run:
            for line in preview_lines(summary.as_json()):
                self.stdout.write(line)
        for line in summary.lines():
            self.stdout.write(line)
        if dry_run:
            self.stdout.write(f"Dry run of {directory}: {summary.changes} change(s) to import; nothing written.")
        else:
            self.stdout.write(f"Imported {directory}: {summary.changes} change(s).")
