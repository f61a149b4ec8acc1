"""Who may see, download and retry which report job: decided here, on top of cohort.access (the
one home for who may read which centre and patient)."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet
from django.http import Http404

from cohort import access
from cohort.models import Centre
from reports.models import ReportJob


def jobs_for_user(user: User | AnonymousUser) -> QuerySet[ReportJob]:
    """Reports and exports of the scopes (and casebooks of the patients) the user may read."""
    jobs = ReportJob.objects.select_related("requested_by", "patient")
    if access.is_coordinator(user):
        return jobs
    readable = access.readable_centre_ids(user) or set()
    codes = list(Centre.objects.filter(pk__in=readable).values_list("code", flat=True))
    return jobs.filter(scope__in=codes).exclude(patient__deleted_at__isnull=False)


def get_job_for_user(user: User | AnonymousUser, job_id: int) -> ReportJob:
    try:
        return jobs_for_user(user).get(pk=job_id)
    except ReportJob.DoesNotExist:
        raise Http404("No such report.") from None


def can_retry(user: User | AnonymousUser, job: ReportJob) -> bool:
    """Who requested a job, or a coordinator, may queue it again."""
    return job.requested_by_id == user.pk or access.is_coordinator(user)
