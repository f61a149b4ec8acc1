from django.urls import path

from reports import views

app_name = "reports"

urlpatterns = [
    # The default scope: every centre for coordinators, otherwise the user's first centre.
    path("outcomes/", views.dashboard, name="dashboard-default"),
    path("outcomes/<str:scope>/", views.dashboard, name="dashboard"),
    path("outcomes/<str:scope>/status.json", views.status, name="status"),
]
