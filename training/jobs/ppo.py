"""PPO: the run's prompts -> `training.ml.ppo.train_ppo` from the input policy, against the
run's reward model, with the KL penalty to the SFT model the policy descends from -> a policy
version whose parent is the input policy."""

from training.jobs.declaration import Outcome, RunKind
from training.ml.configs import PPOConfig


def rows(snapshot, config: dict) -> None:
    snapshot.take_prompts(purpose="PPO")
    if config.get("ptx_coef"):
        snapshot.take_demonstrations(purpose="PPO-ptx")


def run(context) -> Outcome:
    from training.jobs.common import (
        dataclass_config,
        demonstration_records,
        load_version,
        output,
        resume_note,
    )
    from training.ml.model_files import save_model
    from training.ml.ppo import STOPPED_BY_CALLER, train_ppo
    from training.ml.progress import json_safe
    from training.ml.sft import dialogue_examples
    from training.selectors import held_out_prompts, sft_ancestor

    run = context.run
    config = dataclass_config(PPOConfig, run.config)
    policy, tokenizer = load_version(run.input_model)
    reward_model, _ = load_version(run.reward_model)
    reference = None  # an SFT input: train_ppo copies it as the reference
    anchor = sft_ancestor(run.input_model)
    if anchor is not None and anchor.pk != run.input_model.pk:
        reference, _ = load_version(anchor)
    prompts = list(run.prompts.order_by("id").values_list("turns", flat=True))
    held_out = held_out_prompts(run)  # the evaluation prompts: PPO's reward where it never trained
    ptx = None
    if config.ptx_coef > 0:
        demos = demonstration_records(run.demonstrations.all())
        ptx, _ = dialogue_examples(tokenizer, demos, block_size=policy.config.block_size)
    context.log(
        f"PPO from {run.input_model.name} against {run.reward_model.name} on {len(prompts)} "
        f"prompts, KL to {anchor.name if anchor else run.input_model.name}, "
        f"{len(held_out)} held-out prompts" + resume_note(context)
    )
    result = train_ppo(
        policy, tokenizer, prompts, config, reward=reward_model, reference=reference,
        ptx_examples=ptx, held_out=held_out, on_step=context.reporter,
        checkpoint_dir=context.checkpoint_dir,
    )  # fmt: skip
    if result.stopped and result.stop_reason == STOPPED_BY_CALLER:
        return Outcome(stopped=True)
    if result.stop_reason:
        context.log(f"stopped early: {result.stop_reason}")
    history = result.history
    metrics = json_safe({
        **result.metrics,
        "score_first": history[0]["score"] if history else None,
        "iterations": result.iteration,
        **_best_iteration(result),
    })  # fmt: skip
    released = result.ema if result.ema is not None else result.policy
    save_model(context.model_dir, released, tokenizer_path=run.input_model.tokenizer_path,
               meta={"stage": "ppo", "run": run.pk, "metrics": metrics})  # fmt: skip
    return Outcome(output=output("policy", context, parent=run.input_model, metrics=metrics),
                   metrics=metrics)  # fmt: skip


def _best_iteration(result) -> dict:
    """With keep_best: the iteration whose weights were kept and its validation and held-out
    figures (the metrics beside them are the last iteration's)."""
    if result.best_iteration is None:
        return {}
    kept = result.history[result.best_iteration - 1]
    names = ("val_score", "val_kl", "heldout_score", "heldout_kl", "kl")
    return {"best_iteration": result.best_iteration,
            **{f"best_{name}": kept[name] for name in names if name in kept}}


KIND = RunKind(
    name="ppo",
    title="Run PPO against the reward model",
    noun="a PPO run",
    order=50,
    config=PPOConfig,
    run=run,
    takes=("sft", "policy"),
    makes="policy",
    reward_model="required",
    needs="prompts",
    rows=rows,
    # the reward and KL on the training batches, on the validation slice keep_best chooses on,
    # and on the evaluation prompts: a training score that rises while the others fall is
    # PPO exploiting the reward model; so is an ensemble's disagreement rising
    charts={"score": ("score", "val_score", "heldout_score"),
            "KL": ("kl", "val_kl", "heldout_kl"), "entropy": ("entropy",),
            "losses": ("policy_loss", "value_loss"),
            # against an ensemble only
            "reward-model disagreement": ("score_std", "val_score_std", "heldout_score_std")},
)  # fmt: skip
