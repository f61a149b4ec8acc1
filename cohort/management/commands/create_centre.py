from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from cohort.management.commands._user import acting_user
from cohort.models import Centre
from cohort.services import centre_create


class Command(BaseCommand):
    help = 'Create a centre: create_centre CODE "Name".'

    def add_arguments(self, parser):
        parser.add_argument("code", help="2 to 10 capital letters or digits, e.g. AMC")
        parser.add_argument("name", help="the centre's name")
        parser.add_argument("--user", help="username recorded in the audit trail (default: system)")

    def handle(self, *args, code, name, user=None, **options):
        if Centre.objects.filter(code=code).exists():
            raise CommandError(f"centre {code} already exists.")
        try:
            centre = centre_create(code=code, name=name, by=acting_user(user))
        except ValidationError as error:
            lines = [f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items()]
            raise CommandError("; ".join(lines)) from None
        self.stdout.write(f"Created centre {centre.code} ({centre.name}).")
