"""The root URL configuration."""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

admin.site.site_header = "Ustekinumab re-induction cohort - eCRF"
admin.site.site_title = "eCRF"
admin.site.index_title = "Study administration"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
]
