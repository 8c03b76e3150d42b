"""The reward model: a language model with a scalar head, trained on human rankings of K
completions.

r(x, y) is the scalar head read at the last token of prompt x followed by reply y, the
`<|end|>` that closes the reply. For one prompt with K ranked completions the loss is, as in
InstructGPT (Ouyang et al. 2022, eq. 1),

    loss = -1/P * sum over the P pairs (w ranked above l) of log sigmoid(r(x, y_w) - r(x, y_l))

where P = C(K, 2) for a full ranking without ties; a tie yields no pair, and a prompt with several
rankings contributes the pairs of each. **All pairs of one prompt are one batch element**: each
of its K completions goes through the model once and the pairs are differences of those K
scores, instead of 2 * C(K, 2) forward passes (bench/bench_reward.py measures the gain). A batch
is `batch_size` prompts; the loss is the mean of their per-prompt losses.

Validation is split by prompt (no prompt on both sides) and reports pairwise accuracy next to a
"longer reply wins" baseline on the same pairs, and the mean margin r_w - r_l. After training
the scalar head is normalized, as Ziegler et al. (2019) do: scaled so the rewards of the
training completions (samples of the policy being improved) have standard deviation 1, and
shifted so the demonstrations' mean reward is 0. PPO's KL coefficient, score clip and
unfinished-reply penalty are then in the same units whatever scale training left the head at.
One epoch by default: the reward model overfits quickly. With `lora_rank` > 0 only LoRA adapters
and the scalar head are trained (`training.ml.lora`); the returned model has them merged.

**Early stopping.** A reward model memorizes its training pairs long before it stops improving
on pairs it never saw (training loss ~0.1 while held-out accuracy sits at the longer-reply
baseline), so the epoch count is only a ceiling: with `eval_every` > 0 the held-out pairs are
evaluated every `eval_every` steps (the longer-reply baseline beside them, on the same pairs);
`keep_best` ends on the weights of the best evaluation (highest accuracy, then lowest loss), and
`patience` > 0 also stops training after that many evaluations without a better one (it implies
`keep_best`). The best weights live in memory: a resumed run starts its search afresh.

**Reward centering.** With `center_coef` > 0 the loss also holds `center_coef * mean(r^2)` over
the batch's completions (Eisenstein et al. 2023; TRL's `center_rewards_coefficient`): the pairwise
loss only sees differences, so nothing stops the scores drifting or the margins growing without
bound on pairs already right; the term keeps the rewards near 0 and their scale in check.
Measured beside `weight_decay` in `bench/bench_reward_generalization.py` on the tiny model: at
0.1 neither moved held-out accuracy beyond noise (early stopping already regularizes), so both
stay 0 by default; centering's use is the reward's scale (PPO's score and KL units).

**Held-out rankings.** The validation split picks the weights, so its accuracy is a little
optimistic; rankings that never took part (`held_out`, a project's rankings of its evaluation
prompts) are scored once, on the final weights: `heldout_accuracy` beside
`heldout_length_baseline_accuracy`.

    model = with_scalar_head(sft_model)  # training.ml.architectures
    result = train_reward_model(model, tokenizer, rankings, RewardConfig(),
                                demonstrations=demos, checkpoint_dir="artifacts/rm-run")
"""

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from training.ml.architectures import LanguageModel
from training.ml.configs import RewardConfig
from training.ml.device import autocast
from training.ml.lora import merge_lora
from training.ml.optim import apply_update, schedule_lr
from training.ml.progress import OnStep, Progress
from training.ml.records import Demonstration, RankingRecord
from training.ml.reward_data import RankingExample, ranking_examples, reward_batch
from training.ml.tokenizer import ChatTokenizer
from training.ml.train_loop import (
    batches_for_step,
    end_step,
    save_loop,
    skipped_metrics,
    start_loop,
)


@dataclass
class RewardResult:
    model: LanguageModel
    step: int
    total_steps: int
    stopped: bool
    metrics: dict[str, float]


# -- the maths ------------------------------------------------------------------------------


def pairwise_loss(
    rewards: torch.Tensor,
    winners: torch.Tensor,
    losers: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int,
) -> torch.Tensor:
    """Mean over prompts of -1/P_g * sum_{pairs of g} log sigmoid(r_w - r_l).

    rewards (N,) one per completion; winners, losers, groups (P,) one per pair.
    """
    per_pair = -F.logsigmoid(rewards[winners] - rewards[losers])  # (P,)
    return mean_per_prompt(per_pair, groups, num_groups)


