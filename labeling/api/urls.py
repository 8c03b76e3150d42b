"""The labeling JSON API. Mount with `path("api/labeling/", include("labeling.api.urls"))`."""
from django.urls import path

from labeling.api import comparisons, views

app_name = "labeling_api"

urlpatterns = [
    path("projects/", views.project_list, name="projects"),
    path("projects/<slug:slug>/import/", views.project_import, name="import"),
    path("projects/<slug:slug>/export/", views.project_export, name="export"),
    path("projects/<slug:slug>/snapshots/", views.project_snapshot, name="snapshot"),
    path("projects/<slug:slug>/ranking-tasks/", views.project_ranking_tasks, name="ranking-tasks"),
    path("projects/<slug:slug>/agreement/", views.project_agreement, name="agreement"),
    path("tasks/next/", views.task_next, name="next"),
    path("assignments/<int:assignment_id>/", views.assignment_detail, name="assignment"),
    path("assignments/<int:assignment_id>/ranking/", views.ranking_submit, name="ranking"),
    path("assignments/<int:assignment_id>/demonstration/", views.demonstration_submit,
         name="demonstration"),
    path("assignments/<int:assignment_id>/vote/", comparisons.vote_submit, name="vote"),
    path("assignments/<int:assignment_id>/renew/", views.assignment_renew, name="renew"),
    path("assignments/<int:assignment_id>/skip/", views.assignment_skip, name="skip"),
    path("dialogues/", views.dialogue_create, name="dialogues"),
]
