import os
import pathlib
import time

from django.core.management.base import BaseCommand, CommandError

from cohort.access import ALL_SCOPE
from cohort.models import Centre
from reports import jobs
from reports.exports import FORMATS


class Command(BaseCommand):
    help = (
        "Write a data export (SPEC sections 7 and 8) exactly as the browser's export job writes it, by the same "
        "code: export_dataset --format " + "|".join(FORMATS) + " --out FILE [--centre CODE]."
    )

    def add_arguments(self, parser):
        # Checked in handle, not by argparse's `choices`: a CommandError (exit status 1) in the
        # project's words rather than argparse's usage text (status 2).
        parser.add_argument("--format", required=True, help="|".join(FORMATS))
        parser.add_argument("--out", required=True, help="the file to write")
        parser.add_argument("--centre", help="a centre code; default: all centres")

    def handle(self, *args, out, centre=None, **options):
        export_format = options["format"]
        kind = FORMATS.get(export_format)
        if kind is None:
            raise CommandError(f"--format: unknown format '{export_format}'; expected one of {', '.join(FORMATS)}.")
        if centre and not Centre.objects.filter(code=centre).exists():
            raise CommandError(f"--centre: no centre with code '{centre}'.")
        path = pathlib.Path(out)
        if not path.parent.is_dir():
            raise CommandError(f"--out: directory {path.parent} does not exist.")
        scope = centre or ALL_SCOPE
        # As the job does: a temporary name in the same directory, moved into place when whole.
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        started = time.perf_counter()
        try:
            jobs.export_write(kind, scope, partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        seconds = time.perf_counter() - started
        self.stdout.write(f"{path}: {export_format} ({scope}, {path.stat().st_size:,} bytes, {seconds:.1f} s)")
