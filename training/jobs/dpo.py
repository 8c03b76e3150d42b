"""DPO: the run's rankings, every pair they imply grouped per prompt as the reward model's ->
`training.ml.dpo.train_dpo` on the input model, which is also the frozen reference (an SFT model,
or a round's policy for iterated DPO) -> a policy version whose parent is the input model. No
reward model and no sampling: the policy step of a round in one run instead of two."""

from labeling.models import Ranking
from training.jobs.declaration import Outcome, RunKind
from training.jobs.reward import ranking_records
from training.ml.configs import DPOConfig


def rows(snapshot, config: dict) -> None:
    snapshot.take_rankings(purpose="DPO", own_replies=bool(config.get("own_replies")))


def run(context) -> Outcome:
    from training.jobs.common import dataclass_config, load_version, output, resume_note
    from training.ml.dpo import train_dpo
    from training.ml.model_files import save_model
    from training.ml.progress import json_safe

    run = context.run
    model, tokenizer = load_version(run.input_model)
    records = ranking_records(Ranking.objects.filter(pk__in=run.rankings.values("pk")))
    config = dataclass_config(DPOConfig, run.config)
    context.log(f"DPO ({config.loss_type}, beta {config.beta:g}) on {len(records)} ranked "
                f"prompts from {run.input_model.name}, which is also the reference"
                + resume_note(context))  # fmt: skip
    result = train_dpo(model, tokenizer, records, config, on_step=context.reporter,
                       checkpoint_dir=context.checkpoint_dir)  # fmt: skip
    if result.stopped:
        return Outcome(stopped=True)
    metrics = json_safe(result.metrics)
    save_model(context.model_dir, result.model, tokenizer_path=run.input_model.tokenizer_path,
               meta={"stage": "dpo", "run": run.pk, "metrics": metrics})  # fmt: skip
    return Outcome(output=output("policy", context, parent=run.input_model, metrics=metrics),
                   metrics=metrics)  # fmt: skip


KIND = RunKind(
    name="dpo",
    title="Train the policy on the rankings directly (DPO)",
    noun="a DPO run",
    order=45,
    config=DPOConfig,
    run=run,
    takes=("sft", "policy"),
    makes="policy",
    needs="ranked_tasks",
    rows=rows,
    # the held-out share of pairs the implicit reward orders right: what DPO learned that
    # carries to prompts it did not train on
    charts={"loss": ("loss", "val_loss"),
            "preference accuracy": ("accuracy", "val_accuracy", "val_same_writer_accuracy"),
            "implicit reward": ("chosen_reward", "rejected_reward"),
            "margin": ("margin", "val_margin"),
            "preferred replies' NLL per token": ("chosen_nll", "val_chosen_nll")},
)  # fmt: skip
