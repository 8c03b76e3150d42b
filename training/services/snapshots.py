"""The dataset snapshot of a run: which labeled rows it trains on, chosen when it is created.

Labels are never edited after they are written, so "every row of the project created up to
`as_of`" is a fixed set; the run stores the rows themselves (many-to-many) and the labeling
export id that names the same set (`labeling.exports.snapshot_for`). Quality decisions (unedited
suggestions left out, labelers excluded by staff) are applied here, and the stored rows record
them: a setting changed later never changes what an old run trained on. A ranking submitted one
moment before a run is created is in that run: there is no export step in between.
"""

from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q

from labeling import exports
from labeling.models import Completion, Demonstration, Prompt, Ranking
from labeling.quality import excluded_labeler_ids
from training.errors import Invalid


def minimum(what: str) -> int:
    """settings.TRAINING_MIN_DEMONSTRATIONS, _RANKED_TASKS or _PROMPTS."""
    return getattr(settings, f"TRAINING_MIN_{what.upper()}")


@dataclass
class Snapshot:
    snapshot_id: str
    demonstrations: list[int] = field(default_factory=list)
    rankings: list[int] = field(default_factory=list)
    prompts: list[int] = field(default_factory=list)


def demonstrations_of(project, as_of):
    """A person's demonstrations: a dialogue saved from a model suggestion without an edit is
    the model's words and is left out unless the project includes them."""
    qs = Demonstration.objects.filter(prompt__project=project, created_at__lte=as_of)
    if not project.sft_include_unedited:
        qs = qs.exclude(edit_distance=0)
    return qs


def rankings_of(project, as_of):
    """Rankings, without those of labelers excluded by staff as of that moment."""
    return Ranking.objects.filter(task__project=project, created_at__lte=as_of).exclude(
        labeler__in=excluded_labeler_ids(project=project, as_of=as_of)
    )


def prompts_of(project):
    return Prompt.objects.filter(project=project, duplicate_of__isnull=True)


def prompts_to_sample(project, *, model_version_id: int, limit: int) -> list[int]:
    """Prompts this model has not answered yet first, then those with the fewest open ranking
    tasks, oldest first."""
    answered = Completion.objects.filter(prompt=OuterRef("pk"), model_version_id=model_version_id)
    qs = (
        prompts_of(project)
        .annotate(
            answered=Exists(answered),
            open_tasks=Count("ranking_tasks", filter=Q(ranking_tasks__status="open")),
        )
        .order_by("answered", "open_tasks", "id")
    )
    return list(qs.values_list("id", flat=True)[:limit])


def snapshot_take(*, project, kind: str, config: dict, as_of, input_model=None) -> Snapshot:
    """The rows a run of `kind` uses, or `Invalid` saying what is missing."""
    snap = Snapshot(exports.snapshot_for(project=project, as_of=as_of).id)
    if kind == "sft":
        snap.demonstrations = list(demonstrations_of(project, as_of).values_list("id", flat=True))
        _require(len(snap.demonstrations), "demonstrations", "SFT")
    elif kind == "reward":
        rankings = rankings_of(project, as_of)
        tasks = rankings.values("task_id").distinct().count()
        _require(tasks, "ranked_tasks", "the reward model", noun="ranked tasks")
        snap.rankings = list(rankings.values_list("id", flat=True))
        # The reward is centred on the demonstrations' replies (mean 0) after training.
        snap.demonstrations = list(demonstrations_of(project, as_of).values_list("id", flat=True))
    elif kind == "ppo":
        snap.prompts = list(
            prompts_of(project).filter(created_at__lte=as_of).values_list("id", flat=True)
        )
        _require(len(snap.prompts), "prompts", "PPO")
        if config.get("ptx_coef"):
            snap.demonstrations = list(
                demonstrations_of(project, as_of).values_list("id", flat=True)
            )
            _require(len(snap.demonstrations), "demonstrations", "PPO-ptx")
    elif kind == "sample":
        snap.prompts = prompts_to_sample(
            project, model_version_id=input_model.pk, limit=config["num_prompts"]
        )
        _require(len(snap.prompts), "prompts", "sampling", at_least=1)
    return snap


def _require(have: int, what: str, purpose: str, *, noun: str | None = None, at_least=None):
    need = at_least if at_least is not None else minimum(what)
    if have < need:
        raise Invalid(
            f"Not enough data for {purpose}: the project has {have} {noun or what}, "
            f"at least {need} are needed."
        )
