"""Reward-model ensembles: n reward models trained on the same rankings, scored as their mean,
their disagreement reported (Coste et al. 2023, "Reward model ensembles help mitigate
overoptimization"; Eisenstein et al. 2023, "Helping or herding?").

One reward model is confidently wrong where its rankings were thin, and PPO finds those places.
Members that learned the same rankings differently agree where the data pinned the reward down
and disagree where it did not, so their spread is a cheap uncertainty: reported on the held-out
pairs after training (`ensemble_disagreement`), on PPO's samples every iteration (`score_std`,
which rises as the policy moves where the reward is a guess), and optionally subtracted from
PPO's reward (`PPOConfig.ensemble_penalty` λ: mean - λ·std, Coste's uncertainty-weighted
optimization).

**Members.** With `RewardConfig.ensemble` = n > 1, member i trains with seed `seed + i` (its batch
order, and its LoRA adapters' start) on a bootstrap resample of the training prompts that give
a pair. The seed alone gives members that differ only by the batch order of one fine-tuning from
the same model: Eisenstein et al. found such ensembles agree too much (their errors are shared),
and a bootstrap makes each member see the data with different weights, as a bagged ensemble does.
A bootstrap leaves each member about 63% of the distinct prompts, though, and where few tasks
prefer one reply (most tie) that starves every member: measured on SmolLM2's `returns` round,
51 usable tasks gave members of 0.62-0.85 held-out accuracy against 0.90 for one model on all
of them. `RewardConfig.bootstrap` off trains every member on every training prompt, apart by
seed alone (Coste et al.'s ensembles differ so): with LoRA each member's adapters start from
their own random draw, so members still disagree where the data leaves the reward free.
Members share one validation split (by prompt, with the run's `seed` and `val_fraction`: the
split one reward model makes, `shared_split`), so their accuracies and the ensemble's are on the
same pairs; each member keeps its own early stopping on them, and its own normalization
(training completions' std 1, demonstrations' mean 0, `training.ml.reward`), which puts the
members' rewards on one scale before they are averaged.
n = 1 is a plain `train_reward_model` run: no bootstrap.

**Metrics.** `val_*` and `heldout_*` are the ensemble's (the mean reward's) figures, the version
that is saved; beside them `member_val_accuracy_min`/`_max` (and `member_heldout_...`), and
`ensemble_disagreement` / `heldout_disagreement`: the mean over the completions of those
prompts of the members' standard deviation (population, so two members give |r1 - r2| / 2).

**Memory.** Members train one after another. In full fine-tuning each is a whole model and a
finished one waits on the CPU, so one model is on the accelerator while training; the ensemble
is then evaluated, saved and loaded whole, and PPO holds n reward models. With LoRA
(`lora_rank` > 0) the members differ only in their adapters and scalar heads: each starts as a
`frozen_base_copy` of the input model, trains its own adapters and head over that model's frozen
weights, and is kept unmerged, so the ensemble holds the base once in memory and on disk
(`training.ml.ensemble_model`, "One frozen base"): n members cost one model and n adapters,
measured in `bench/bench_ensemble_memory.py`. PPO's value model starts from member 0, not from
all of them (`value_start`): with LoRA it holds the members' base tensors themselves and a copy
of member 0's adapters and head, which it goes on training, so PPO adds no trunk for it.

    result = train_reward_ensemble(with_scalar_head(sft_model), tokenizer, rankings,
                                   RewardConfig(ensemble=4), demonstrations=demos)
    result.model  # a RewardEnsemble; save_model / load_model keep it one version
"""

import copy
import random
from dataclasses import replace
from pathlib import Path

import torch

from training.ml.architectures import LanguageModel
from training.ml.configs import RewardConfig
from training.ml.ensemble_model import RewardEnsemble
from training.ml.lora import frozen_base_copy, has_lora, lora_trained, merge_lora
from training.ml.model_files import member_dir
from training.ml.progress import OnStep, Progress, report
from training.ml.records import Demonstration, RankingRecord, split_by_prompt
from training.ml.reward import (
    RewardModelScorer,
    RewardResult,
    evaluate_rankings,
    held_out_ranking_figures,
    score_sequences,
    train_reward_model,
)
from training.ml.reward_data import ranking_examples
from training.ml.tokenizer import ChatTokenizer


def bootstrap(records: list[RankingRecord], *, seed: int) -> list[RankingRecord]:
    """As many prompts as `records` has, drawn with replacement (each with all its records):
    a prompt drawn twice counts twice, one not drawn (about 37%) not at all."""
    by_prompt: dict = {}
    for record in records:
        by_prompt.setdefault(record.key(), []).append(record)
    prompts = list(by_prompt.values())
    rng = random.Random(seed)
    return [record for _ in prompts for record in rng.choice(prompts)]


