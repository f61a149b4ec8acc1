from django.urls import path
from django.views.generic import RedirectView

from cohort import converters, lock_views, query_views, sign_views, views  # noqa: F401 (converters registers the path converters)

app_name = "cohort"


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="cohort:patient-list", permanent=False), name="home"),
    path("patients/", views.patient_list, name="patient-list"),
    path("patients/new/", views.patient_enrol, name="patient-enrol"),
    path("patients/<study_id:study_id>/", views.patient_detail, name="patient-detail"),
    path("patients/<study_id:study_id>/history/", views.patient_history, name="patient-history"),
    path("patients/<study_id:study_id>/delete/", views.patient_delete, name="patient-delete"),
    path("patients/<study_id:study_id>/flags/confirm/", views.flag_confirm, name="flag-confirm"),
    path("patients/<study_id:study_id>/lock/", lock_views.patient_lock, name="patient-lock"),
    path("patients/<study_id:study_id>/unlock/", lock_views.patient_unlock, name="patient-unlock"),
    path("patients/<study_id:study_id>/verify/", views.verify, name="verify"),
    path("patients/<study_id:study_id>/queries/new/", query_views.query_raise, name="query-raise"),
    path("queries/", query_views.query_list, name="query-list"),
    path("queries/<int:pk>/", query_views.query_detail, name="query"),
    path("patients/<study_id:study_id>/sign/", sign_views.sign, name="sign"),
    path("locks/", lock_views.lock_list, name="lock-list"),
    path("locks/new/", lock_views.lock_new, name="lock-new"),
    path("locks/unlock/", lock_views.lock_unlock, name="lock-unlock"),
    path("patients/<study_id:study_id>/forms/<single_form:key>/", views.form_edit, name="form"),
    path("patients/<study_id:study_id>/rows/<repeating_form:key>/", views.rows, name="rows"),
    path(
        "patients/<study_id:study_id>/rows/<repeating_form:key>/<int:pk>/delete/", views.row_delete, name="row-delete"
    ),
]
