from django.urls import path, re_path
from django.views.generic import RedirectView

from cohort import views

app_name = "cohort"

STUDY_ID = r"(?P<study_id>[A-Z0-9]{2,10}-[0-9]{3,5})"
SINGLE = r"(?P<key>patient|reinduction|follow_up|week_0|week_8|week_20|week_52)"
REPEATING = r"(?P<key>prior_biologics|doses|adverse_events)"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="cohort:patient-list", permanent=False), name="home"),
    path("patients/", views.patient_list, name="patient-list"),
    path("patients/new/", views.patient_enrol, name="patient-enrol"),
    re_path(rf"^patients/{STUDY_ID}/$", views.patient_detail, name="patient-detail"),
    re_path(rf"^patients/{STUDY_ID}/history/$", views.patient_history, name="patient-history"),
    re_path(rf"^patients/{STUDY_ID}/delete/$", views.patient_delete, name="patient-delete"),
    re_path(rf"^patients/{STUDY_ID}/flags/confirm/$", views.flag_confirm, name="flag-confirm"),
    re_path(rf"^patients/{STUDY_ID}/forms/{SINGLE}/$", views.form_edit, name="form"),
    re_path(rf"^patients/{STUDY_ID}/rows/{REPEATING}/$", views.rows, name="rows"),
    re_path(rf"^patients/{STUDY_ID}/rows/{REPEATING}/(?P<pk>[0-9]+)/delete/$", views.row_delete, name="row-delete"),
]