@torch.no_grad()
def member_scores(
    ensemble: RewardEnsemble, sequences: list[list[int]], *, pad_id: int, batch_size: int = 32
) -> torch.Tensor:
    """(M, N) each member's reward of each token sequence."""
    return torch.stack([score_sequences(m, sequences, pad_id=pad_id, batch_size=batch_size)
                        for m in ensemble.members])  # fmt: skip


def disagreement(scores: torch.Tensor) -> torch.Tensor:
    """(N,) the members' standard deviation per sequence, from (M, N) scores: 0 where they agree."""
    return scores.std(dim=0, correction=0)


class EnsembleScorer:
    """PPO's reward from an ensemble: per (prompt, response), the members' mean score minus
    `penalty` times their standard deviation; `metrics()` holds the mean deviation of the last
    batch scored (PPO's `score_std`)."""

    def __init__(self, ensemble: RewardEnsemble, *, pad_id: int, penalty: float = 0.0):
        self.members = [RewardModelScorer(m, pad_id=pad_id) for m in ensemble.members]
        self.penalty = penalty
        self.last_std = float("nan")

    def score_batch(self, prompts: list[list[int]], responses: list[list[int]]) -> list[float]:
        scores = torch.tensor([m.score_batch(prompts, responses) for m in self.members])  # (M, N)
        std = disagreement(scores)
        self.last_std = float(std.mean())
        return (scores.mean(0) - self.penalty * std).tolist()

    def metrics(self) -> dict[str, float]:
        """`score_std` of the batch scored last, once (NaN, stored as None, when none since)."""
        std, self.last_std = self.last_std, float("nan")
        return {"score_std": std}


def reward_scorer(reward, *, pad_id: int, penalty: float = 0.0):
    """What PPO scores through: an `EnsembleScorer` for an ensemble, a `RewardModelScorer` for a
    reward model, any other reward function as it is. A penalty without an ensemble is an error
    (it would do nothing)."""
    if isinstance(reward, RewardEnsemble):
        return EnsembleScorer(reward, pad_id=pad_id, penalty=penalty)
    if penalty:
        raise ValueError(f"ensemble_penalty {penalty} needs a reward-model ensemble (a reward run "
                         "with ensemble > 1); this reward is a single model")  # fmt: skip
    return RewardModelScorer(reward, pad_id=pad_id) if isinstance(reward, LanguageModel) else reward


def value_start(reward: LanguageModel | RewardEnsemble, *, lora: bool) -> LanguageModel:
    """PPO's value model, copied from the reward model (InstructGPT), of an ensemble from its
    first member (one trunk to train, not n). With `lora` it shares the reward model's frozen
    base tensors (`frozen_base_copy`) and has its own copy of the scalar head, and of a LoRA
    member's adapters, which stay trainable (PPO adds adapters only to a model without any);
    without, it is a whole copy, a LoRA member's adapters merged into it."""
    first = reward.members[0] if isinstance(reward, RewardEnsemble) else reward
    if not lora:
        return merge_lora(frozen_base_copy(first)) if has_lora(first) else copy.deepcopy(first)
    value = frozen_base_copy(first)
    for name, p in value.named_parameters():
        p.requires_grad_(lora_trained(name) and has_lora(first))
    return value


