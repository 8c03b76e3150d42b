"""One PPO run's models, optimizers and KL controller, and its iteration in numbered steps
(`PPOTrainer.rollout` and `.update`, TRL style), with the settings they read (`PPOConfig`).
The algorithm is described in `training.ml.ppo`, whose `train_ppo` loops over iterations,
checkpoints and resumes.
"""

import copy
import time
from collections.abc import Callable

import torch

from training.ml import ppo_math as pm
from training.ml.architectures import LanguageModel, with_scalar_head
from training.ml.configs import PPOConfig
from training.ml.device import autocast
from training.ml.lora import LoraSettings, add_lora, frozen_base_copy, has_lora
from training.ml.optim import lr_at, make_optimizer, set_lr
from training.ml.ppo_rollout import (
    Rollout,
    ema_update,
    policy_outputs,
    recompute,
    score_responses,
    value_outputs,
)
from training.ml.reward_ensemble import EnsembleScorer, RewardEnsemble, reward_scorer, value_start
from training.ml.sampling import SampleConfig, generate
from training.ml.sft import TokenExample, lm_batch
from training.ml.train_loop import batches_for_step

RewardFn = Callable[[list[int], list[int]], float]


class PPOTrainer:
    """The models, optimizers and KL controller of one PPO run, and its iteration in steps."""

    def __init__(
        self,
        policy: LanguageModel,
        config: PPOConfig,
        *,
        reward: LanguageModel | RewardFn,
        pad_id: int,
        end_id: int,
        value_model: LanguageModel | None = None,
        reference: LanguageModel | None = None,
        ptx_examples: list[TokenExample] | None = None,
    ):
        if config.ptx_coef > 0 and not ptx_examples:
            raise ValueError("ptx_coef > 0 needs ptx_examples (demonstration or pretraining text)")
        self.config, self.pad_id, self.end_id = config, pad_id, end_id
        self.policy = policy
        lora = LoraSettings.from_config(config)
        from_rm = isinstance(reward, (LanguageModel, RewardEnsemble))
        if value_model is None and from_rm:  # with LoRA over the reward model's base
            value_model = value_start(reward, lora=lora is not None)
        elif value_model is None:
            value_model = with_scalar_head(policy)
        if lora is None:
            self.reference = reference if reference is not None else copy.deepcopy(policy)
            self.value_model = value_model.requires_grad_(True)
        else:  # adapters on the policy and the value model; their bases stay frozen
            self.reference = reference  # None: the policy with its adapters disabled
            if not has_lora(value_model):  # a LoRA ensemble member's adapters train on
                add_lora(value_model, lora, seed=config.seed + 1)
            self.value_model = value_model
            add_lora(policy, lora, seed=config.seed)
        if self.reference is not None:
            self.reference.eval().requires_grad_(False)
        self.scorer = reward_scorer(reward, pad_id=pad_id, penalty=config.ensemble_penalty)
        copy_policy = copy.deepcopy if lora is None else frozen_base_copy
        self.ema = copy_policy(policy).requires_grad_(False) if config.ema_decay else None
        self.policy_opt = make_optimizer(policy, lr=config.lr, weight_decay=config.weight_decay)
        self.value_opt = make_optimizer(
            value_model, lr=config.value_lr, weight_decay=config.weight_decay
        )
        self.kl_ctl = (
            pm.AdaptiveKLController(
                config.kl_coef, target=config.target_kl, horizon=config.kl_horizon
            )
            if config.adaptive_kl
            else pm.FixedKLController(config.kl_coef)
        )
        self.ptx_examples = ptx_examples or []
        self.ptx_step = 0

    def models(self) -> dict[str, LanguageModel]:
        return {"policy": self.policy, "value": self.value_model} | (
            {"ema": self.ema} if self.ema is not None else {}
        )

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"policy": self.policy_opt, "value": self.value_opt}

    def set_lr(self, iteration: int, total: int) -> float:
        """Linear warmup over `warmup_iterations`, then constant."""
        c = self.config
        schedule = dict(warmup_steps=c.warmup_iterations, total_steps=total, min_lr_ratio=1.0)
        lr = lr_at(iteration, max_lr=c.lr, **schedule)
        set_lr(self.policy_opt, lr)
        set_lr(self.value_opt, lr_at(iteration, max_lr=c.value_lr, **schedule))
        return lr

    def rollout(self, prompts: list[list[int]], iteration: int) -> tuple[Rollout, dict]:
        """Steps 1-4 on `prompts` (token ids): returns the rollout and timings."""
        c = self.config
        self.policy.eval()  # dropout off: the update's log-probs must match the rollout's
        self.value_model.eval()

        # 1. sample responses; recompute log-probs (policy, reference) and values in full passes
        t0 = time.perf_counter()
        sample_config = SampleConfig(
            max_new_tokens=c.max_new_tokens,
            temperature=c.temperature,
            top_k=0,
            top_p=1.0,
            num_samples=c.samples_per_prompt,
            seed=c.seed * 1_000_003 + iteration,
        )
        samples = generate(
            self.policy, prompts, sample_config, stop_id=self.end_id, pad_id=self.pad_id
        )
        queries = [prompts[i] for i in samples.prompt_index]
        t1 = time.perf_counter()
        ro = recompute(
            self.policy, self.reference, self.value_model, queries, samples.responses,
            config=c, pad_id=self.pad_id, end_id=self.end_id,
        )  # fmt: skip
        ro.finished = pm.finished(ro.responses, ro.mask, end_id=self.end_id)

        # 2. score finished responses; cut-off ones get the penalty; clip
        scores = score_responses(
            self.scorer, queries, samples.responses, ro.finished.tolist(), config=c
        )
        ro.scores = scores.to(ro.mask.device)

        # 3. per-token rewards: -beta * KL per token, plus the score on the last real token
        ro.rewards, ro.kl = pm.per_token_rewards(
            ro.scores, ro.logprobs, ro.ref_logprobs, ro.mask, kl_coef=self.kl_ctl.value
        )

        # 4. advantages by GAE, whitened; returns (targets of the value loss)
        advantages, ro.returns = pm.gae(ro.rewards, ro.values, ro.mask, gamma=c.gamma, lam=c.lam)
        ro.advantages = pm.masked_whiten(advantages, ro.mask)
        return ro, {"time_sampling": t1 - t0, "time_scoring": time.perf_counter() - t1}

    def update(self, ro: Rollout, iteration: int) -> dict[str, float]:
        """Steps 5-6: the PPO epochs over minibatches of `ro`; returns their mean statistics."""
        c = self.config
        stats: dict[str, list[float]] = {
            name: []
            for name in ("policy_loss", "value_loss", "clip_frac", "approx_kl", "value_clip_frac",
                         "ratio", "ptx_loss")
        }  # fmt: skip
        skipped, first_ratio_error = 0, 0.0
        n = ro.mask.shape[0]
        generator = torch.Generator().manual_seed(c.seed * 7_919 + iteration)
        # 5. PPO epochs of minibatch updates: clipped surrogate, clipped value loss
        for epoch in range(c.ppo_epochs):
            order = torch.randperm(n, generator=generator).to(ro.mask.device)
            for start in range(0, n, c.minibatch_size):
                mb = order[start : start + c.minibatch_size]
                mask = ro.mask[mb]
                logprobs, _ = policy_outputs(
                    self.policy, ro.input_ids[mb], ro.positions[mb], ro.responses[mb],
                    temperature=c.temperature,
                )  # fmt: skip
                pl = pm.policy_loss(logprobs, ro.logprobs[mb], ro.advantages[mb], mask, clip=c.clip)
                if epoch == 0 and start == 0:  # nothing has changed yet: the ratio must be 1
                    ratio = torch.exp((logprobs.detach() - ro.logprobs[mb]) * mask)
                    first_ratio_error = float(((ratio - 1).abs() * mask).max())
                values = value_outputs(self.value_model, ro.input_ids[mb], ro.positions[mb])
                vl, v_clip = pm.value_loss(
                    values, ro.values[mb], ro.returns[mb], mask, clip=c.value_clip
                )
                finite = bool(torch.isfinite(pl.loss)) and bool(torch.isfinite(vl))
                if not finite or float(pl.ratio_mean) > c.ratio_threshold:
                    skipped += 1  # the ratio blew up: this step would do more harm than good
                    continue
                _step(self.policy, self.policy_opt, pl.loss, c.grad_clip)
                _step(self.value_model, self.value_opt, vl, c.grad_clip)
                if self.ema is not None:
                    ema_update(self.ema, self.policy, c.ema_decay)
                for name, value in (
                    ("policy_loss", pl.loss), ("value_loss", vl), ("clip_frac", pl.clip_frac),
                    ("approx_kl", pl.approx_kl), ("value_clip_frac", v_clip),
                    ("ratio", pl.ratio_mean),
                ):  # fmt: skip
                    stats[name].append(float(value.detach()))

                # 6. PPO-ptx: a separate step on ptx_coef * LM loss over demonstration text
                if c.ptx_coef > 0:
                    stats["ptx_loss"].append(self.ptx_update())
        return {
            **{name: sum(v) / len(v) if v else 0.0 for name, v in stats.items()},
            "skipped_minibatches": float(skipped),
            "first_ratio_error": first_ratio_error,
        }

    def ptx_update(self) -> float:
        c = self.config
        rows = batches_for_step(
            len(self.ptx_examples), c.ptx_batch_size, self.ptx_step, seed=c.seed
        )
        self.ptx_step += 1
        device = next(self.policy.parameters()).device
        examples = [self.ptx_examples[i] for i in rows]
        idx, targets = lm_batch(examples, pad_id=self.pad_id, device=device)
        with autocast(device):
            _, loss = self.policy(idx, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"PPO-ptx LM loss is {loss.item()} (ptx step {self.ptx_step})")
        _step(self.policy, self.policy_opt, c.ptx_coef * loss, c.grad_clip)
        return loss.item()

    def scorer_figures(self) -> dict[str, float]:
        """An ensemble's disagreement on the replies scored last (`score_std`); {} otherwise."""
        return self.scorer.metrics() if isinstance(self.scorer, EnsembleScorer) else {}

    def iteration(self, prompts: list[list[int]], iteration: int) -> dict[str, float]:
        """One PPO iteration, steps 1-7; returns its metrics. Over the KL budget, no update."""
        c = self.config
        ro, timings = self.rollout(prompts, iteration)
        kl = float(ro.kl.sum(1).mean())  # KL(policy || reference) per response
        t = time.perf_counter()
        over_budget = c.kl_budget is not None and kl > c.kl_budget
        update = self.update(ro, iteration) if not over_budget else {}
        timings["time_training"] = time.perf_counter() - t

        # 7. KL coefficient: fixed, or adapted toward the target KL
        kl_coef = self.kl_ctl.value
        self.kl_ctl.update(kl, int(ro.mask.shape[0]))
        return {
            "score": float(ro.scores.mean()),
            "kl": kl,
            "kl_coef": kl_coef,
            "entropy": float(pm.masked_mean(ro.entropy, ro.mask)),
            "response_length": float(ro.mask.sum(1).mean()),
            "end_rate": float(ro.finished.float().mean()),
            "value_mean": float(pm.masked_mean(ro.values, ro.mask)),
            "return_mean": float(pm.masked_mean(ro.returns, ro.mask)),
            "responses": float(ro.mask.shape[0]),
            **self.scorer_figures(),
            **update,
            **timings,
        }


def _step(
    model: LanguageModel, optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float
) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()


