"""Reads of the evaluation side: the comparison queue, a task's two replies, what staff see.

`comparison_tasks_claimable` is the single definition of "which comparison this labeler may be
handed next" (the claim service locks rows from it, the home page counts it), as
`selectors.ranking_tasks_claimable` is for rankings.
"""
from django.db.models import Count, Exists, F, OuterRef, QuerySet
from django.utils import timezone

from labeling.errors import NotFound
from labeling.models import Assignment, ComparisonBatch, ComparisonTask, Project, Vote
from labeling.selectors import _count, live_leases

A = Assignment.Status


def comparison_tasks_claimable(*, labeler, project: Project | None = None, now=None) -> QuerySet:
    """Open comparison tasks with a free slot that this labeler has not voted on, skipped or
    held, never on a prompt they wrote; highest priority, then oldest first."""
    now = now or timezone.now()
    qs = ComparisonTask.objects.filter(status=ComparisonTask.Status.OPEN)
    qs = qs.filter(project=project) if project else qs.filter(project__is_active=True)
    mine = Assignment.objects.filter(
        comparison=OuterRef("pk"), labeler=labeler, status__in=[A.SUBMITTED, A.SKIPPED, A.ACTIVE]
    )
    live = live_leases(now=now, comparison=OuterRef("pk"))
    return (
        qs.alias(live=_count(live, "comparison"))
        .filter(votes_count__lt=F("votes_needed") - F("live"))
        .exclude(prompt__author=labeler)
        .exclude(Exists(mine))
        .order_by("-priority", "created_at", "id")
    )


def comparisons_waiting(*, labeler) -> dict[int, int]:
    """{project id: comparison tasks this labeler may take now}, for the queue page."""
    rows = (
        comparison_tasks_claimable(labeler=labeler).order_by().values("project_id")
        .annotate(n=Count("id")).values_list("project_id", "n")
    )  # fmt: skip
    return dict(rows)


def comparison_sides(*, assignment: Assignment) -> tuple:
    """(reply A, reply B) of a comparison lease, in the task's left/right order."""
    task = (
        ComparisonTask.objects.select_related("completion_a", "completion_b")
        .filter(pk=assignment.comparison_id).first()
    )  # fmt: skip
    if task is None:
        raise NotFound("No such comparison in your queue.")
    return task.completion_a, task.completion_b


def batches_for_project(*, project: Project) -> QuerySet:
    return ComparisonBatch.objects.filter(project=project).order_by("-created_at", "-id")


def project_votes(*, project: Project) -> QuerySet:
    """Every vote of a project (comparison tasks and the arena), as the leaderboard reads them."""
    return Vote.objects.filter(project=project).order_by("id")
