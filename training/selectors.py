"""Reads for the training pages, the admin and the commands. Nothing here writes."""

import json
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from django.db.models import Count, Q

from labeling.agreement import kendall_tau_b
from labeling.models import Demonstration, Prompt, Ranking, RankingTask, TaskCompletion
from labeling.parsing import row_id
from labeling.quality import excluded_labeler_ids
from training.errors import NotFound
from training.models import ModelVersion, Round, RunMetric, TrainingRun
from training.round_evaluation import round_evaluation

K = ModelVersion.Kind


def run_get(*, run_id) -> TrainingRun:
    try:
        return TrainingRun.objects.select_related(
            "project", "input_model", "reward_model", "output_model", "created_by"
        ).get(pk=run_id)
    except (TrainingRun.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"There is no training run #{run_id}.") from None


def runs_recent(*, limit: int = 20):
    return TrainingRun.objects.select_related("project", "output_model").order_by(
        "-created_at", "-id"
    )[:limit]


def version_get(*, version_id) -> ModelVersion:
    try:
        return ModelVersion.objects.select_related("project", "parent", "run").get(pk=version_id)
    except (ModelVersion.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"There is no model version #{version_id}.") from None


def version_or_none(*, version_id) -> ModelVersion | None:
    return None if version_id in (None, "") else version_get(version_id=version_id)


def snapshot_counts(*, run) -> dict[str, int]:
    return {
        "demonstrations": run.demonstrations.count(),
        "rankings": run.rankings.count(),
        "prompts": run.prompts.count(),
    }


def runs_for_project(*, project, limit: int = 50):
    return (
        TrainingRun.objects.filter(project=project)
        .select_related("input_model", "output_model", "created_by")
        .order_by("-created_at", "-id")[:limit]
    )


def latest_version(*, kinds, project=None) -> ModelVersion | None:
    """The newest version of one of `kinds` in `project`; base models may belong to none."""
    qs = ModelVersion.objects.filter(kind__in=kinds)
    qs = qs.filter(Q(project=project) | Q(project__isnull=True)) if project else qs
    return qs.order_by("-created_at", "-id").first()


def version_files(*, version: ModelVersion) -> dict:
    """What a version's files say about it, for its page: architecture, size, context and chat
    format, read as JSON (the web process never loads torch). Empty when the files are gone."""
    try:
        config = json.loads((Path(version.checkpoint_dir) / "config.json").read_text())
        tokenizer = json.loads(Path(version.tokenizer_path).read_text())
    except (OSError, ValueError):
        return {}
    sizes = config.get("config", {})
    return {
        "arch": config.get("arch", "gpt2"),
        "layers": sizes.get("n_layer"),
        "width": sizes.get("n_embd"),
        "context": sizes.get("block_size"),
        "vocab": sizes.get("vocab_size"),
        "chat_format": tokenizer.get("chat_format", "ours"),
    }


# From this size on a model is trained with LoRA adapters by default: full fine-tuning of a
# 135M model on a CPU holds ~2 GB of optimizer state and takes many times longer per step.
LORA_FROM_PARAMETERS = 50_000_000


def suggested_preset(*, project) -> str:
    """"lora" when the project's newest base model is a real one (imported, >= 50M parameters),
    else "tiny": what the training page offers first."""
    base = latest_version(kinds=[ModelVersion.Kind.BASE], project=project)
    parameters = (base.metrics or {}).get("parameters", 0) if base else 0
    return "lora" if parameters >= LORA_FROM_PARAMETERS else "tiny"


def sft_ancestor(version: ModelVersion) -> ModelVersion | None:
    """The SFT model a policy descends from: PPO's KL penalty keeps it close to that one, and a
    round's reward model starts from it."""
    return ancestor(version, ModelVersion.Kind.SFT)


def ancestor(version: ModelVersion | None, kind: str) -> ModelVersion | None:
    """`version` or the nearest model up its lineage of that kind (None: there is none)."""
    while version is not None and version.kind != kind:
        version = version.parent
    return version


def versions_for_project(*, project, kinds=None):
    qs = ModelVersion.objects.filter(Q(project=project) | Q(project__isnull=True, kind=K.BASE))
    if kinds:
        qs = qs.filter(kind__in=kinds)
    return qs.select_related("parent", "run").order_by("-created_at", "-id")


@dataclass
class RoundCounts:
    prompts: int
    demonstrations: int
    ranking_tasks_open: int
    ranked_tasks: int
    rankings: int
    model_versions: int


def round_counts(*, project) -> RoundCounts:
    return RoundCounts(
        prompts=Prompt.objects.filter(project=project, duplicate_of__isnull=True).count(),
        demonstrations=Demonstration.objects.filter(prompt__project=project).count(),
        ranking_tasks_open=RankingTask.objects.filter(project=project, status="open").count(),
        ranked_tasks=RankingTask.objects.filter(project=project, rankings_count__gt=0).count(),
        rankings=Ranking.objects.filter(task__project=project).count(),
        model_versions=ModelVersion.objects.filter(project=project).count(),
    )


