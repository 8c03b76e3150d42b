"""Reward model: the run's rankings, grouped per ranking task (a prompt, its K completions
and every labeler's order) -> `training.ml.reward.train_reward_model` on a copy of the input
model with a scalar head (with `ensemble` > 1, that many members:
`training.ml.reward_ensemble`) -> a reward model version whose parent is that model."""

from labeling.models import Ranking, TaskCompletion
from training.jobs.declaration import Outcome, RunKind
from training.ml.configs import RewardConfig
from training.ml.records import RankingRecord


def rows(snapshot, config: dict) -> None:
    snapshot.take_rankings(purpose="the reward model")
    # The reward is centred on the demonstrations' replies (mean 0) after training.
    snapshot.take_demonstrations()


def ranking_records(rankings) -> list[RankingRecord]:
    """One record per ranked task, in task order: completion texts by position, and each
    ranking's groups of completion ids turned into groups of positions (a tie stays a group)."""
    by_task: dict[int, list] = {}
    for task_id, order in rankings.order_by("task_id", "id").values_list("task_id", "order"):
        by_task.setdefault(task_id, []).append(order)
    items: dict[int, list] = {}
    rows = (
        TaskCompletion.objects.filter(task_id__in=by_task)
        .order_by("task_id", "position")
        .values_list("task_id", "completion_id", "completion__text", "task__prompt_id",
                     "task__prompt__turns", "completion__model_version_id")
    )  # fmt: skip
    for task_id, completion_id, text, prompt_id, turns, writer in rows:
        items.setdefault(task_id, []).append((completion_id, text, prompt_id, turns, writer))
    records = []
    for task_id, orders in by_task.items():
        entries = items.get(task_id, [])
        if not entries:
            continue
        position = {cid: i for i, (cid, *_rest) in enumerate(entries)}
        rankings_ = [
            [_group([position[c] for c in group if c in position]) for group in order]
            for order in orders
        ]
        records.append(RankingRecord(
            prompt=entries[0][3], completions=[entry[1] for entry in entries],
            rankings=rankings_, prompt_id=entries[0][2], writers=[entry[4] for entry in entries],
        ))  # fmt: skip
    return records


def _group(positions: list[int]):
    return positions[0] if len(positions) == 1 else positions


def run(context) -> Outcome:
    from training.jobs.common import (
        dataclass_config,
        demonstration_records,
        load_version,
        output,
        resume_note,
    )
    from training.ml.architectures import with_scalar_head
    from training.ml.model_files import save_model
    from training.ml.progress import json_safe
    from training.ml.reward_ensemble import train_reward_ensemble
    from training.selectors import held_out_rankings

    run = context.run
    base, tokenizer = load_version(run.input_model)
    model = with_scalar_head(base)
    del base
    records = ranking_records(Ranking.objects.filter(pk__in=run.rankings.values("pk")))
    demos = demonstration_records(run.demonstrations.all())
    config = dataclass_config(RewardConfig, run.config)
    what = "reward model" if config.ensemble == 1 else f"{config.ensemble} reward models"
    context.log(f"{what} on {len(records)} ranked prompts from {run.input_model.name}"
                + resume_note(context))  # fmt: skip
    result = train_reward_ensemble(
        model, tokenizer, records, config,
        demonstrations=demos, held_out=ranking_records(held_out_rankings(run)),
        on_step=context.reporter, checkpoint_dir=context.checkpoint_dir,
    )  # fmt: skip
    if result.stopped:
        return Outcome(stopped=True)
    metrics = json_safe(result.metrics)
    save_model(context.model_dir, result.model, tokenizer_path=run.input_model.tokenizer_path,
               meta={"stage": "reward", "run": run.pk, "metrics": metrics})  # fmt: skip
    return Outcome(output=output("reward", context, parent=run.input_model, metrics=metrics),
                   metrics=metrics)  # fmt: skip


KIND = RunKind(
    name="reward",
    title="Train the reward model on the rankings",
    noun="a reward-model run",
    order=40,
    config=RewardConfig,
    run=run,
    takes=("base", "sft", "policy"),
    makes="reward",
    needs="ranked_tasks",
    rows=rows,
    # held-out accuracy beside the longer-reply baseline on the same pairs, at every
    # evaluation: a reward model that only learned "longer wins" shows as one line on the other
    charts={"loss": ("loss", "val_loss"), "accuracy": ("accuracy",),
            "held-out accuracy": ("val_accuracy", "val_length_baseline_accuracy",
                                  "val_same_writer_accuracy"),
            "margin": ("mean_margin",)},
)  # fmt: skip
