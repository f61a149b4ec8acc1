"""The REST API's study-data endpoints under /api/v1/ (SPEC section 11): centres, patients, a patient's
forms in the import format, and the import itself. reports/api.py has outcomes, the dictionary and
export jobs; cohort/api_urls.py puts them together.

Access is the browser's, through cohort.access: another centre's patient answers 404, a read-only
role writing 403. Every read of patient data and every import is in the access log (ApiAccess).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cohort import access, csvformat, uploads
from cohort.audit import audit_context
from cohort.importer import ImportFailed, import_cohort
from cohort.models import REASON_MAX_LENGTH, ApiAccess, Centre


def log_access(request: Request, *, scope: str = "", study_id: str = "", detail: str = "") -> None:
    """Put this request in the access log: who, when, which endpoint, which scope or patient."""
    ApiAccess.objects.create(
        user=request.user,
        token=request.auth,
        method=request.method,
        endpoint=request.path[:200],
        scope=scope[:16],
        study_id=study_id[:16],
        detail=detail[:200],
    )


class CentreSerializer(serializers.ModelSerializer):
    class Meta:
        model = Centre
        fields = ["code", "name"]


class CentreList(generics.ListAPIView):
    """The centres whose data the token's user may read."""

    serializer_class = CentreSerializer
    pagination_class = None

    def get_queryset(self):
        return access.centres_for_user(self.request.user)


class PatientPagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class PatientSerializer(serializers.Serializer):
    study_id = serializers.CharField()
    centre = serializers.CharField(source="centre.code")
    enrolment_date = serializers.DateField()


@extend_schema(parameters=[OpenApiParameter("centre", str, description="Only this centre's patients (a centre code).")])
class PatientList(generics.ListAPIView):
    """The patients the user may see, by study ID, a page at a time; `?centre=CODE` for one centre
    (another centre's code answers 404, like one that does not exist)."""

    serializer_class = PatientSerializer
    pagination_class = PatientPagination

    def get_queryset(self):
        patients = access.patients_for_user(self.request.user).select_related("centre")
        code = self.request.query_params.get("centre")
        if code is not None:
            if not access.centres_for_user(self.request.user).filter(code=code).exists():
                raise Http404("No such centre.")
            patients = patients.filter(centre__code=code)
        return patients.only("study_id", "enrolment_date", "centre__code").order_by("study_id")

    def list(self, request, *args, **kwargs):
        response = super().list(request, *args, **kwargs)
        page = request.query_params.get("page", "1")
        log_access(request, scope=request.query_params.get("centre", ""), detail=f"patient list, page {page}")
        return response


class PatientDetail(APIView):
    """One patient's every form, as the import files hold them: variable names of the data
    dictionary, codes, dates YYYY-MM-DD, decimals with a dot, missing = "". Each form is a list of
    rows (one at most for a one-per-patient form)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, study_id: str) -> Response:
        patient = access.get_patient_for_user(request.user, study_id)
        log_access(request, scope=patient.centre.code, study_id=patient.study_id)
        return Response(
            {"study_id": patient.study_id, "centre": patient.centre.code, "forms": csvformat.patient_files(patient.pk)}
        )


def _unpack(request: Request, directory: Path) -> list[dict[str, object]]:
    """Put the uploaded form files (CSV files, or zips of them) into `directory`, checked as the
    import page checks them (cohort.uploads: names, paths in a zip, its unpacked size as read, file
    sizes, UTF-8); what is wrong comes back as the import's errors, and then nothing is written."""
    files, problems = uploads.unpack([upload for key in request.FILES for upload in request.FILES.getlist(key)])
    if problems:
        return [problem.as_json() for problem in problems]
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return []


class ImportRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=REASON_MAX_LENGTH,
        required=False,
        allow_blank=True,
        help_text="The reason for change, in the audit trail (required unless dry_run).",
    )
    dry_run = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Write nothing; answer the change set: every patient to be created or changed, field by field.",
    )
    file = serializers.FileField(required=False, help_text="A zip of the form files; or send each <form>.csv.")


IMPORT_ERRORS = inline_serializer(
    "ImportErrors",
    {
        "errors": inline_serializer(
            "ImportError",
            {
                "file": serializers.CharField(),
                "row": serializers.IntegerField(),
                "variable": serializers.CharField(),
                "message": serializers.CharField(),
            },
            many=True,
        )
    },
)


class ImportView(APIView):
    """Import form files in the SPEC section 8 format, exactly as `import_cohort` does: all or
    nothing, idempotent. Nurses, for the patients of their centres; every error comes back as
    {file, row, variable, message}."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": ImportRequestSerializer},
        responses={200: OpenApiTypes.OBJECT, 400: IMPORT_ERRORS, 403: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        centres = access.writable_centre_ids(request.user)
        if not centres:
            raise PermissionDenied("Your role is read-only.")
        form = ImportRequestSerializer(
            data={"reason": request.data.get("reason", ""), "dry_run": request.data.get("dry_run", False)}
        )
        form.is_valid(raise_exception=True)
        dry_run = form.validated_data["dry_run"]
        if not dry_run and not form.validated_data["reason"]:
            raise serializers.ValidationError({"reason": ["This field is required."]})
        with tempfile.TemporaryDirectory() as directory:
            errors = _unpack(request, Path(directory))
            if errors:
                return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)
            try:
                with transaction.atomic(), audit_context(user=request.user, reason=form.validated_data["reason"]):
                    summary = import_cohort(
                        Path(directory),
                        user=request.user,
                        centres=centres,
                        source="api_import",
                        write=not dry_run,
                        record=dry_run,
                    )
            except ImportFailed as failure:
                log_access(request, detail=f"import refused: {len(failure.errors)} error(s)")
                errors = [csvformat.error_parts(error) for error in failure.errors]
                return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        log_access(request, detail=f"import{' dry run' if dry_run else ''}: {summary.changes} change(s)")
        body = {
            "changes": summary.changes,
            **{bucket: dict(getattr(summary, bucket)) for bucket in ("created", "updated", "deleted", "unchanged")},
        }
        if dry_run:  # the change set, as `import_cohort --dry-run` prints it and the import page shows it
            body["patients"] = summary.as_json()["patients"]
        return Response(body)
