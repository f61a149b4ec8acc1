"""python manage.py unlock (--study | --centre CODE | --patient STUDY_ID) --reason TEXT [--user NAME]
(SPEC section 8): end the active lock of the study, a centre or a patient's casebook."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from cohort import locks
from cohort.management.commands._user import acting_user
from cohort.management.commands.lock import add_target_arguments, reason_error, target
from cohort.models import LockKind


class Command(BaseCommand):
    help = "Unlock the study, a centre or a patient's casebook (a reason is required)."

    def add_arguments(self, parser):
        add_target_arguments(parser)

    def handle(self, *args, **options):
        aim = target(options)
        kind = LockKind.PATIENT if "patient" in aim else LockKind.CENTRE if "centre" in aim else LockKind.STUDY
        lock = locks.active().filter(kind=kind, **aim).first()
        if lock is None:
            raise CommandError("nothing to unlock: there is no such active lock.")
        try:
            locks.unlock(lock=lock, by=acting_user(options["user"]), reason=options["reason"])
        except ValidationError as error:
            raise reason_error(error) from None
        self.stdout.write(f"Unlocked: {locks.what(lock)} (lock {lock.pk}).")
