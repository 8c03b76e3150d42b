"""Template tags other apps' pages use to offer the live model without importing the chat app."""
from django import template
from django.urls import reverse

from chat.services.conversations import chat_models

register = template.Library()


@register.simple_tag
def suggest_url(project) -> str:
    """Where the dialogue page asks for live suggestions; empty when no model is open for chat."""
    if project is None or not chat_models(project).exists():
        return ""
    return reverse("chat:suggest", args=[project.slug])
