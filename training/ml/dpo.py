"""Direct Preference Optimization (DPO, Rafailov et al. 2023): the policy learned straight from
the rankings, without a reward model or sampling.

Every (better, worse) pair a ranking implies is a training pair, and the pairs stay grouped per
prompt as the reward model groups them (`training.ml.reward_data`): each of a prompt's K
completions goes through the policy once per step, the loss of a prompt is the mean over its
pairs, and a batch is `batch_size` prompts. For a pair (chosen c, rejected r) with the policy's
and the reference's log-probabilities of the reply (summed over the reply's tokens, its
`<|end|>` included; never the prompt's)

    h = (log pi(c) - log ref(c)) - (log pi(r) - log ref(r))

and the loss, as TRL's `DPOTrainer` computes it (trl/trainer/dpo_trainer.py), is

    sigmoid  -logsigmoid(beta h) (1 - ls) - logsigmoid(-beta h) ls
             (DPO; with label smoothing ls > 0 the conservative "cDPO", as TRL's sigmoid loss
             until v0.28; from v0.29 TRL keeps label smoothing for "robust" only)
    robust   (-logsigmoid(beta h) (1 - ls) + logsigmoid(-beta h) ls) / (1 - 2 ls)
             (Chowdhury et al. 2024: unbiased under a share ls of flipped labels)
    ipo      (h' - 1 / (2 beta))^2 with h' from log-probs averaged over each reply's tokens
             (Azar et al. 2023, eq. 17; TRL's length normalization, checked with the authors)

**RPO.** With `rpo_alpha` > 0 a pair's loss adds rpo_alpha times the chosen reply's negative
log-likelihood per token (Pang et al. 2024, "Iterative Reasoning Preference Optimization"; TRL's
`rpo_alpha`). The DPO loss only orders the two replies: it can lower both, the rejected more.
When the preferred replies are ones the model would not write (another model's, mixed into the
ranking tasks by a round's `sample_mix`), DPO alone learns to rank them and not to write them.

The implicit rewards beta (log pi(y) - log ref(y)) of the chosen and rejected replies, their
margin and the share of pairs it orders right ("accuracy", strict as TRL's) are reported per
step and on the held-out prompts (split by prompt, as the reward model's), there beside the
"longer reply wins" baseline on the same pairs and, when the replies of two models were ranked
together, the accuracy on the pairs of one model's replies (`training.ml.reward.
same_writer_figures`: telling who wrote a reply is not learning what the labelers prefer).

**The reference** is the model as given (the SFT model), its log-probabilities computed once
before the first step (TRL's `precompute_ref_log_probs`): no second copy of the weights and no
second forward pass per step. With `lora_rank` > 0 that is the base the adapters are then added
to (B starts at zero), i.e. the model with its adapters disabled. A resumed run recomputes them
from the model it is given, before loading its checkpoint.

**Early stopping.** With `eval_every` > 0, `keep_best` ends on the weights of the best held-out
evaluation (highest accuracy, then lowest loss) and `patience` > 0 also stops after that many
evaluations without a better one, as `training.ml.reward` does (`BestEvaluation`, its weights in
memory: a resumed run starts its search afresh). Off by default (`training.presets` says what it
did to three preferences and to SmolLM2), and what it chooses on is weak:
the implicit reward's log-ratio has the most room to rise where the reference found a reply
unlikely, so on held-out prompts it ranks replies partly by how unlikely the reference found
them. Replayed evaluation by evaluation against the policy's held-out win rate
(`bench/bench_dpo_selection.py`; the tiny model's two-round runs of three preferences with
base-model replies mixed in): in first rounds the accuracy came mostly from the base model's
replies, which the SFT reference finds unlikely and the labelers preferred (1.00 on those pairs,
0.57 on pairs of two base-model replies), and keeping its best weights changed the win rate by
-1.2 to 0 points, or +9.4 (61% -> 70%) where DPO overshot; in second rounds, whose reference
is the first round's policy, it sat below chance (0.29-0.48) from the first evaluation on while
the policies won 55-72% of held-out questions, and keeping its best weights changed the win rate
by -7.2 to +5.5 points. No held-out figure (accuracy, loss, margin, the preferred replies' NLL,
the accuracy on one model's pairs) kept the best weights in every run.

Training runs in eval mode: no dropout, as TRL's default `disable_dropout`, so at the first step
the policy equals the reference and every implicit reward is 0.

    result = train_dpo(sft_model, tokenizer, rankings, DPOConfig(beta=0.1),
                       checkpoint_dir="artifacts/dpo-run")
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from training.ml.architectures import LanguageModel
from training.ml.configs import LOSS_TYPES, DPOConfig
from training.ml.lora import merge_lora
from training.ml.optim import apply_update, schedule_lr
from training.ml.ppo_rollout import policy_outputs
from training.ml.progress import OnStep, Progress
from training.ml.records import RankingRecord
from training.ml.reward import (
    BestEvaluation,
    mean_per_prompt,
    pair_accuracy,
    same_writer_figures,
)
from training.ml.reward_data import RankingExample, RewardBatch, ranking_examples, reward_batch
from training.ml.tokenizer import ChatTokenizer
from training.ml.train_loop import (
    batches_for_step,
    due,
    end_step,
    save_loop,
    skipped_metrics,
    start_loop,
)


@dataclass
class PreferenceExample:
    """One prompt's ranked completions and the reference's log-probability of each reply."""

    ranking: RankingExample
    reference: list[float]  # summed over each reply's tokens, one per completion

    @property
    def key(self):
        return self.ranking.key


@dataclass
class DPOResult:
    model: LanguageModel
    step: int
    total_steps: int
    stopped: bool
    metrics: dict[str, float]


# -- the maths ------------------------------------------------------------------------------


def dpo_losses(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_tokens: torch.Tensor | None = None,
    rejected_tokens: torch.Tensor | None = None,
) -> torch.Tensor:
    """(P,) the loss of each pair from the summed reply log-probs (P,) of policy and reference;
    see the module docstring. IPO needs each reply's token count (`*_tokens`, (P,))."""
    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    if loss_type == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("the ipo loss averages over tokens: pass chosen_ and rejected_tokens")
        h = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(
            min=1
        )
        return (h - 1 / (2 * beta)) ** 2
    h = chosen_ratio - rejected_ratio
    right, flipped = F.logsigmoid(beta * h), F.logsigmoid(-beta * h)
    if loss_type == "sigmoid":
        return -right * (1 - label_smoothing) - flipped * label_smoothing
    if loss_type == "robust":
        return (-right * (1 - label_smoothing) + flipped * label_smoothing) / (
            1 - 2 * label_smoothing
        )
    raise ValueError(f"unknown DPO loss_type {loss_type!r}; known: {', '.join(LOSS_TYPES)}")