def train_reward_ensemble(
    model: LanguageModel,
    tokenizer: ChatTokenizer,
    records: list[RankingRecord],
    config: RewardConfig | None = None,
    *,
    demonstrations: list[Demonstration] | None = None,
    held_out: list[RankingRecord] | None = None,
    on_step: OnStep | None = None,
    checkpoint_dir=None,
) -> RewardResult:
    """`config.ensemble` reward models from `model` (with a scalar head), see the module
    docstring; with 1 it is `train_reward_model(model, ...)`. Each member trains on a copy of
    `model`, which itself moves to the CPU, or with LoRA on a `frozen_base_copy` of it, whose
    frozen weights the members then share (the module docstring's "Memory"); member i
    checkpoints under `checkpoint_dir/member-<i>`, so a resumed run reloads the finished members
    and continues the one it stopped in. The result's model is a `RewardEnsemble` on `model`'s
    device."""
    config = config or RewardConfig()
    if config.ensemble == 1:
        return train_reward_model(model, tokenizer, records, config, demonstrations=demonstrations,
                                  held_out=held_out, on_step=on_step,
                                  checkpoint_dir=checkpoint_dir)  # fmt: skip
    if config.ensemble < 1:
        raise ValueError(f"RewardConfig.ensemble must be at least 1, got {config.ensemble}")
    device = next(model.parameters()).device
    shared = config.lora_rank > 0  # members train adapters over `model`, which stays put
    start = model if shared else model.cpu()
    train, val = shared_split(tokenizer, records, config, block_size=model.config.block_size)
    members, results, done = [], [], 0
    for i in range(config.ensemble):
        seed = config.seed + i
        reporter = _member_reporter(on_step, i, config.ensemble, done)
        member = frozen_base_copy(start) if shared else copy.deepcopy(start).to(device)
        result = train_reward_model(
            member, tokenizer, bootstrap(train, seed=seed) if config.bootstrap else train,
            replace(config, seed=seed), demonstrations=demonstrations, held_out=held_out,
            validation=val, on_step=reporter, merge=False,
            checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir) / member_dir(i),
        )  # fmt: skip
        done += result.step
        if result.stopped:
            return RewardResult(result.model, done, done, True, result.metrics)
        members.append(result.model if shared else result.model.cpu())
        results.append(result)
    ensemble = RewardEnsemble(members).to(device)
    metrics = {"ensemble_members": float(config.ensemble),
               **ensemble_figures(ensemble, tokenizer, val, held_out or [], config),
               **_member_spread(results)}  # fmt: skip
    return RewardResult(ensemble, done, done, False, metrics)


def ensemble_figures(
    ensemble: RewardEnsemble,
    tokenizer: ChatTokenizer,
    val: list[RankingRecord],
    held_out: list[RankingRecord],
    config: RewardConfig,
) -> dict[str, float]:
    """The mean reward's `val_*` and `heldout_*` figures (`evaluate_rankings`, as for one model)
    and the members' mean disagreement on the completions of each set."""
    figures = held_out_ranking_figures(ensemble, tokenizer, held_out, config)
    val_examples, held_examples = (
        ranking_examples(tokenizer, records, block_size=ensemble.config.block_size,
                         skip_invalid=True)[0]
        for records in (val, held_out)
    )  # fmt: skip
    if val_examples:
        found = evaluate_rankings(ensemble, val_examples, pad_id=tokenizer.pad_id,
                                  batch_size=config.batch_size)  # fmt: skip
        figures.update({f"val_{k}": v for k, v in found.items()}, val_prompts=len(val_examples))
    for name, examples in (("ensemble_disagreement", val_examples),
                           ("heldout_disagreement", held_examples)):  # fmt: skip
        if examples:
            sequences = [seq for ex in examples for seq in ex.sequences]
            scores = member_scores(ensemble, sequences, pad_id=tokenizer.pad_id,
                                   batch_size=config.batch_size)  # fmt: skip
            figures[name] = float(disagreement(scores).mean())
    return figures


def shared_split(
    tokenizer: ChatTokenizer, records: list[RankingRecord], config: RewardConfig, *,
    block_size: int,
) -> tuple[list[RankingRecord], list[RankingRecord]]:
    """(training, validation) records of the prompts that give a pair (`ranking_examples`),
    split by prompt as one reward model splits them. Tasks that tie every reply teach nothing:
    left in, they would take validation places one model gives to usable prompts, and bootstrap
    draws, so that with few usable prompts a member could draw none and fail the run. Member 0
    without the bootstrap is the reward model `ensemble` = 1 trains."""
    examples, _ = ranking_examples(tokenizer, records, block_size=block_size,
                                   skip_invalid=config.skip_invalid)  # fmt: skip
    _, val_idx = split_by_prompt([ex.key for ex in examples], config.val_fraction,
                                 seed=config.seed)  # fmt: skip
    usable, val_keys = {ex.key for ex in examples}, {examples[i].key for i in val_idx}
    return ([r for r in records if r.key() in usable - val_keys],
            [r for r in records if r.key() in val_keys])  # fmt: skip


def _member_spread(results: list[RewardResult]) -> dict[str, float]:
    """The lowest and highest of the members' own held-out accuracies."""
    out = {}
    for name in ("val_accuracy", "heldout_accuracy"):
        values = [r.metrics[name] for r in results if name in r.metrics]
        if values:
            out[f"member_{name}_min"], out[f"member_{name}_max"] = min(values), max(values)
    return out


def _member_reporter(on_step: OnStep | None, i: int, n: int, done: int) -> OnStep:
    """Member i's progress as the ensemble's: its steps after the `done` of the members before,
    the total counting its own budget for each member left, and `member` among the metrics."""

    def member_step(p: Progress) -> bool:
        return report(on_step, Progress(p.stage, done + p.step, done + p.total * (n - i),
                                        {**p.metrics, "member": float(i)}))  # fmt: skip

    return member_step
