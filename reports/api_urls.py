"""/api/v1/ (SPEC section 11): the study-data endpoints (cohort/api.py), the reports endpoints
(reports/api.py), the OpenAPI schema and its docs page. Here, not in cohort, because it names views
of both apps (imports point reports -> cohort only).

Every view is marked login_not_required: the API signs requests in by token (cohort/api_auth.py),
not by the session LoginRequiredMiddleware looks at. The schema and the docs page are public: they
describe the API, no data."""

from django.contrib.auth.decorators import login_not_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView
from rest_framework.permissions import AllowAny

from cohort import api as cohort_api
from cohort import converters  # noqa: F401 (registers <study_id:...>)
from reports import api

app_name = "api"


def public(view_class, **kwargs):
    return login_not_required(view_class.as_view(**kwargs))


urlpatterns = [
    path("centres/", public(cohort_api.CentreList), name="centre-list"),
    path("patients/", public(cohort_api.PatientList), name="patient-list"),
    path("patients/<study_id:study_id>/", public(cohort_api.PatientDetail), name="patient-detail"),
    path("outcomes/<str:scope>/", public(api.OutcomeView), name="outcomes"),
    path("dictionary/", public(api.DictionaryView), name="dictionary"),
    path("exports/", public(api.ExportList), name="export-list"),
    path("exports/<int:job_id>/", public(api.ExportDetail), name="export-detail"),
    path("exports/<int:job_id>/download/", public(api.ExportDownload), name="export-download"),
    path("imports/", public(cohort_api.ImportView), name="import"),
    path(
        "schema/",
        public(SpectacularAPIView, permission_classes=[AllowAny], authentication_classes=[]),
        name="schema",
    ),
    path(
        "docs/",
        public(SpectacularRedocView, url_name="api:schema", permission_classes=[AllowAny], authentication_classes=[]),
        name="docs",
    ),
]
