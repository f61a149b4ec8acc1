"""Pages to request reports and exports, follow their progress and download them.

Every job is found through cohort.access: another centre's report answers 404, like one that
does not exist."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST, require_safe

from cohort import access
from reports import access as report_access
from reports import jobs
from reports.models import ReportJob

SCOPE_KINDS = [choice for choice in ReportJob.Kind.choices if choice[0] != ReportJob.Kind.CASEBOOK_PDF]


class ReportRequestForm(forms.Form):
    kind = forms.ChoiceField(
        label=gettext_lazy("What"), choices=SCOPE_KINDS, widget=forms.Select(attrs={"class": "form-select"})
    )
    scope = forms.ChoiceField(label=gettext_lazy("Centres"), widget=forms.Select(attrs={"class": "form-select"}))

    def __init__(self, *args, scopes: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        # Only scopes the user may read can be chosen: a forged scope is an invalid choice.
        self.fields["scope"].choices = [(s, _("All centres") if s == access.ALL_SCOPE else s) for s in scopes]


def _job_json(job: ReportJob) -> dict:
    return {
        "id": job.pk,
        "status": job.status,
        "status_label": job.get_status_display(),
        "progress": job.progress,
        "message": job.message,
        "data_version": job.data_version,
        "error": job.error if job.status == ReportJob.Status.FAILED else "",
        "download_url": reverse("reports:job-download", args=[job.pk]) if job.status == ReportJob.Status.DONE else None,
    }


@login_required
@require_safe
def report_list(request: HttpRequest) -> HttpResponse:
    scopes = access.readable_scopes(request.user)
    page = Paginator(report_access.jobs_for_user(request.user), 30).get_page(request.GET.get("page"))
    return render(
        request,
        "reports/report_list.html",
        {"form": ReportRequestForm(scopes=scopes), "page": page, "scopes": scopes},
    )


@login_required
@require_POST
def report_request(request: HttpRequest) -> HttpResponse:
    form = ReportRequestForm(request.POST, scopes=access.readable_scopes(request.user))
    if not form.is_valid():
        messages.error(request, _("Choose what to generate and for which centres."))
        return redirect("reports:report-list")
    job = jobs.job_request(kind=form.cleaned_data["kind"], scope=form.cleaned_data["scope"], by=request.user)
    messages.success(request, _("%(what)s is queued.") % {"what": job.get_kind_display()})
    return redirect("reports:report-list")


@login_required
@require_POST
def casebook_request(request: HttpRequest, study_id: str) -> HttpResponse:
    patient = access.get_patient_for_user(request.user, study_id)
    jobs.job_request(kind=ReportJob.Kind.CASEBOOK_PDF, scope=patient.centre.code, patient=patient, by=request.user)
    messages.success(request, _("The casebook PDF of %(id)s is queued.") % {"id": patient.study_id})
    return redirect("reports:report-list")


@login_required
@require_safe
def job_status(request: HttpRequest, job_id: int) -> JsonResponse:
    job = report_access.get_job_for_user(request.user, job_id)
    response = JsonResponse(_job_json(job))
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_safe
def job_download(request: HttpRequest, job_id: int) -> FileResponse:
    job = report_access.get_job_for_user(request.user, job_id)
    path = jobs.job_file(job)
    if path is None:
        raise Http404("This report is not ready.")
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name.split("-", 1)[1])


@login_required
@require_POST
def job_retry(request: HttpRequest, job_id: int) -> HttpResponse:
    job = report_access.get_job_for_user(request.user, job_id)
    if not report_access.can_retry(request.user, job):
        raise PermissionDenied(_("Only who requested it, or a coordinator, can retry a report."))
    if jobs.job_retry(job):
        messages.success(request, _("The report is queued again."))
    return redirect("reports:report-list")
