"""The dataset snapshot of a run: which labeled rows it trains on, chosen when it is created.

Labels are never edited after they are written, so "every row of the project created up to
`as_of`" is a fixed set; the run stores the rows themselves (many-to-many) and the labeling
export id that names the same set (`labeling.exports.snapshot_for`). Quality decisions (unedited
suggestions left out, labelers excluded by staff) are applied here, and the stored rows record
them: a setting changed later never changes what an old run trained on. A ranking submitted one
moment before a run is created is in that run: there is no export step in between.

Evaluation prompts (`Prompt.is_evaluation`) are held out here, in the one place every training
snapshot is built: no demonstration, ranking or PPO prompt of theirs ever trains a model. The
jobs read them only for held-out figures (`training.selectors.held_out_rankings`,
`held_out_prompts`): the reward model's accuracy on their rankings, PPO's reward on them.
"""

from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q

from labeling import exports
from labeling.models import ComparisonBatch, Completion, Demonstration, Prompt, RankingTask
from training.errors import Invalid
from training.jobs.kinds import run_kind
from training.selectors import preferring, ranked_tasks, rankings_of


def minimum(what: str) -> int:
    """settings.TRAINING_MIN_DEMONSTRATIONS, _RANKED_TASKS or _PROMPTS."""
    return getattr(settings, f"TRAINING_MIN_{what.upper()}")


def demonstrations_of(project, as_of):
    """A person's demonstrations: a dialogue saved from a model suggestion without an edit is
    the model's words and is left out unless the project includes them."""
    qs = Demonstration.objects.filter(
        prompt__project=project, prompt__is_evaluation=False, created_at__lte=as_of
    )
    if not project.sft_include_unedited:
        qs = qs.exclude(edit_distance=0)  # only dialogues with a suggestion have a distance
    return qs


def prompts_of(project):
    return Prompt.objects.filter(project=project, duplicate_of__isnull=True, is_evaluation=False)


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


@dataclass
class DatasetSnapshot:
    """The rows one run trains on (ids), and the labeling export that names the same set. A
    kind's snapshot rule (`RunKind.rows`) fills it with the `take_*` methods, each of which
    refuses too few rows with an `Invalid` saying what is missing."""

    snapshot_id: str
    project: object
    as_of: object
    input_model: object = None
    demonstrations: list[int] = field(default_factory=list)
    rankings: list[int] = field(default_factory=list)
    prompts: list[int] = field(default_factory=list)

    def take_demonstrations(self, *, purpose: str | None = None) -> None:
        """The project's demonstrations; with a `purpose`, at least the minimum of them."""
        qs = demonstrations_of(self.project, self.as_of)
        self.demonstrations = list(qs.values_list("id", flat=True))
        if purpose:
            _require(len(self.demonstrations), "demonstrations", purpose)

    def take_rankings(self, *, purpose: str, own_replies: bool = False) -> None:
        """The rankings, at least the minimum of ranked tasks that prefer one reply to another;
        with `own_replies`, only those of tasks holding a reply of the input model.

        A ranking that ties every reply gives no pair to learn from: a run on nothing but such
        tasks would fail in the worker after its model loaded ("no usable ranking record").
        They are refused here instead, saying so."""
        rankings = rankings_of(self.project, self.as_of)
        of = ""
        if own_replies:
            rankings = rankings.filter(task__in=RankingTask.objects.filter(
                completions__model_version_id=self.input_model.pk).values("pk"))  # fmt: skip
            of = f" of {self.input_model.name}'s replies"
        tasks = ranked_tasks(rankings)
        usable = ranked_tasks(preferring(rankings))
        noun = f"ranked tasks{of}" if usable == tasks else (
            f"ranked tasks{of} that prefer one reply to another ({tasks - usable} more tie all "
            f"their replies)")  # fmt: skip
        _require(usable, "ranked_tasks", purpose, noun=noun)
        self.rankings = list(rankings.values_list("id", flat=True))

    def take_prompts(self, *, purpose: str) -> None:
        """The training prompts written so far, at least the minimum of them."""
        qs = prompts_of(self.project).filter(created_at__lte=self.as_of)
        self.prompts = list(qs.values_list("id", flat=True))
        _require(len(self.prompts), "prompts", purpose)

    def take_prompts_to_sample(self, limit: int, *, purpose: str) -> None:
        """Up to `limit` prompts for the input model to answer (`prompts_to_sample`)."""
        self.prompts = prompts_to_sample(
            self.project, model_version_id=self.input_model.pk, limit=limit
        )
        _require(len(self.prompts), "prompts", purpose, at_least=1)

    def take_comparison_prompts(self, batch_id: int, *, purpose: str) -> None:
        """Every evaluation prompt of a blind comparison batch."""
        self.prompts = list(
            Prompt.objects.filter(project=self.project, is_evaluation=True,
                                  pk__in=ComparisonBatch.prompts.through.objects.filter(
                                      comparisonbatch_id=batch_id
                                  ).values("prompt_id")).values_list("id", flat=True)
        )  # fmt: skip
        _require(len(self.prompts), "prompts", purpose, at_least=1)


def snapshot_take(*, project, kind: str, config: dict, as_of, input_model=None) -> DatasetSnapshot:
    """The rows a run of `kind` uses (its `RunKind.rows` rule), or `Invalid` saying what is
    missing."""
    rule = run_kind(kind).rows
    snap = DatasetSnapshot(exports.snapshot_for(project=project, as_of=as_of).id, project, as_of,
                           input_model)  # fmt: skip
    if rule is not None:
        rule(snap, config)
    return snap


def _require(have: int, what: str, purpose: str, *, noun: str | None = None, at_least=None):
    need = at_least if at_least is not None else minimum(what)
    if have < need:
        raise Invalid(
            f"Not enough data for {purpose}: the project has {have} {noun or what}, "
            f"at least {need} are needed."
        )
