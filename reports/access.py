"""Who may read which outcome scope, and see, download and retry which report job: decided here, on
top of cohort.access (the one home for who may read which centre and patient)."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

from cohort import access
from cohort.models import Centre, Patient
from reports.models import ReportJob


def jobs_for_user(user: User | AnonymousUser) -> QuerySet[ReportJob]:
    """Reports and exports of the scopes (and casebooks of the patients) the user may read."""
    jobs = ReportJob.objects.select_related("requested_by", "patient")
    if access.is_coordinator(user):
        return jobs
    readable = access.readable_centre_ids(user) or set()
    codes = list(Centre.objects.filter(pk__in=readable).values_list("code", flat=True))
    return jobs.filter(scope__in=codes).exclude(patient__in=Patient.all_objects.removed())


def get_job_for_user(user: User | AnonymousUser, job_id: int) -> ReportJob:
    try:
        return jobs_for_user(user).get(pk=job_id)
    except ReportJob.DoesNotExist:
        raise Http404("No such report.") from None


def can_retry(user: User | AnonymousUser, job: ReportJob) -> bool:
    """Who requested a job, or a coordinator, may queue it again."""
    return job.requested_by_id == user.pk or access.is_coordinator(user)


def scope_choices(user: User | AnonymousUser) -> list[tuple[str, str]]:
    """(scope, label) of the outcome scopes the user may read: "all" first for coordinators, then
    each readable centre."""
    centres = [(code, f"{code} · {name}") for code, name in access.centres_for_user(user).values_list("code", "name")]
    return ([(access.ALL_SCOPE, _("All centres"))] if access.is_coordinator(user) else []) + centres


def readable_scope(user: User | AnonymousUser, scope: str | None) -> tuple[str, list[tuple[str, str]]]:
    """The scope asked for (the first readable one when none is), with the user's choices; a scope
    the user may not read is a 404, as one that does not exist."""
    choices = scope_choices(user)
    if scope is None and choices:
        scope = choices[0][0]
    if scope not in dict(choices):
        raise Http404("No such scope.")
    return scope, choices
