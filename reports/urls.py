from django.urls import path

from cohort import converters  # noqa: F401 (registers <study_id:...>)
from reports import downloads, import_views, views

app_name = "reports"

urlpatterns = [
    # The default scope: every centre for coordinators, otherwise the user's first centre.
    path("outcomes/", views.dashboard, name="dashboard-default"),
    path("outcomes/<str:scope>/", views.dashboard, name="dashboard"),
    path("outcomes/<str:scope>/status.json", views.status, name="status"),
    path("reports/", downloads.report_list, name="report-list"),
    path("reports/new/", downloads.report_request, name="report-request"),
    path("reports/<int:job_id>/status.json", downloads.job_status, name="job-status"),
    path("reports/<int:job_id>/download/", downloads.job_download, name="job-download"),
    path("reports/<int:job_id>/retry/", downloads.job_retry, name="job-retry"),
    path("imports/", import_views.import_upload, name="import-upload"),
    path("imports/<int:import_id>/", import_views.import_detail, name="import-detail"),
    path("imports/<int:import_id>/status/", import_views.import_status, name="import-status"),
    path("imports/<int:import_id>/apply/", import_views.import_apply, name="import-apply"),
    path("patients/<study_id:study_id>/casebook-pdf/", downloads.casebook_request, name="casebook-request"),
]
