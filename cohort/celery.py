"""The Celery application: `celery -A cohort worker` / `celery -A cohort beat`."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cohort.settings")

app = Celery("ecrf")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.celeryd_init.connect
def _wait_out_the_broker(conf=None, **_kwargs) -> None:
    """In a worker, no socket timeouts on the broker connection.

    The short ones in CELERY_BROKER_TRANSPORT_OPTIONS are for the processes that only publish (web,
    beat): a save must not wait for a dead or hung Redis. A worker's consumer must wait it out
    instead: when an acknowledgement timed out while Redis was frozen, kombu's consumer stayed
    stuck after Redis came back and the worker took no task again. Without the timeouts the
    worker blocks while Redis hangs and carries on when it answers; a Redis that is gone (refused
    connection) is reconnected to as before."""
    options = dict(conf.broker_transport_options or {})
    for key in ("socket_timeout", "socket_connect_timeout"):
        options.pop(key, None)
    conf.broker_transport_options = options


# One structured log line per task (cohort/operations.py); imported late: it needs the settings.
from cohort.operations import connect_task_logging  # noqa: E402

connect_task_logging()
