from django.contrib import admin
from django.urls import include, path

from webapp import views

urlpatterns = [
    path("", views.home, name="home"),
    path("status/", views.status, name="status"),
    path("status/heartbeat/", views.status_heartbeat, name="status-heartbeat"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("label/", include("labeling.urls")),
    path("api/labeling/", include("labeling.api.urls")),
    path("training/", include("training.urls")),
    path("chat/", include("chat.urls")),
]
