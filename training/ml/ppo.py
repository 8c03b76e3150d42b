"""PPO against a reward, with a per-token KL penalty to the frozen SFT model (InstructGPT).

Models: the policy starts as the SFT model; a frozen copy of it is the reference; the value
model has its own parameters, by default a copy of the reward model (InstructGPT; Stiennon et
al. 2020: a trunk shared with the policy lets early value updates damage the policy), else the
policy's trunk with a fresh scalar head. Optionally an EMA of the policy weights is kept as the
model to release. Dropout stays off throughout (as in TRL), so the recomputed log-probs and the
first minibatch's agree: ratio 1 (exactly on a CPU; to rounding on a GPU, whose kernels may
change with the batch shape).

With `lora_rank` > 0 (`training.ml.lora`) the policy and the value model train LoRA adapters over
frozen bases, and no weights are copied for the reference: it is the policy with its adapters
disabled (unless a `reference` is passed). The default value model holds the reward model's
base tensors themselves (`frozen_base_copy`: its own adapters and a copy of the scalar head
only), the EMA the policy's; the reward model stays a separate frozen model. So one PPO run
holds two trunks (policy, reward) instead of four or five, and optimizer moments for the
adapters only. Against a LoRA reward ensemble the value model is member 0's adapters and head,
copied, over the members' base (`value_start`). The models returned have their adapters merged;
checkpoints hold the adapters and heads alone (`training.ml.resume`).

The reward is pluggable: a reward model (scored at the `<|end|>` closing the reply), an
object with `score_batch(prompts, responses) -> list[float]`, or any callable
`(prompt ids, response ids) -> float`. Responses are passed with their `<|end|>`.

One iteration (the steps are numbered in `training.ml.ppo_trainer.PPOTrainer.rollout` and
`.update`, TRL style):
  1. sample responses for a batch of prompts; recompute log-probs of the policy and the
     reference, and the values, with full forward passes at the sampling temperature;
  2. score the finished responses; a response cut off before `<|end|>` gets
     `unfinished_penalty` instead; scores clipped to +-`score_clip`;
  3. per-token reward -beta * (logp - logp_ref), plus the score on the last real token;
  4. advantages by GAE (gamma 1, lambda 0.95), whitened; returns = advantages + values;
  5. `ppo_epochs` passes of minibatch updates: clipped surrogate and clipped value loss, each
     model with its own optimizer; a minibatch whose mean ratio exceeds `ratio_threshold` (or
     whose loss is not finite) is skipped and counted;
  6. optional PPO-ptx: after each policy step, a separate step on `ptx_coef * LM loss` over
     demonstration or pretraining text;
  7. update the KL coefficient (fixed, or adaptive toward `target_kl`, Ziegler et al. 2019).
The run stops early, with a reason, when the KL to the reference exceeds `kl_budget`. With
`held_out` prompts the reward on them is measured every `eval_every` iterations and after the
last; `keep_best` sets `val_prompts` of the run's prompts aside, measures the reward on them at
the same times and ends on the best of those weights (`training.ml.ppo_heldout`).

The index maths (one response mask from which every index is derived) is in
`training.ml.ppo_math`; the rollout's forward passes and scoring (steps 1 and 2) in
`training.ml.ppo_rollout`.

    result = train_ppo(policy, tokenizer, prompts, PPOConfig(), reward=reward_model,
                       on_step=tqdm_reporter("ppo"), checkpoint_dir="artifacts/ppo-run")
"""

from dataclasses import asdict, dataclass, field

from training.ml.architectures import LanguageModel
from training.ml.lora import merge_lora
from training.ml.ppo_heldout import BestIteration, held_out_figures, validation_split
from training.ml.ppo_rollout import prompt_ids
from training.ml.ppo_trainer import PPOConfig, PPOTrainer, RewardFn
from training.ml.progress import OnStep, Progress, report
from training.ml.records import Turns
from training.ml.resume import load_checkpoint, save_checkpoint
from training.ml.sft import TokenExample
from training.ml.tokenizer import ChatTokenizer
from training.ml.train_loop import batches_for_step

STOPPED_BY_CALLER = "stopped by the caller"


@dataclass
class PPOResult:
    policy: LanguageModel
    value_model: LanguageModel
    ema: LanguageModel | None
    iteration: int
    total_iterations: int
    stopped: bool  # stopped before the last iteration: see stop_reason
    stop_reason: str | None
    metrics: dict[str, float]  # the last iteration's
    history: list[dict[str, float]] = field(default_factory=list)
    best_iteration: int | None = None  # keep_best: the iteration whose weights were kept


# -- the loop ------------------------------------------------------------------------------


