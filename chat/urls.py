"""The chat pages, mounted at /chat/."""
from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("start/", views.start, name="start"),
    path("compare/", views.compare_random, name="compare-random"),
    path("arena/", views.arena, name="arena"),
    path("arena/start/", views.arena_start_view, name="arena-start"),
    path("arena/<int:pk>/", views.arena_battle, name="arena-battle"),
    path("arena/<int:pk>/vote/", views.arena_vote_view, name="arena-vote"),
    path("<int:pk>/", views.conversation, name="conversation"),
    path("<int:pk>/send/", views.send, name="send"),
    path("<int:pk>/messages/<int:message_id>/edit/", views.edit, name="edit"),
    path("<int:pk>/messages/<int:message_id>/regenerate/", views.regenerate, name="regenerate"),
    path("<int:pk>/messages/<int:message_id>/show/", views.show, name="show"),
    path("<int:pk>/messages/<int:message_id>/compare/", views.compare, name="compare"),
    path("suggest/<slug:project_slug>/", views.suggest, name="suggest"),
    path("replies/<uuid:key>/events/", views.events, name="events"),
    path("replies/<uuid:key>/retry/", views.retry, name="retry"),
]
