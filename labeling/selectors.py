"""Reads for the labeler UI, the admin and the API. Nothing here writes.

The two queue querysets (`ranking_tasks_claimable`, `prompts_to_demonstrate`) are the single
definition of "what this labeler may be handed next"; the claim services lock rows from them
and the home page counts them.
"""
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.validators import slug_re
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from labeling.errors import NotFound
from labeling.models import (
    Assignment,
    Completion,
    Demonstration,
    Project,
    Prompt,
    Ranking,
    RankingTask,
)
from labeling.parsing import row_id

A = Assignment.Status
NO_SUCH_ASSIGNMENT = "No such task in your queue."  # also for someone else's: ids tell nothing


def _count(qs: QuerySet, group_by: str) -> Subquery:
    return Coalesce(
        Subquery(qs.order_by().values(group_by).annotate(n=Count("*")).values("n")[:1]),
        0,
        output_field=IntegerField(),
    )


def live_leases(*, now: datetime, **filters) -> QuerySet:
    return Assignment.objects.filter(status=A.ACTIVE, expires_at__gt=now, **filters)


def ranking_tasks_claimable(*, labeler, project: Project | None = None, now=None) -> QuerySet:
    """Open tasks with a free slot that this labeler may rank, in queue order.

    Never a task they ranked, skipped or hold; never one on a prompt they wrote or
    demonstrated (nobody ranks replies to their own words); never a gold task (the claim mixes
    those in from `gold_tasks_claimable`).
    """
    now = now or timezone.now()
    qs = _open_tasks_for(labeler=labeler, project=project).filter(
        gold_best__isnull=True, gold_worst__isnull=True
    )
    return (
        qs.alias(live=_count(live_leases(now=now, task=OuterRef("pk")), "task"))
        .filter(rankings_count__lt=F("rankings_needed") - F("live"))
        .order_by("-priority", "created_at", "id")
    )


def gold_tasks_claimable(*, labeler, project: Project | None = None) -> QuerySet:
    """Gold tasks this labeler has not seen, in projects that mix gold in. Every labeler gets
    each one (no slot count): its answer is known, the point is to compare them against it."""
    return (
        _open_tasks_for(labeler=labeler, project=project)
        .filter(Q(gold_best__isnull=False) | Q(gold_worst__isnull=False), project__gold_rate__gt=0)
        .order_by("created_at", "id")
    )


def _open_tasks_for(*, labeler, project) -> QuerySet:
    """Open tasks of the project (or of every active one) that this labeler may be handed."""
    qs = RankingTask.objects.filter(status=RankingTask.Status.OPEN)
    qs = qs.filter(project=project) if project else qs.filter(project__is_active=True)
    mine = Assignment.objects.filter(
        task=OuterRef("pk"), labeler=labeler, status__in=[A.SUBMITTED, A.SKIPPED, A.ACTIVE]
    )
    own_demo = Demonstration.objects.filter(prompt=OuterRef("prompt_id"), author=labeler)
    return qs.exclude(prompt__author=labeler).exclude(Exists(mine)).exclude(Exists(own_demo))


def prompts_to_demonstrate(*, labeler, project: Project | None = None, now=None) -> QuerySet:
    """Prompts still wanting a demonstration that this labeler may write, oldest first."""
    now = now or timezone.now()
    qs = Prompt.objects.filter(
        demonstrations_count__lt=F("demonstrations_needed"), duplicate_of__isnull=True,
        is_evaluation=False,
    )
    qs = qs.filter(project=project) if project else qs.filter(project__is_active=True)
    mine = Assignment.objects.filter(
        prompt=OuterRef("pk"), labeler=labeler, kind=Assignment.Kind.DEMONSTRATION,
        status__in=[A.SUBMITTED, A.SKIPPED, A.ACTIVE],
    )
    live = live_leases(now=now, prompt=OuterRef("pk"), kind=Assignment.Kind.DEMONSTRATION)
    return (
        qs.alias(live=_count(live, "prompt"))
        .filter(demonstrations_count__lt=F("demonstrations_needed") - F("live"))
        .exclude(author=labeler)
        .exclude(Exists(mine))
        .exclude(Exists(Demonstration.objects.filter(prompt=OuterRef("pk"), author=labeler)))
        .order_by("id")
    )


@dataclass
class ProjectQueue:
    project: Project
    rankings_waiting: int
    demonstrations_waiting: int
    rankings_today: int
    demonstrations_today: int
    comparisons_waiting: int = 0  # set by the queue page (`labeling.evaluation_selectors`)


def labeler_home(*, labeler) -> list[ProjectQueue]:
    """Per active project: work waiting for this labeler and what they did today (one query)."""
    now = timezone.now()
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    rankings = ranking_tasks_claimable(labeler=labeler, now=now).filter(project=OuterRef("pk"))
    demos = prompts_to_demonstrate(labeler=labeler, now=now).filter(project=OuterRef("pk"))
    done = Ranking.objects.filter(
        task__project=OuterRef("pk"), labeler=labeler, created_at__gte=today
    )
    written = Demonstration.objects.filter(
        prompt__project=OuterRef("pk"), author=labeler, created_at__gte=today
    )
    projects = Project.objects.filter(is_active=True).annotate(
        rankings_waiting=_count(rankings, "project"),
        demonstrations_waiting=_count(demos, "project"),
        rankings_today=_count(done, "task__project"),
        demonstrations_today=_count(written, "prompt__project"),
    )
    return [
        ProjectQueue(p, p.rankings_waiting, p.demonstrations_waiting, p.rankings_today,
                     p.demonstrations_today)
        for p in projects
    ]


