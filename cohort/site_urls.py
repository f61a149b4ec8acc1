"""The root URL configuration."""

from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Ustekinumab re-induction cohort - eCRF"
admin.site.site_title = "eCRF"
admin.site.index_title = "Study administration"

urlpatterns = [
    path("accounts/", include("cohort.account_urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("reports.api_urls")),
    path("", include("reports.urls")),
    path("", include("cohort.urls")),
]
