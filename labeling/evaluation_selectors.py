"""Reads of the evaluation side: the comparison queue, a task's two replies, what staff see.

`comparison_tasks_claimable` is the single definition of "which comparison this labeler may be
handed next" (the claim service locks rows from it, the home page counts it), as
`selectors.ranking_tasks_claimable` is for rankings.
"""
from dataclasses import dataclass

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from labeling.errors import NotFound
from labeling.evaluation_models import REPLY_FLAGS
from labeling.leaderboard import VoteArrays, outcome_codes
from labeling.models import (
    Assignment,
    ComparisonBatch,
    ComparisonTask,
    Project,
    Vote,
)
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


@dataclass
class BatchProgress:
    batch: ComparisonBatch
    prompts: int
    replies: int
    replies_expected: int
    tasks: int
    tasks_complete: int
    votes: int


def batch_progress(*, project: Project, limit: int = 20) -> list[BatchProgress]:
    """The project's newest comparison batches with how far each has come (staff page)."""
    batches = batches_for_project(project=project).annotate(
        n_prompts=Count("prompts", distinct=True),
        n_replies=Count("replies", distinct=True),
        n_tasks=Count("tasks", distinct=True),
        n_complete=Count("tasks", filter=Q(tasks__status="complete"), distinct=True),
        n_votes=Count("tasks__votes", distinct=True),
    )[:limit]
    return [
        BatchProgress(b, b.n_prompts, b.n_replies, b.n_prompts * len(b.version_ids), b.n_tasks,
                      b.n_complete, b.n_votes)
        for b in batches
    ]


FLAG_BITS = {name: bit for bit, name in enumerate(REPLY_FLAGS)}


def _mask(labels) -> int:
    """Per-reply labels as bits in `REPLY_FLAGS` order (what `labeling.leaderboard` reads)."""
    return sum(1 << FLAG_BITS[name] for name in labels if name in FLAG_BITS)


def vote_arrays(*, project: Project, version_ids=None) -> tuple[VoteArrays, dict[int, str]]:
    """Every vote of the project as `labeling.leaderboard` reads them (optionally only those
    between `version_ids`), and the versions' names as their comparison batches recorded them."""
    votes = project_votes(project=project)
    if version_ids is not None:
        votes = votes.filter(version_a_id__in=version_ids, version_b_id__in=version_ids)
    rows = list(votes.values_list("version_a_id", "version_b_id", "outcome", "task_id",
                                  "likert_a", "likert_b", "flags"))  # fmt: skip
    nan = float("nan")
    arrays = VoteArrays(
        version_a=[r[0] for r in rows], version_b=[r[1] for r in rows],
        outcome=outcome_codes(r[2] for r in rows),
        task=[-1 if r[3] is None else r[3] for r in rows],
        likert_a=[nan if r[4] is None else r[4] for r in rows],
        likert_b=[nan if r[5] is None else r[5] for r in rows],
        flags_a=[_mask(r[6].get("a", ())) for r in rows],
        flags_b=[_mask(r[6].get("b", ())) for r in rows],
    )  # fmt: skip
    names = {}
    for batch_names in batches_for_project(project=project).values_list("version_names",
                                                                        flat=True):
        names.update({int(k): v for k, v in batch_names.items()})
    return arrays, names