def assignment_for(*, assignment_id, labeler) -> Assignment:
    """The labeler's own assignment with what a page needs; NotFound for anyone else's."""
    assignment_id = row_id(assignment_id)
    assignment = (
        Assignment.objects.select_related("task", "prompt", "prompt__project")
        .filter(pk=assignment_id, labeler=labeler)
        .first()
    ) if assignment_id is not None else None
    if assignment is None:
        raise NotFound(NO_SUCH_ASSIGNMENT)
    return assignment


def completions_for(*, assignment: Assignment) -> list[Completion]:
    """The task's completions in an order shuffled per assignment: stable across reloads, so a
    labeler's drag-and-drop survives one, and unrelated to the model that wrote them."""
    if assignment.task_id is None:
        return []
    completions = list(
        Completion.objects.filter(ranking_tasks=assignment.task_id).order_by("id")
    )
    random.Random(assignment.pk).shuffle(completions)
    return completions


def project_by_slug(*, slug: str) -> Project:
    is_slug = isinstance(slug, str) and len(slug) <= 100 and slug_re.fullmatch(slug)
    project = Project.objects.filter(slug=slug).first() if is_slug else None
    if project is None:
        raise NotFound(f"No project {str(slug)[:100]!r}.")
    return project


def dialogue_suggestion(
    *, project: Project, labeler, completion_id: int | None = None
) -> Completion | None:
    """A model reply a labeler may start a dialogue from.

    With an id: that completion, if it answers a prompt of `project`. Without: the newest
    completion in the project to a prompt the labeler did not write, or None before any model
    has sampled.
    """
    completions = Completion.objects.filter(prompt__project=project).select_related("prompt")
    if completion_id is not None:
        completion = completions.filter(pk=completion_id).first()
        if completion is None:
            raise NotFound("No such model suggestion in this project.")
        return completion
    return completions.exclude(prompt__author=labeler).order_by("-created_at", "-pk").first()


@dataclass
class LabelerStats:
    labeler_id: int
    username: str
    rankings: int
    demonstrations: int
    skips: int
    median_ranking_ms: int | None


def labeler_stats(*, project: Project, since: datetime | None = None) -> list[LabelerStats]:
    """Per labeler of a project: counts and median time per ranking (staff dashboards)."""
    from django.contrib.auth import get_user_model

    since = since or (timezone.now() - timedelta(days=3650))
    users = (
        get_user_model()
        .objects.annotate(
            n_rankings=_count(
                Ranking.objects.filter(labeler=OuterRef("pk"), task__project=project,
                                       created_at__gte=since), "labeler"),
            n_demos=_count(
                Demonstration.objects.filter(author=OuterRef("pk"), prompt__project=project,
                                             created_at__gte=since), "author"),
            n_skips=_count(
                Assignment.objects.filter(labeler=OuterRef("pk"), prompt__project=project,
                                          status=A.SKIPPED, created_at__gte=since), "labeler"),
        )
        .filter(Q(n_rankings__gt=0) | Q(n_demos__gt=0) | Q(n_skips__gt=0))
        .order_by("username")
    )
    times: dict[int, list[int]] = {}
    for labeler_id, ms in Ranking.objects.filter(
        task__project=project, created_at__gte=since
    ).values_list("labeler_id", "time_spent_ms"):
        times.setdefault(labeler_id, []).append(ms)
    return [
        LabelerStats(u.pk, u.get_username(), u.n_rankings, u.n_demos, u.n_skips,
                     _median(times.get(u.pk, [])))
        for u in users
    ]


def _median(values: list[int]) -> int | None:
    if not values:
        return None
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) // 2


@dataclass
class TaskProgress:
    """The line above a task: how far its batch (or the project) is, and the labeler's day."""

    scope: str  # "this batch" / "this project"
    done: int
    total: int
    verb: str  # "ranked" / "answered"
    today: int


def task_progress(*, assignment: Assignment) -> TaskProgress:
    project_id, labeler = assignment.prompt.project_id, assignment.labeler_id
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    if assignment.kind == Assignment.Kind.RANKING:
        batch = assignment.task.batch_key
        tasks = RankingTask.objects.filter(
            project_id=project_id, gold_best__isnull=True, gold_worst__isnull=True
        ).exclude(status=RankingTask.Status.CANCELLED)
        if batch:
            tasks = tasks.filter(batch_key=batch)
        counts = tasks.aggregate(total=Count("id"),
                                 done=Count("id", filter=Q(status=RankingTask.Status.COMPLETE)))
        mine = Ranking.objects.filter(task__project_id=project_id, labeler_id=labeler,
                                      created_at__gte=today).count()
        return TaskProgress("this batch" if batch else "this project", counts["done"],
                            counts["total"], "ranked", mine)
    prompts = Prompt.objects.filter(project_id=project_id, duplicate_of__isnull=True,
                                    demonstrations_needed__gt=0)
    counts = prompts.aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(demonstrations_count__gte=F("demonstrations_needed"))),
    )
    mine = Demonstration.objects.filter(prompt__project_id=project_id, author_id=labeler,
                                        created_at__gte=today).count()
    return TaskProgress("this project", counts["done"], counts["total"], "answered", mine)
