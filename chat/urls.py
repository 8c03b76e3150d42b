"""The chat pages, mounted at /chat/."""
from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("start/", views.start, name="start"),
    path("compare/", views.compare_random, name="compare-random"),
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
