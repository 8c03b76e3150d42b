"""Staff pages of training, mounted at /training/:
`path("training/", include("training.urls"))` in webapp/urls.py."""

from django.urls import path

from training import evaluation_views, views

app_name = "training"

urlpatterns = [
    path("", views.index, name="index"),
    path("projects/<slug:slug>/", views.project, name="project"),
    path("projects/<slug:slug>/start/<slug:kind>/", views.start, name="start"),
    path("projects/<slug:slug>/rounds/continue/", views.continue_round, name="continue-round"),
    path("projects/<slug:slug>/evaluation/", evaluation_views.evaluation, name="evaluation"),
    path("projects/<slug:slug>/evaluation/compare/", evaluation_views.compare_start,
         name="compare-start"),
    path("projects/<slug:slug>/leaderboard/", evaluation_views.leaderboard_page,
         name="leaderboard"),
    path("projects/<slug:slug>/leaderboard.json", evaluation_views.leaderboard_json,
         name="leaderboard-json"),
    path("projects/<slug:slug>/leaderboard.csv", evaluation_views.leaderboard_csv,
         name="leaderboard-csv"),
    path("runs/<int:run_id>/", views.run, name="run"),
    path("runs/<int:run_id>/live/", views.run_live, name="run-live"),
    path("runs/<int:run_id>/cancel/", views.cancel, name="cancel"),
    path("runs/<int:run_id>/resume/", views.resume, name="resume"),
    path("versions/<int:version_id>/", views.version, name="version"),
    path("versions/<int:version_id>/export/", views.export, name="export"),
    path("versions/<int:version_id>/exports/<str:filename>", views.export_download,
         name="export-download"),  # fmt: skip
]
