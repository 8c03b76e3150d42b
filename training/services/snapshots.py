"""The dataset snapshot of a run: which labeled rows it trains on, chosen when it is created.

Labels are never edited after they are written, so "every row of the project created up to
`as_of`" is a fixed set; the run stores the rows themselves (many-to-many) and the labeling
export id that names the same set (`labeling.exports.snapshot_for`). Quality decisions (unedited
suggestions left out, labelers excluded by staff) are applied here, and the stored rows record
them: a setting changed later never changes what an old run trained on. A ranking submitted one
moment before a run is created is in that run: there is no export step in between.

Evaluation prompts (`Prompt.is_evaluation`) are held out here, in the one place every training
snapshot is built: no demonstration, ranking or PPO prompt of theirs ever trains a model. The
jobs read them only for held-out figures (`held_out_rankings`, `held_out_prompts`): the reward
model's accuracy on their rankings, PPO's reward on them.
"""

from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q

from labeling import exports
from labeling.models import ComparisonBatch, Completion, Demonstration, Prompt, Ranking
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
    qs = Demonstration.objects.filter(
        prompt__project=project, prompt__is_evaluation=False, created_at__lte=as_of
    )
    if not project.sft_include_unedited:
        qs = qs.exclude(edit_distance=0)  # only dialogues with a suggestion have a distance
    return qs


def rankings_of(project, as_of, *, evaluation: bool = False):
    """Rankings of training prompts (with `evaluation`, of evaluation prompts instead), without
    those of labelers excluded by staff as of that moment."""
    return Ranking.objects.filter(
        task__project=project, task__prompt__is_evaluation=evaluation, created_at__lte=as_of
    ).exclude(
        labeler__in=excluded_labeler_ids(project=project, as_of=as_of)
    )


def prompts_of(project):
    return Prompt.objects.filter(project=project, duplicate_of__isnull=True, is_evaluation=False)


def held_out_rankings(run):
    """The rankings of evaluation prompts as of the run's snapshot: a reward run's held-out
    comparisons (rankings made before their prompt was held out, or imported)."""
    return rankings_of(run.project, run.created_at, evaluation=True)


def held_out_prompts(run) -> list:
    """The turns of the evaluation prompts as of the run's snapshot, oldest first: PPO's
    held-out prompts."""
    return list(
        Prompt.objects.filter(project=run.project, is_evaluation=True, duplicate_of__isnull=True,
                              created_at__lte=run.created_at)
        .order_by("id").values_list("turns", flat=True)
    )  # fmt: skip


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
    elif kind == "sample" and config.get("comparison"):
        snap.prompts = list(  # a blind comparison: the batch's evaluation prompts, all of them
            Prompt.objects.filter(project=project, is_evaluation=True,
                                  pk__in=ComparisonBatch.prompts.through.objects.filter(
                                      comparisonbatch_id=config["comparison"]
                                  ).values("prompt_id")).values_list("id", flat=True)
        )  # fmt: skip
        _require(len(snap.prompts), "prompts", "a comparison", at_least=1)
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