def scored_tokens(example: RankingExample) -> list[int]:
    """How many tokens of each completion's reply are scored: the reply (and its end token) as
    far as the block kept it, and never the sequence's first token, which nothing predicts."""
    return [
        min(length, len(seq) - 1)  # reply_lengths count the end token
        for seq, length in zip(example.sequences, example.reply_lengths, strict=True)
    ]


def reply_logprobs(model: LanguageModel, batch: RewardBatch, tokens: torch.Tensor) -> torch.Tensor:
    """(N,) each completion's log-probability of its last `tokens` (N,) tokens, the reply, given
    what precedes them; the head runs on the reply positions only (`policy_outputs`)."""
    T = batch.idx.shape[1]  # noqa: N806
    steps = torch.arange(int(tokens.max()), device=batch.idx.device)  # (R,)
    mask = steps[None, :] < tokens[:, None]  # (N, R)
    positions = (batch.last[:, None] - tokens[:, None] + steps[None, :]).clamp(0, T - 2)  # (N, R)
    replies = batch.idx.gather(1, positions + 1)  # (N, R) the token each position predicts
    logprobs, _ = policy_outputs(model, batch.idx, positions, replies, temperature=1.0)
    return (logprobs * mask).sum(1)


def reply_batch(
    examples: list[RankingExample], *, pad_id: int, device
) -> tuple[RewardBatch, torch.Tensor]:
    """The batch of `examples` (`reward_batch`) and each completion's scored token count."""
    batch = reward_batch(examples, pad_id=pad_id, device=device)
    tokens = [n for ex in examples for n in scored_tokens(ex)]
    return batch, torch.tensor(tokens, device=device)


