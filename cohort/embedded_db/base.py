"""Django's PostgreSQL backend on the embedded server (cohort.embedded_pg), which it starts on the
first connection rather than when the settings are imported: an image build's collectstatic, or
any command that needs no database, starts no server."""

from django.db.backends.postgresql import base

from cohort import embedded_pg


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        embedded_pg.join(self.settings_dict)
        return super().get_connection_params()
