"""Builders for labeling rows in tests, through the services (not hand-made rows).

Import from a test module in this folder: `from labeling_factories import make_project, ...`.
"""
import itertools

from django.contrib.auth import get_user_model

from labeling.models import Project, Prompt
from labeling.services.demonstrations import prompt_create
from labeling.services.projects import project_create
from labeling.services.ranking_tasks import ranking_tasks_create

_seq = itertools.count(1)


def make_user(name=None, *, password=None, **fields):
    """A user; no password unless asked (hashing one costs ~0.1 s, the tests make hundreds)."""
    name = name or f"user{next(_seq)}"
    return get_user_model().objects.create_user(name, password=password, **fields)


def make_project(**fields) -> Project:
    n = next(_seq)
    fields.setdefault("name", f"Project {n}")
    fields.setdefault("slug", f"project-{n}")
    return project_create(**fields)


def make_prompt(project, text=None, *, author=None, demonstrations_needed=1) -> Prompt:
    text = text or f"Question number {next(_seq)}?"
    return prompt_create(
        project=project, turns=[{"role": "user", "content": text}],
        source=Prompt.Source.IMPORTED, author=author, demonstrations_needed=demonstrations_needed,
    )


def completions(k, prefix="Answer"):
    return [
        {"text": f"{prefix} {i}", "model_label": "sft-1", "model_version_id": 1,
         "sampling": {"temperature": 1.0}}
        for i in range(k)
    ]


def make_tasks(project, n=1, *, prompts=None, batch_key=None, priority=0, author=None):
    prompts = prompts or [make_prompt(project, author=author) for _ in range(n)]
    return ranking_tasks_create(
        project=project,
        prompt_completions=[(p.pk, completions(project.k, p.text)) for p in prompts],
        batch_key=batch_key or f"batch-{next(_seq)}",
        priority=priority,
    )


def order_of(task, *, reverse=False):
    ids = list(task.items.order_by("position").values_list("completion_id", flat=True))
    return [[i] for i in (reversed(ids) if reverse else ids)]
