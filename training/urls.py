"""Staff pages of training, mounted at /training/:
`path("training/", include("training.urls"))` in webapp/urls.py."""

from django.urls import path

from training import views

app_name = "training"

urlpatterns = [
    path("", views.index, name="index"),
    path("projects/<slug:slug>/", views.project, name="project"),
    path("projects/<slug:slug>/start/<slug:kind>/", views.start, name="start"),
    path("projects/<slug:slug>/rounds/continue/", views.continue_round, name="continue-round"),
    path("runs/<int:run_id>/", views.run, name="run"),
    path("runs/<int:run_id>/live/", views.run_live, name="run-live"),
    path("runs/<int:run_id>/cancel/", views.cancel, name="cancel"),
    path("runs/<int:run_id>/resume/", views.resume, name="resume"),
    path("versions/<int:version_id>/", views.version, name="version"),
    path("versions/<int:version_id>/export/", views.export, name="export"),
    path("versions/<int:version_id>/exports/<str:filename>", views.export_download,
         name="export-download"),  # fmt: skip
]
