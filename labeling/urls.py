"""The labeler UI, mounted at /label/ (`path("label/", include("labeling.urls"))`)."""
from django.urls import path

from labeling import comparison_views, views

app_name = "labeling"

urlpatterns = [
    path("", views.home, name="home"),
    path("queue/", views.queue, name="queue"),
    path("rank/next/", views.ranking_next, name="ranking-next"),
    path("rank/<int:assignment_id>/", views.ranking, name="ranking"),
    path("rank/<int:assignment_id>/submit/", views.ranking_post, name="ranking-submit"),
    path("write/next/", views.demonstration_next, name="demonstration-next"),
    path("write/<int:assignment_id>/", views.demonstration, name="demonstration"),
    path("write/<int:assignment_id>/submit/", views.demonstration_post,
         name="demonstration-submit"),
    path("dialogue/<slug:project_slug>/", views.dialogue, name="dialogue"),
    path("dialogue/<slug:project_slug>/submit/", views.dialogue_post, name="dialogue-submit"),
    path("compare/next/", comparison_views.comparison_next, name="comparison-next"),
    path("compare/<int:assignment_id>/", comparison_views.comparison, name="comparison"),
    path("compare/<int:assignment_id>/submit/", comparison_views.comparison_post,
         name="comparison-submit"),
    path("preview/", views.preview, name="preview"),
    path("tasks/<int:assignment_id>/renew/", views.renew, name="renew"),
    path("tasks/<int:assignment_id>/skip/", views.skip, name="skip"),
    path("stats/<slug:project_slug>/", views.stats, name="stats"),
    path("stats/<slug:project_slug>/exclusion/", views.labeler_exclusion,
         name="labeler-exclusion"),
]