def metric_points(*, run, names=None, max_points: int = 400) -> dict[str, list[tuple[int, float]]]:
    """The run's curves: {metric name: [(step, value), ...]}, thinned to at most `max_points`
    per curve (every n-th point, the last always kept)."""
    rows = list(
        RunMetric.objects.filter(run=run).order_by("step", "id").values_list("step", "values")
    )
    if len(rows) > max_points:
        stride = -(-len(rows) // max_points)
        rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
    curves: dict[str, list[tuple[int, float]]] = {}
    for step, values in rows:
        for name, value in values.items():
            if (
                (names is None or name in names)
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            ):
                curves.setdefault(name, []).append((step, float(value)))
    return curves


@dataclass
class LineageNode:
    version: ModelVersion
    run: TrainingRun | None
    inputs: list["LineageNode"]
    data_runs: list[TrainingRun]  # the sample runs whose completions its rankings ordered


SAMPLE_BATCH_PREFIX = "training-run-"  # training.jobs.sample.batch_key


def sample_runs_for(*, run: TrainingRun) -> list[TrainingRun]:
    """The sample runs that pushed the ranking tasks a run's rankings answer."""
    keys = (
        RankingTask.objects.filter(rankings__in=run.rankings.all(),
                                   batch_key__startswith=SAMPLE_BATCH_PREFIX)
        .values_list("batch_key", flat=True).distinct()
    )  # fmt: skip
    ids = {row_id(k[len(SAMPLE_BATCH_PREFIX) :]) for k in keys} - {None}
    return list(TrainingRun.objects.filter(pk__in=ids, kind="sample").order_by("id"))


def lineage(*, version: ModelVersion, _seen=None) -> LineageNode:
    """The tree a model version comes from: its run, and the versions that run started from
    (the parent, the reward model), each with theirs, down to a base model."""
    seen = _seen if _seen is not None else set()
    seen.add(version.pk)
    run = version.run
    inputs = []
    if run is not None:
        for source in (run.input_model, run.reward_model):
            if source is not None and source.pk not in seen:
                inputs.append(lineage(version=source, _seen=seen))
    elif version.parent is not None and version.parent.pk not in seen:
        inputs.append(lineage(version=version.parent, _seen=seen))
    data_runs = sample_runs_for(run=run) if run is not None and run.kind == "reward" else []
    return LineageNode(version, run, inputs, data_runs)


def lineage_runs(node: LineageNode) -> list[TrainingRun]:
    """Every run in a lineage tree, newest first."""
    runs = [node.run] if node.run else []
    runs += [r for r in node.data_runs if r not in runs]
    for child in node.inputs:
        runs += [r for r in lineage_runs(child) if r not in runs]
    return runs


def version_counts(*, project) -> dict[str, int]:
    rows = ModelVersion.objects.filter(project=project).values("kind").annotate(n=Count("id"))
    return {row["kind"]: row["n"] for row in rows}


@dataclass
class RoundRow:
    """A round as the project page shows it, beside the others: its models and their numbers."""

    round: Round
    ranked: int
    needed: int
    tasks: int
    reward: ModelVersion | None
    policy_out: ModelVersion | None
    evaluation: list | None = None  # `training.round_evaluation.Matchup`s, with a comparison


def rounds_for_project(*, project, limit: int = 10, only: int | None = None) -> list[RoundRow]:
    """The project's last `limit` rounds (or the round `only`), oldest first, with how many of
    the tasks each pushed are ranked and how many it needs before its reward model."""
    rounds = (
        Round.objects.filter(project=project, **({"pk": only} if only else {}))
        .select_related("policy", "sample_run", "reward_run__output_model",
                        "ppo_run__output_model", "dpo_run__output_model", "comparison")
        .order_by("-number")[:limit]
    )  # fmt: skip
    batches = [f"{SAMPLE_BATCH_PREFIX}{r.sample_run_id}" for r in rounds if r.sample_run_id]
    counts = {
        row["batch_key"]: row
        for row in RankingTask.objects.filter(project=project, batch_key__in=batches)
        .values("batch_key")
        .annotate(tasks=Count("id"), ranked=Count("id", filter=Q(rankings_count__gt=0)))
    }
    rows = []
    for r in reversed(rounds):  # oldest first: the columns read left to right
        c = counts.get(f"{SAMPLE_BATCH_PREFIX}{r.sample_run_id}", {"tasks": 0, "ranked": 0})
        needed = min(r.rankings_needed, c["tasks"]) if r.rankings_needed else c["tasks"]
        rows.append(RoundRow(
            round=r, ranked=c["ranked"], needed=needed, tasks=c["tasks"],
            reward=r.reward_run.output_model if r.reward_run else None,
            policy_out=r.policy_run.output_model if r.policy_run else None,
            evaluation=round_evaluation(r),
        ))  # fmt: skip
    return rows


def round_open(*, project) -> Round | None:
    return Round.objects.filter(project=project).exclude(stage=Round.Stage.DONE).first()


def rankings_of(project, as_of, *, evaluation: bool = False):
    """Rankings of training prompts (with `evaluation`, of evaluation prompts instead), without
    those of labelers excluded by staff as of that moment."""
    return Ranking.objects.filter(
        task__project=project, task__prompt__is_evaluation=evaluation, created_at__lte=as_of
    ).exclude(
        labeler__in=excluded_labeler_ids(project=project, as_of=as_of)
    )


def preferring(rankings):
    """The rankings that prefer one reply to another: a ranking that ties every reply is one
    tier (`[[a, b, c, d]]`), and only it has no second item in its `order`."""
    return rankings.filter(order__1__isnull=False)


def ranked_tasks(rankings) -> int:
    return rankings.values("task_id").distinct().count()


@dataclass
class MixPairs:
    """How people ranked a mixed sampling run's second model against its first: over every
    ranking of its tasks, each pair of one reply of each."""

    above: int  # the second model's reply ranked above the run's model's
    below: int
    tied: int

    @property
    def total(self) -> int:
        return self.above + self.below + self.tied

    @property
    def share_above(self) -> float:
        """Its share of the pairs, a tie counting half."""
        return (self.above + self.tied / 2) / self.total if self.total else float("nan")


@dataclass
class SampleLabels:
    """What people made of a sampling run's ranking tasks so far."""

    tasks: int
    ranked: int
    # Ranked tasks with a ranking that prefers one reply: replies too alike for the labelers'
    # preference to tell apart tie, and teach a reward model nothing.
    preferring: int
    mix: ModelVersion | None  # the second model (mix_model), if any
    pairs: MixPairs | None  # how its replies fared against the run's model's
    # Mean Kendall tau-b between two labelers' orders of one task, over the `agreement_tasks`
    # tasks two labelers ordered (None: none yet, or only orders that tie everything). Near 0
    # the orders are coin flips, e.g. replies the labelers find equal but ordered anyway, and
    # the reward model learns noise from them.
    agreement: float | None
    agreement_tasks: int

    @property
    def near_chance(self) -> bool:
        return self.agreement is not None and self.agreement < NEAR_CHANCE


# Below this mean tau-b the run page and the demo call two labelers' orders close to chance.
# InstructGPT's labelers agreed on ~73% of pairs (tau ~0.46); the demo's labelers who must order
# replies they find equal measured 0.16-0.19 and their rounds learned nothing, the same labelers
# allowed ties 0.49-0.57 (and learned as sorted ones did).
NEAR_CHANCE = 0.2


def sample_labels(run) -> SampleLabels | None:
    """A sampling run's ranking tasks as labeled so far (None for another kind of run, or a
    blind comparison's replies)."""
    if run.kind != TrainingRun.Kind.SAMPLE or run.config.get("comparison"):
        return None
    tasks = RankingTask.objects.filter(batch_key=f"{SAMPLE_BATCH_PREFIX}{run.pk}")
    rankings = Ranking.objects.filter(task__in=tasks)
    mix = ModelVersion.objects.filter(pk=run.config.get("mix_model") or 0).first()
    agreement, agreement_tasks = _agreement(rankings)
    return SampleLabels(tasks=tasks.count(), ranked=ranked_tasks(rankings),
                        preferring=ranked_tasks(preferring(rankings)), mix=mix,
                        pairs=mix and _mix_pairs(tasks, rankings, mix), agreement=agreement,
                        agreement_tasks=agreement_tasks)  # fmt: skip


def _agreement(rankings) -> tuple[float | None, int]:
    """(mean tau-b over every two rankings of one task, the tasks it counts): a task counts when
    two labelers ranked it and not both tied every reply (tau-b is undefined there)."""
    orders = defaultdict(list)
    for task_id, order in rankings.values_list("task_id", "order"):
        orders[task_id].append(order)
    per_task = [[tau for a, b in combinations(task, 2) if (tau := kendall_tau_b(a, b)) is not None]
                for task in orders.values()]  # fmt: skip
    taus = [tau for task in per_task for tau in task]
    return (sum(taus) / len(taus) if taus else None), sum(1 for task in per_task if task)


def _mix_pairs(tasks, rankings, mix: ModelVersion) -> MixPairs:
    author = dict(TaskCompletion.objects.filter(task__in=tasks)
                  .values_list("completion_id", "completion__model_version_id"))  # fmt: skip
    pairs = MixPairs(0, 0, 0)
    for order in rankings.values_list("order", flat=True):
        tier = {c: n for n, group in enumerate(order)
                for c in (group if isinstance(group, list) else [group])}  # fmt: skip
        ours = [n for c, n in tier.items() if author.get(c) == mix.pk]
        theirs = [n for c, n in tier.items() if author.get(c) != mix.pk]
        for a in ours:
            for b in theirs:
                pairs.above += a < b
                pairs.below += a > b
                pairs.tied += a == b
    return pairs


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