def train_ppo(
    policy: LanguageModel,
    tokenizer: ChatTokenizer,
    prompts: list[Turns],
    config: PPOConfig | None = None,
    *,
    reward: LanguageModel | RewardFn,
    value_model: LanguageModel | None = None,
    reference: LanguageModel | None = None,
    ptx_examples: list[TokenExample] | None = None,
    held_out: list[Turns] | None = None,
    on_step: OnStep | None = None,
    checkpoint_dir=None,
) -> PPOResult:
    """Optimise `policy` (the SFT model; trained in place) with PPO; see the module docstring.

    `prompts` are dialogues ending with a user turn; those too long for `max_new_tokens` more
    tokens are skipped and counted. `on_step` is called after each iteration (step =
    iteration, 1-based) with its metrics; a truthy return stops the run after a checkpoint.
    With `checkpoint_dir` a run resumes from its last checkpoint: pass the same SFT policy as
    for the fresh run, since the reference is copied from it before the checkpoint is loaded.
    """
    config = config or PPOConfig()
    limit = policy.config.block_size - config.max_new_tokens
    ids, prompt_counts = prompt_ids(tokenizer, prompts, limit=limit)
    if not ids:
        raise ValueError(f"no usable prompt for PPO: got {len(prompts)}, {prompt_counts}")
    trainer = PPOTrainer(
        policy, config, reward=reward, pad_id=tokenizer.pad_id, end_id=tokenizer.end_id,
        value_model=value_model, reference=reference, ptx_examples=ptx_examples,
    )  # fmt: skip
    val_ids: list[list[int]] = []
    if config.keep_best:
        ids, val_ids = validation_split(ids, config.val_prompts, seed=config.seed)
        prompt_counts["val_prompts"] = float(len(val_ids))
    held_ids, _ = prompt_ids(tokenizer, (held_out or [])[: config.eval_prompts], limit=limit)
    best = BestIteration(keep=bool(val_ids))
    iteration, extra = 0, {}
    if checkpoint_dir is not None:
        resumed = load_checkpoint(
            checkpoint_dir, models=trainer.models(), optimizers=trainer.optimizers()
        )
        if resumed is not None:
            iteration, extra = resumed
            trainer.kl_ctl.value = extra["kl_coef"]
            trainer.ptx_step = extra["ptx_step"]
    history: list[dict] = list(extra.get("history", []))
    budget_reason = extra.get("budget_reason")  # a run over its KL budget stays stopped
    stop_reason = budget_reason

    def checkpoint():
        if checkpoint_dir is not None:
            state = {
                "kl_coef": trainer.kl_ctl.value,
                "ptx_step": trainer.ptx_step,
                "history": history,
                "budget_reason": budget_reason,
                "config": asdict(config),
            }
            save_checkpoint(
                checkpoint_dir, step=iteration, models=trainer.models(),
                optimizers=trainer.optimizers(), extra=state, tokenizer=tokenizer,
                meta={"stage": "ppo"},
            )  # fmt: skip

    total = config.iterations
    while iteration < total and stop_reason is None:
        lr = trainer.set_lr(iteration, total)
        rows = batches_for_step(len(ids), config.prompts_per_iteration, iteration, seed=config.seed)
        metrics = trainer.iteration([ids[i] for i in rows], iteration)
        metrics.update(lr=lr, **prompt_counts)
        iteration += 1
        history.append(metrics)
        if config.kl_budget is not None and metrics["kl"] > config.kl_budget:
            stop_reason = budget_reason = (
                f"KL to the reference {metrics['kl']:.3g} nats per response exceeded the budget "
                f"{config.kl_budget:g} at iteration {iteration}; no update was made from it"
            )
        last = iteration == total or budget_reason is not None
        if last or (config.eval_every and iteration % config.eval_every == 0):
            released = trainer.ema if trainer.ema is not None else policy
            for prefix, chosen in (("val", val_ids), ("heldout", held_ids)):
                if chosen:
                    figures = held_out_figures(trainer, released, chosen)
                    metrics.update({f"{prefix}_{name}": v for name, v in figures.items()})
            if val_ids:
                best.consider(released, iteration, metrics["val_score"])
        stop = report(on_step, Progress("ppo", iteration, total, dict(metrics)))
        if stop and stop_reason is None and iteration < total:
            stop_reason = STOPPED_BY_CALLER
        if stop_reason or iteration == total or iteration % config.checkpoint_every == 0:
            checkpoint()
    if stop_reason != STOPPED_BY_CALLER:  # a stopped run resumes from its last weights
        best.restore(trainer.ema if trainer.ema is not None else policy, iteration)
    for model in trainer.models().values():  # LoRA: plain models; checkpoints keep adapters
        merge_lora(model)
    return PPOResult(
        policy=policy,
        value_model=trainer.value_model,
        ema=trainer.ema,
        iteration=iteration,
        total_iterations=total,
        stopped=stop_reason is not None,
        stop_reason=stop_reason,
        metrics=history[-1] if history else {},
        history=history,
        best_iteration=best.iteration,
    )
