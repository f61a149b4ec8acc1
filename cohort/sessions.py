"""Sessions in the database, as django.contrib.sessions' database store keeps them, with the two
statements every request runs written once instead of composed by the ORM each time: the read of
the session, and its save, which renews the expiry (SESSION_SAVE_EVERY_REQUEST: the idle timeout).
Composing them was about as much CPU as running them (issue 14). The same table, rows, expiry and
errors; creating, cycling, flushing and clearing sessions are Django's own.
"""

from __future__ import annotations

from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import UpdateError
from django.db import connections, router
from django.utils import timezone


class SessionStore(db.SessionStore):
    def load(self) -> dict:
        table = self.model._meta.db_table
        with connections[router.db_for_read(self.model)].cursor() as cursor:
            cursor.execute(
                f"SELECT session_data FROM {table} WHERE session_key = %s AND expire_date > %s",
                [self.session_key, timezone.now()],
            )
            found = cursor.fetchone()
        if found is None:  # gone or expired: a new session, as Django's store does
            self._session_key = None
            return {}
        return self.decode(found[0])

    def save(self, must_create: bool = False) -> None:
        if must_create or self.session_key is None:
            return super().save(must_create=must_create)
        data = self.encode(self._get_session())
        table = self.model._meta.db_table
        with connections[router.db_for_write(self.model)].cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET session_data = %s, expire_date = %s WHERE session_key = %s",
                [data, self.get_expiry_date(), self.session_key],
            )
            if cursor.rowcount != 1:  # deleted meanwhile (signed out elsewhere): as Django's store
                raise UpdateError
        return None
