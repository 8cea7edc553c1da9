from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from diagnosis import accounts

urlpatterns = [
    path("accounts/login/", accounts.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # One log-in page for the whole site, so the admin's also shows lockouts and idle log-outs.
    path("admin/login/", RedirectView.as_view(pattern_name="login", query_string=True), name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("diagnosis.api")),
    path("fhir/", include("diagnosis.fhir_views")),
    path("", include("diagnosis.urls")),
]
