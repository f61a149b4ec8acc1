import logging
import pathlib
import time

from django.core.management.base import BaseCommand, CommandError

from cohort.access import ALL_SCOPE
from cohort.models import Centre


class Command(BaseCommand):
    help = (
        "Render the cohort report PDF (SPEC section 7) from the current data, synchronously, with the same "
        "code as the workers: render_report --out FILE [--centre CODE]."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="the PDF file to write")
        parser.add_argument("--centre", help="a centre code; default: all centres")

    def handle(self, *args, out, centre=None, **options):
        scope = centre or ALL_SCOPE
        if centre and not Centre.objects.filter(code=centre).exists():
            raise CommandError(f"--centre: no centre with code '{centre}'.")
        path = pathlib.Path(out)
        if not path.parent.is_dir():
            raise CommandError(f"--out: directory {path.parent} does not exist.")
        if options["verbosity"] < 2:  # WeasyPrint logs every layout step at INFO
            logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)
        from reports import pdf  # after the logger is quieted: WeasyPrint logs on import too

        started = time.perf_counter()
        pages = pdf.cohort_report(scope, path)
        seconds = time.perf_counter() - started
        self.stdout.write(f"{path}: {pages} page{'s' if pages != 1 else ''} ({scope}, {seconds:.1f} s)")