def preference_batch(examples: list[PreferenceExample], *, pad_id: int, device):
    """`reply_batch` of `examples` and each completion's reference log-prob (N,)."""
    batch, tokens = reply_batch([ex.ranking for ex in examples], pad_id=pad_id, device=device)
    reference = torch.tensor([v for ex in examples for v in ex.reference], device=device)
    return batch, tokens, reference


def preference_terms(
    logps: torch.Tensor, reference: torch.Tensor, tokens: torch.Tensor, batch: RewardBatch,
    config: DPOConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """The batch's loss (mean over prompts of their pairs' mean) and, per pair, the implicit
    rewards beta (log pi - log ref) of the chosen and rejected reply and the chosen reply's
    negative log-likelihood per token (RPO's term, added to the loss times `rpo_alpha`)."""
    w, l = batch.winners, batch.losers  # noqa: E741
    per_pair = dpo_losses(
        logps[w], logps[l], reference[w], reference[l],
        beta=config.beta, loss_type=config.loss_type, label_smoothing=config.label_smoothing,
        chosen_tokens=tokens[w], rejected_tokens=tokens[l],
    )  # fmt: skip
    nll = -logps[w] / tokens[w].clamp(min=1)
    if config.rpo_alpha:
        per_pair = per_pair + config.rpo_alpha * nll
    rewards = config.beta * (logps.detach() - reference)
    return mean_per_prompt(per_pair, batch.groups, batch.num_groups), {
        "chosen": rewards[w], "rejected": rewards[l], "chosen_nll": nll.detach()
    }  # fmt: skip


def reward_figures(
    chosen: torch.Tensor, rejected: torch.Tensor, chosen_nll: torch.Tensor
) -> dict[str, float]:
    """TRL's logged figures: the mean implicit rewards, their margin, the share of pairs the
    chosen reply wins (strictly: a tie counts as wrong) and the chosen replies' mean negative
    log-likelihood per token (whether the policy learns to write them, not only to prefer them)."""
    return {
        "chosen_reward": float(chosen.mean()),
        "rejected_reward": float(rejected.mean()),
        "margin": float((chosen - rejected).mean()),
        "accuracy": float((chosen > rejected).float().mean()),
        "chosen_nll": float(chosen_nll.mean()),
    }


@torch.no_grad()
def reference_logprobs(
    model: LanguageModel,
    examples: list[RankingExample],
    *,
    pad_id: int,
    batch_size: int,
) -> list[PreferenceExample]:
    """`examples` with `model`'s log-probability of each reply: the frozen reference."""
    device = next(model.parameters()).device
    out = [PreferenceExample(ex, []) for ex in examples]
    for start in range(0, len(out), batch_size):
        chunk = out[start : start + batch_size]
        batch, tokens = reply_batch([ex.ranking for ex in chunk], pad_id=pad_id, device=device)
        logps = iter(reply_logprobs(model, batch, tokens).tolist())
        for ex in chunk:
            ex.reference = [next(logps) for _ in ex.ranking.sequences]
    return out


@torch.no_grad()
def evaluate_preferences(
    model: LanguageModel,
    examples: list[PreferenceExample],
    config: DPOConfig,
    *,
    pad_id: int,
) -> dict[str, float]:
    """The loss and `reward_figures` over every pair of `examples` (held-out prompts), the
    share a "longer reply wins" rule gets right on the same pairs (ties half, as the reward
    model's baseline): what the accuracy must beat to say more than length, and with two
    models' replies among them `same_writer_figures`."""
    device = next(model.parameters()).device
    losses, longer, same, other = [], [], [], []
    parts = {"chosen": [], "rejected": [], "chosen_nll": []}
    for start in range(0, len(examples), config.batch_size):
        chunk = examples[start : start + config.batch_size]
        batch, tokens, reference = preference_batch(chunk, pad_id=pad_id, device=device)
        logps = reply_logprobs(model, batch, tokens)
        loss, rewards = preference_terms(logps, reference, tokens, batch, config)
        losses.append(float(loss) * len(chunk))
        longer.append((batch.winner_lengths - batch.loser_lengths).float())
        same.append(batch.same_writer)
        other.append(batch.other_writers)
        for name, values in rewards.items():
            parts[name].append(values)
    pairs = {name: torch.cat(values) for name, values in parts.items()}
    return {
        "loss": sum(losses) / len(examples),
        **reward_figures(**pairs),
        "length_baseline_accuracy": float(pair_accuracy(torch.cat(longer))),
        **same_writer_figures(pairs["chosen"] - pairs["rejected"], torch.cat(same),
                              torch.cat(other)),
        "pairs": float(len(pairs["chosen"])),
    }


# -- the loop -------------------------------------------------------------------------------


def train_dpo(
    model: LanguageModel,
    tokenizer: ChatTokenizer,
    records: list[RankingRecord],
    config: DPOConfig | None = None,
    *,
    on_step: OnStep | None = None,
    checkpoint_dir=None,
) -> DPOResult:
    """Train `model` (the SFT model, which is also the reference) in place on the rankings; see
    the module docstring. The final metrics hold the held-out figures (`val_accuracy`,
    `val_length_baseline_accuracy`, `val_margin`, `val_chosen_reward`, `val_rejected_reward`,
    `val_loss`, `val_pairs`)."""
    config = config or DPOConfig()
    device = next(model.parameters()).device
    rankings, skipped = ranking_examples(
        tokenizer, records, block_size=model.config.block_size, skip_invalid=config.skip_invalid
    )
    if not rankings:
        raise ValueError(
            f"no usable ranking record: got {len(records)} records, skipped {dict(skipped) or 0}"
        )
    model.eval()  # no dropout: see the module docstring
    examples = reference_logprobs(
        model, rankings, pad_id=tokenizer.pad_id, batch_size=config.batch_size
    )
    train, val, total, optimizer, step, extra = start_loop(model, examples, config, checkpoint_dir)
    model.eval()  # peft's adapters were added in training mode
    metrics: dict[str, float] = dict(extra.get("metrics", {}))
    metrics.update(
        train_prompts=len(train),
        val_prompts=len(val),
        **skipped_metrics(skipped),
    )

    def checkpoint():
        save_loop(checkpoint_dir, step=step, model=model, optimizer=optimizer,
                  tokenizer=tokenizer, stage="dpo",
                  extra={"metrics": metrics, "config": asdict(config), "total": total})  # fmt: skip

    total = int(extra.get("total", total))  # a run that stopped early stays stopped
    best = BestEvaluation(keep=config.keep_best or config.patience > 0)
    stopped = False
    while step < total:
        lr = schedule_lr(optimizer, step, total, config)
        chunk = [
            train[i]
            for i in batches_for_step(len(train), config.batch_size, step, seed=config.seed)
        ]
        batch, tokens, reference = preference_batch(chunk, pad_id=tokenizer.pad_id, device=device)
        logps = reply_logprobs(model, batch, tokens)  # (N,) each completion once
        loss, rewards = preference_terms(logps, reference, tokens, batch, config)
        grad_norm = apply_update(
            model, optimizer, loss, grad_clip=config.grad_clip, what="DPO", step=step, lr=lr
        )
        step += 1
        metrics.update(
            loss=loss.item(),
            **reward_figures(**rewards),
            lr=lr,
            grad_norm=grad_norm.item(),
        )
        if val and due(step, config.eval_every, total):
            figures = evaluate_preferences(model, val, config, pad_id=tokenizer.pad_id)
            metrics.update({f"val_{name}": value for name, value in figures.items()})
            best.consider(model, step, figures)
            if step < total and best.out_of_patience(config.patience):
                total = step  # early stopping: held-out accuracy stopped improving
                metrics["stopped_early_at"] = step
        if step == total:
            best.finish(model, step, metrics)
        if end_step(on_step, Progress("dpo", step, total, dict(metrics)),
                    checkpoint_every=config.checkpoint_every, checkpoint=checkpoint):  # fmt: skip
            stopped = True
            break
    merge_lora(model)  # with lora_rank > 0: a plain model; checkpoints keep the adapters apart
    return DPOResult(model, step, total, stopped, metrics)
