from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from ocrdash.health import HealthzView, WebHealthzView
from ocrdash.metrics import metrics_view

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", HealthzView.as_view(), name="healthz"),
    path("healthz/web", WebHealthzView.as_view(), name="healthz-web"),
    path("metrics", metrics_view, name="metrics"),
    path("api/", include("models_admin.api.urls")),
    path("", include("models_admin.urls")),
]
