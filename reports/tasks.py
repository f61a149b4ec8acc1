"""Celery tasks: thin interfaces that take ids or scope codes and call a service (STYLE)."""

from __future__ import annotations

from celery import shared_task
from django.db import connection

from cohort.models import Patient


@shared_task
def database_health() -> dict:
    """What the worker sees of the study database: proves it reads committed rows from PostgreSQL."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version')")
        (server_version,) = cursor.fetchone()
    return {"patients": Patient.objects.count(), "server_version": server_version}
