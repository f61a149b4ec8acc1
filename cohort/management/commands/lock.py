"""python manage.py lock (--study | --centre CODE | --patient STUDY_ID) --reason TEXT [--user NAME]
(SPEC section 8): lock the study, a centre or a patient's casebook (section 10)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from cohort import locks
from cohort.management.commands._user import acting_user
from cohort.models import Centre, Patient


def add_target_arguments(parser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--study", action="store_true", help="the whole study (a database freeze)")
    target.add_argument("--centre", metavar="CODE", help="every patient of one centre")
    target.add_argument("--patient", metavar="STUDY_ID", help="one patient's casebook")
    parser.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    parser.add_argument("--user", help="username recorded in the audit trail (default: system)")


def target(options) -> dict:
    """The lock's target from --study / --centre / --patient: {} (the study), centre= or patient=."""
    if options["centre"]:
        try:
            return {"centre": Centre.objects.get(code=options["centre"])}
        except Centre.DoesNotExist:
            raise CommandError(f"--centre: no centre with code '{options['centre']}'.") from None
    if options["patient"]:
        try:
            return {"patient": Patient.objects.select_related("centre").get(study_id=options["patient"])}
        except Patient.DoesNotExist:
            raise CommandError(f"--patient: no patient '{options['patient']}'.") from None
    return {}


def reason_error(error: ValidationError) -> CommandError:
    return CommandError("--reason: " + " ".join(error.messages))


class Command(BaseCommand):
    help = "Lock the study, a centre or a patient's casebook: every write of it is refused until unlocked."

    def add_arguments(self, parser):
        add_target_arguments(parser)

    def handle(self, *args, **options):
        try:
            lock, new = locks.lock(by=acting_user(options["user"]), reason=options["reason"], **target(options))
        except ValidationError as error:
            raise reason_error(error) from None
        if new:
            self.stdout.write(f"Locked: {locks.what(lock)} (lock {lock.pk}).")
        else:
            self.stdout.write(f"Already locked: {locks.what(lock)} (lock {lock.pk}, since {lock.locked_at:%Y-%m-%d}).")
