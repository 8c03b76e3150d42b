from django.contrib import admin
from django.urls import include, path

from webapp import accounts, views

admin.site.login_form = accounts.LimitedAdminAuthenticationForm  # the same login limit

urlpatterns = [
    path("", views.home, name="home"),
    path("status/", views.status, name="status"),
    path("status/heartbeat/", views.status_heartbeat, name="status-heartbeat"),
    path("accounts/", include(accounts.urlpatterns)),
    path("admin/", admin.site.urls),
    path("label/", include("labeling.urls")),
    path("api/labeling/", include("labeling.api.urls")),
    path("training/", include("training.urls")),
    path("chat/", include("chat.urls")),
]
