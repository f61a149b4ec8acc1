"""The Celery application: `celery -A cohort worker` / `celery -A cohort beat`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cohort.settings")

app = Celery("ecrf")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# One structured log line per task (cohort/operations.py); imported late: it needs the settings.
from cohort.operations import connect_task_logging  # noqa: E402

connect_task_logging()