def mean_per_prompt(per_pair: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Mean over prompts of the mean over each prompt's pairs: a prompt counts once however many
    pairs its rankings imply (the reward model's and DPO's batch element).

    per_pair, groups (P,): each pair's loss and the prompt it belongs to.
    """
    total = torch.zeros(num_groups, dtype=per_pair.dtype, device=per_pair.device)
    total = total.index_add(0, groups, per_pair)  # (G,)
    count = torch.bincount(groups, minlength=num_groups).clamp(min=1)  # (G,)
    return (total / count).mean()


def pair_accuracy(margins: torch.Tensor) -> torch.Tensor:
    """Fraction of pairs ranked right (margin > 0), a tie counting half."""
    return ((margins > 0).float() + 0.5 * (margins == 0).float()).mean()


def same_writer_figures(
    margins: torch.Tensor, same: torch.Tensor, other: torch.Tensor
) -> dict[str, float]:
    """The accuracy on the pairs of one model's replies, when pairs of two models' replies are
    among them too (a round's `sample_mix`): {} otherwise. Across writers a model can be right
    by telling who wrote a reply, if the labelers prefer one model's replies, without learning
    what they prefer in a reply; within one writer it cannot, and PPO and best-of-n compare one
    model's replies. Measured on the tiny model's first DPO round of the `example` rule with
    base-model replies mixed in: held-out accuracy 0.82, made of 1.00 on the 106 pairs where
    the base model's reply won and 0.57 on the 44 pairs of two base-model replies."""
    if not bool(other.any()) or not bool(same.any()):
        return {}
    return {"same_writer_accuracy": float(pair_accuracy(margins[same])),
            "same_writer_pairs": float(same.sum())}  # fmt: skip


def sequence_scores(model: LanguageModel, idx: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """(N,) the scalar head at column `last` of each right-padded row of `idx`."""
    with autocast(idx.device):
        scores = model.scores(idx)  # (N, T)
    return scores.float().gather(1, last[:, None]).squeeze(1)


@torch.no_grad()
def evaluate_rankings(
    model: LanguageModel, examples: list[RankingExample], *, pad_id: int, batch_size: int
) -> dict[str, float]:
    """Loss, pairwise accuracy, the "longer reply wins" accuracy on the same pairs, and the
    mean margin r_w - r_l, over every pair of `examples`, in eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    margins, baseline, losses, same, other = [], [], [], [], []
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            batch = reward_batch(chunk, pad_id=pad_id, device=device)
            rewards = sequence_scores(model, batch.idx, batch.last)
            losses.append(
                pairwise_loss(rewards, batch.winners, batch.losers, batch.groups, batch.num_groups)
                * len(chunk)
            )
            margins.append(rewards[batch.winners] - rewards[batch.losers])
            baseline.append((batch.winner_lengths - batch.loser_lengths).float())
            same.append(batch.same_writer)
            other.append(batch.other_writers)
    finally:
        model.train(was_training)
    margins, baseline = torch.cat(margins), torch.cat(baseline)
    return {
        "loss": float(sum(losses)) / len(examples),
        "accuracy": float(pair_accuracy(margins)),
        "length_baseline_accuracy": float(pair_accuracy(baseline)),
        **same_writer_figures(margins, torch.cat(same), torch.cat(other)),
        "mean_margin": float(margins.mean()),
        "pairs": float(len(margins)),
    }


@torch.no_grad()
def score_sequences(
    model: LanguageModel, sequences: list[list[int]], *, pad_id: int, batch_size: int = 32
) -> torch.Tensor:
    """(N,) the reward of each token sequence, read at its last token, in eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start : start + batch_size]
            T = max(len(seq) for seq in chunk)  # noqa: N806
            idx = torch.full((len(chunk), T), pad_id, dtype=torch.long)
            for row, seq in enumerate(chunk):
                idx[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            last = torch.tensor([len(seq) - 1 for seq in chunk], device=device)
            out.append(sequence_scores(model, idx.to(device), last))
    finally:
        model.train(was_training)
    return torch.cat(out).cpu()


def center_on_demonstrations(
    model: LanguageModel,
    tokenizer: ChatTokenizer,
    demonstrations: list[Demonstration],
    *,
    batch_size: int = 32,
) -> float:
    """Shift the scalar head's bias so the mean reward of the demonstrations' final replies is
    0; returns the mean that was subtracted (0.0 when there is no usable demonstration)."""
    block = model.config.block_size
    sequences = []
    for demo in demonstrations:
        try:
            ids, mask = tokenizer.render_dialogue(demo.turns)
        except ValueError:
            continue
        if 1 not in mask:
            continue
        last = len(mask) - 1 - mask[::-1].index(1)  # the <|end|> closing the last reply
        sequences.append(ids[: last + 1][-block:])
    if not sequences:
        return 0.0
    mean = float(
        score_sequences(model, sequences, pad_id=tokenizer.pad_id, batch_size=batch_size).mean()
    )
    with torch.no_grad():
        model.score_head.bias -= mean
    return mean


class RewardModelScorer:
    """PPO's reward function from a trained reward model: scores (prompt ids, response ids)
    pairs, batched. The response should end with `<|end|>`, where the model reads its score."""

    def __init__(self, model: LanguageModel, *, pad_id: int, batch_size: int = 32):
        self.model, self.pad_id, self.batch_size = model, pad_id, batch_size

    def score_batch(self, prompts: list[list[int]], responses: list[list[int]]) -> list[float]:
        block = self.model.config.block_size
        sequences = [(p + r)[-block:] for p, r in zip(prompts, responses, strict=True)]
        return score_sequences(
            self.model, sequences, pad_id=self.pad_id, batch_size=self.batch_size
        ).tolist()

    def __call__(self, prompt: list[int], response: list[int]) -> float:
        return self.score_batch([prompt], [response])[0]


# -- the loop -------------------------------------------------------------------------------


def train_reward_model(
    model: LanguageModel,
    tokenizer: ChatTokenizer,
    records: list[RankingRecord],
    config: RewardConfig | None = None,
    *,
    demonstrations: list[Demonstration] | None = None,
    held_out: list[RankingRecord] | None = None,
    validation: list[RankingRecord] | None = None,
    on_step: OnStep | None = None,
    checkpoint_dir=None,
    merge: bool = True,
) -> RewardResult:
    """Train `model` (a model with a scalar head, e.g. `with_scalar_head(sft_model)`) in place
    on the rankings; see the module docstring. The final metrics hold the held-out figures
    (`val_accuracy`, `val_length_baseline_accuracy`, `val_mean_margin`, `val_loss`), the
    `reward_gain` that gave the training completions' rewards a standard deviation of 1 and the
    `reward_offset` then subtracted to centre the demonstrations' rewards on 0. `validation`
    rankings replace the split of `records` (an ensemble's members share one held-out side).
    `merge=False` returns LoRA adapters unmerged (an ensemble's members share their base)."""
    config = config or RewardConfig()
    if model.score_head is None:
        raise ValueError("the reward model needs a scalar head: pass with_scalar_head(model)")
    device = next(model.parameters()).device
    examples, skipped = ranking_examples(
        tokenizer, records, block_size=model.config.block_size, skip_invalid=config.skip_invalid
    )
    if not examples:
        raise ValueError(
            f"no usable ranking record: got {len(records)} records, skipped {dict(skipped) or 0}"
        )
    if validation is not None:  # the records are all for training
        config = replace(config, val_fraction=0.0)
    train, val, total, optimizer, step, extra = start_loop(model, examples, config, checkpoint_dir)
    if validation is not None:
        val, val_skipped = ranking_examples(tokenizer, validation, skip_invalid=config.skip_invalid,
                                            block_size=model.config.block_size)  # fmt: skip
        skipped += val_skipped
    metrics: dict[str, float] = dict(extra.get("metrics", {}))
    metrics.update(
        train_prompts=len(train),
        val_prompts=len(val),
        **skipped_metrics(skipped),
    )
    centered = bool(extra.get("centered", False))

    def checkpoint():
        save_loop(checkpoint_dir, step=step, model=model, optimizer=optimizer,
                  tokenizer=tokenizer, stage="reward",
                  extra={"metrics": metrics, "centered": centered, "config": asdict(config),
                         "total": total})  # fmt: skip

    total = int(extra.get("total", total))  # a run that stopped early stays stopped
    best = BestEvaluation(keep=config.keep_best or config.patience > 0)

    def evaluate():
        if val:
            figures = evaluate_rankings(
                model, val, pad_id=tokenizer.pad_id, batch_size=config.batch_size
            )
            metrics.update({f"val_{name}": value for name, value in figures.items()})
            best.consider(model, step, figures)

    stopped = False
    model.train()
    while step < total:
        lr = schedule_lr(optimizer, step, total, config)
        chunk = [
            train[i]
            for i in batches_for_step(len(train), config.batch_size, step, seed=config.seed)
        ]
        batch = reward_batch(chunk, pad_id=tokenizer.pad_id, device=device)
        rewards = sequence_scores(model, batch.idx, batch.last)  # (N,) each completion once
        loss = pairwise_loss(rewards, batch.winners, batch.losers, batch.groups, batch.num_groups)
        if config.center_coef:
            loss = loss + config.center_coef * rewards.pow(2).mean()
        grad_norm = apply_update(
            model, optimizer, loss, grad_clip=config.grad_clip, what="reward-model", step=step,
            lr=lr,
        )  # fmt: skip
        step += 1
        margins = (rewards[batch.winners] - rewards[batch.losers]).detach()
        metrics.update(
            loss=loss.item(),
            accuracy=float(pair_accuracy(margins)),
            mean_margin=float(margins.mean()),
            lr=lr,
            grad_norm=grad_norm.item(),
        )
        if step < total and config.eval_every and step % config.eval_every == 0:
            evaluate()
            if best.out_of_patience(config.patience):
                total = step  # early stopping: held-out accuracy stopped improving
                metrics["stopped_early_at"] = step
        elif step == total:
            evaluate()
        if step == total:
            best.finish(model, step, metrics)
            metrics.update(held_out_ranking_figures(model, tokenizer, held_out or [], config))
            if not centered:
                gain, offset = _normalize(model, tokenizer, demonstrations, train, config)
                metrics.update(reward_gain=gain, reward_offset=offset)
                centered = True
        if end_step(on_step, Progress("reward", step, total, dict(metrics)),
                    checkpoint_every=config.checkpoint_every, checkpoint=checkpoint):  # fmt: skip
            stopped = True
            break
    if merge:
        merge_lora(model)  # with lora_rank > 0: a plain model; checkpoints keep the adapters apart
    return RewardResult(model, step, total, stopped, metrics)


class BestEvaluation:
    """The weights of the best held-out evaluation so far (highest accuracy, ties to the lower
    loss: the more confident of equally right models), and how many evaluations since it."""

    def __init__(self, *, keep: bool):
        self.keep, self.step, self.since_best = keep, None, 0
        self.figures: dict[str, float] = {}
        self.state: dict[str, torch.Tensor] = {}

    def consider(self, model: LanguageModel, step: int, figures: dict[str, float]) -> None:
        if not self.keep:
            return
        key = (figures["accuracy"], -figures["loss"])
        if self.step is None or key > (self.figures["accuracy"], -self.figures["loss"]):
            self.step, self.figures, self.since_best = step, dict(figures), 0
            # the trained parameters only (the adapters and the head, with LoRA): the rest
            # does not change
            self.state = {name: p.detach().clone() for name, p in model.named_parameters()
                          if p.requires_grad}  # fmt: skip
        else:
            self.since_best += 1

    def out_of_patience(self, patience: int) -> bool:
        """Whether early stopping ends training now: `patience` > 0 evaluations without a better
        one."""
        return bool(patience) and self.since_best >= patience

    def finish(self, model: LanguageModel, step: int, metrics: dict) -> None:
        """After the last step: back to the best weights when an earlier evaluation was better
        (its figures become the `val_` metrics), and `best_step` named in `metrics`."""
        if self.step is None:
            return
        if self.step != step:
            model.load_state_dict(self.state, strict=False)
            metrics.update({f"val_{name}": value for name, value in self.figures.items()})
        metrics["best_step"] = self.step


def held_out_ranking_figures(model, tokenizer, records, config) -> dict[str, float]:
    """`evaluate_rankings` on the held-out records, as `heldout_*` metrics ({} without any)."""
    examples, _ = ranking_examples(tokenizer, records, block_size=model.config.block_size,
                                   skip_invalid=True)  # fmt: skip
    if not examples:
        return {}
    figures = evaluate_rankings(model, examples, pad_id=tokenizer.pad_id,
                                batch_size=config.batch_size)  # fmt: skip
    return {"heldout_prompts": float(len(examples)),
            **{f"heldout_{name}": value for name, value in figures.items()}}  # fmt: skip


def _normalize(model, tokenizer, demonstrations, train, config) -> tuple[float, float]:
    """Scale the scalar head so the training completions' rewards have standard deviation 1
    (a gain of 1.0 when they all score alike), then shift it so the demonstrations' mean reward
    is 0 (else the training completions'). Returns (gain, offset subtracted)."""
    sequences = [seq for ex in train for seq in ex.sequences]
    scores = score_sequences(model, sequences, pad_id=tokenizer.pad_id,
                             batch_size=config.batch_size)  # fmt: skip
    std = float(scores.std()) if len(sequences) > 1 else 0.0
    gain = 1.0 / std if std > 1e-6 else 1.0
    with torch.no_grad():
        model.score_head.weight *= gain
        model.score_head.bias *= gain
    if demonstrations:
        offset = center_on_demonstrations(
            model, tokenizer, demonstrations, batch_size=config.batch_size
        )
        return gain, offset
    offset = float(scores.mean()) * gain
    with torch.no_grad():
        model.score_head.bias -= offset
    return gain, offset
