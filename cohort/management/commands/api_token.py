from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from cohort.api_auth import DEFAULT_DAYS, MAX_DAYS, token_create


class Command(BaseCommand):
    help = (
        "Print a new personal API token for USERNAME (SPEC section 11): shown once, stored hashed, "
        f"valid --days days (default {DEFAULT_DAYS}). Use it as `Authorization: Token <token>`."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"days until it expires, 1 to {MAX_DAYS}")
        parser.add_argument("--name", default="manage.py api_token", help="what the token is for")

    def handle(self, *args, username: str, days: int, name: str, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named '{username}'.")
        if not user.is_active:
            raise CommandError(f"{username} is deactivated; a token would not work.")
        if not 1 <= days <= MAX_DAYS:
            raise CommandError(f"--days must be between 1 and {MAX_DAYS}.")
        row, token = token_create(user=user, name=name, days=days)
        self.stderr.write(f"Token {row.prefix}... for {username}, expires {row.expires_at:%Y-%m-%d %H:%M} UTC:")
        self.stdout.write(token)
