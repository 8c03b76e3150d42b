"""`{% load markdown %}` then `{{ text|markdown }}`: people's and models' text as safe HTML
(see `labeling.markdown`)."""
from django import template
from django.utils.safestring import mark_safe

from labeling.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text) -> str:
    return mark_safe(render_markdown(str(text or "")))  # noqa: S308 - sanitized by nh3
