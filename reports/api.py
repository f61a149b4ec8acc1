"""The REST API's reports endpoints under /api/v1/ (SPEC section 11): the outcome JSON of a scope, the
data dictionary, and export jobs (requested, polled and downloaded as in the browser:
reports/jobs.py, reports/downloads.py). Access through reports/access.py; every outcome read and
every export request and download is in the access log (cohort.api.log_access)."""

from __future__ import annotations

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from cohort.api import log_access
from reports import access as report_access
from reports import jobs, services
from reports.dataset import DICTIONARY_HEADER, dictionary_rows
from reports.exports import EXPORT_KINDS
from reports.models import ReportJob


class OutcomeView(APIView):
    """The SPEC section 5 outcome JSON of the scope ("all" or a centre code) from its latest
    snapshot, with the data version it reflects and when it was computed. 404 for a scope the user
    may not read, and while no snapshot exists yet."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, scope: str) -> Response:
        scope, _choices = report_access.readable_scope(request.user, scope)
        snapshot = services.latest_snapshot(scope)
        if snapshot is None:
            raise Http404("No outcomes computed yet for this scope.")
        log_access(request, scope=scope, detail="outcomes")
        return Response(
            {
                "scope": scope,
                "data_version": snapshot.data_version,
                "computed_at": snapshot.computed_at,
                "algorithm_version": snapshot.algorithm_version,
                "updating": services.is_updating(scope),
                "outcomes": snapshot.result,
            }
        )


class DictionaryView(APIView):
    """The data dictionary as the dictionary export writes it: every variable of the forms, then the
    analysis dataset's derived variables (form "wide"), with the numeric codes of SPSS and Stata."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response([dict(zip(DICTIONARY_HEADER, row, strict=True)) for row in dictionary_rows()])


class ExportRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=list(EXPORT_KINDS))
    centre = serializers.CharField(
        required=False, help_text='A centre code, or "all" (coordinators); default: all, or your first centre.'
    )


class ExportJobSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    kind = serializers.CharField()
    scope = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    message = serializers.CharField()
    error = serializers.SerializerMethodField()
    data_version = serializers.IntegerField(allow_null=True)
    requested_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    file_size = serializers.IntegerField(allow_null=True)
    download = serializers.SerializerMethodField()

    def get_error(self, job: ReportJob) -> str:
        return job.error if job.status == ReportJob.Status.FAILED else ""

    def get_download(self, job: ReportJob) -> str | None:
        if job.status != ReportJob.Status.DONE:
            return None
        return reverse("api:export-download", args=[job.pk], request=self.context.get("request"))


class ExportList(APIView):
    """Request an export job, as the browser's Reports page does; a worker writes the file."""

    @extend_schema(request=ExportRequestSerializer, responses={202: ExportJobSerializer})
    def post(self, request: Request) -> Response:
        form = ExportRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        # A centre the user may not read answers 404, like one that does not exist.
        scope, _choices = report_access.readable_scope(request.user, form.validated_data.get("centre"))
        job = jobs.job_request(kind=form.validated_data["kind"], scope=scope, by=request.user)
        log_access(request, scope=scope, detail=f"export {job.kind} #{job.pk} requested")
        job.refresh_from_db()  # run at once when there is no broker
        return Response(ExportJobSerializer(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)


class ExportDetail(APIView):
    """An export job's state: poll until `status` is done (or failed), then GET `download`."""

    @extend_schema(responses=ExportJobSerializer)
    def get(self, request: Request, job_id: int) -> Response:
        job = report_access.get_job_for_user(request.user, job_id)
        return Response(ExportJobSerializer(job, context={"request": request}).data)


class ExportDownload(APIView):
    """The finished file of an export job; 404 until it is done."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, job_id: int) -> FileResponse:
        job = report_access.get_job_for_user(request.user, job_id)
        path = jobs.job_file(job)
        if path is None:
            raise Http404("This export is not ready.")
        log_access(request, scope=job.scope, study_id=job.patient.study_id if job.patient else "", detail=job.kind)
        return FileResponse(path.open("rb"), as_attachment=True, filename=path.name.split("-", 1)[1])
