"""Import in the browser with a preview (issue 15 item 4; reports/imports.py has the how):
upload, the preview's page (progress while a worker computes it), the status the page polls, and
"Apply" with a reason for change. Nurses import their centres' patients, coordinators any centre's;
read-only roles get 403; another user's upload answers 404."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from cohort import uploads
from cohort.models import REASON_MAX_LENGTH
from reports import imports as import_jobs
from reports.models import ImportJob

# A large import's preview is read a page of patients at a time (the summary counts them all).
PATIENTS_PER_PAGE = 100


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".csv,.zip", "class": "form-control"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        uploads = data if isinstance(data, list | tuple) else [data]
        return [super(MultipleFileField, self).clean(upload, initial) for upload in uploads]


class UploadForm(forms.Form):
    files = MultipleFileField(
        label=gettext_lazy("Form files"),
        help_text=gettext_lazy(
            "The CSV files of the import format (patients.csv, assessments.csv, ...), or one zip of them. "
            "Nothing is written until you apply the preview."
        ),
    )

    def clean_files(self):
        files, problems = uploads.unpack(self.cleaned_data["files"])
        if problems:
            raise forms.ValidationError([str(problem) for problem in problems])
        return files


class ApplyForm(forms.Form):
    reason = forms.CharField(
        label=gettext_lazy("Reason for change"),
        max_length=REASON_MAX_LENGTH,
        widget=forms.TextInput(attrs={"class": "form-control", "autocomplete": "off"}),
    )


def _importer(request: HttpRequest) -> None:
    if not import_jobs.may_import(request.user):
        raise PermissionDenied(_("Your role cannot import data."))


def _job(request: HttpRequest, import_id: int) -> ImportJob:
    _importer(request)
    return get_object_or_404(import_jobs.jobs_for_user(request.user), pk=import_id)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def import_upload(request: HttpRequest) -> HttpResponse:
    _importer(request)
    form = UploadForm(request.POST, request.FILES) if request.method == "POST" else UploadForm()
    if request.method == "POST" and form.is_valid():
        job = import_jobs.import_upload(by=request.user, files=form.cleaned_data["files"])
        return redirect("reports:import-detail", import_id=job.pk)
    recent = import_jobs.jobs_for_user(request.user)[:10]
    return render(
        request, "reports/import_upload.html", {"form": form, "recent": recent}, status=400 if form.errors else 200
    )


@login_required
@require_safe
def import_detail(request: HttpRequest, import_id: int) -> HttpResponse:
    job = _job(request, import_id)
    return render(request, "reports/import_detail.html", _context(request, job, ApplyForm()))


def _context(request: HttpRequest, job: ImportJob, form: ApplyForm) -> dict:
    """The job, the apply form, and the preview's summary with one page of its patients."""
    context = {
        "job": job,
        "form": form,
        "expiry_hours": round(settings.IMPORT_UPLOAD_EXPIRY_HOURS),
        "error_lines": import_jobs.error_lines(job.errors),
    }
    if job.preview is not None:
        page = Paginator(job.preview["patients"], PATIENTS_PER_PAGE).get_page(request.GET.get("page"))
        context.update(import_jobs.preview_context({**job.preview, "patients": page.object_list}))
        context.update(
            page=page,
            created=sum(1 for p in job.preview["patients"] if p["new"]),
            changed=sum(1 for p in job.preview["patients"] if not p["new"]),
        )
    return context


@login_required
@require_safe
@never_cache
def import_status(request: HttpRequest, import_id: int) -> JsonResponse:
    """What the import's page polls while a worker checks or applies it."""
    job = _job(request, import_id)
    return JsonResponse(
        {"status": job.status, "working": job.working, "progress": job.progress, "message": job.message}
    )


@login_required
@require_POST
def import_apply(request: HttpRequest, import_id: int) -> HttpResponse:
    job = _job(request, import_id)
    form = ApplyForm(request.POST)
    if not form.is_valid():
        return render(request, "reports/import_detail.html", _context(request, job, form), status=400)
    if not import_jobs.import_apply(job, by=request.user, reason=form.cleaned_data["reason"]):
        messages.info(request, _("This import was applied already, or is not ready; nothing more was written."))
    return redirect("reports:import-detail", import_id=job.pk)
