"""Supervised fine-tuning (SFT): teach a base model to answer like the demonstrations.

Each demonstration is a dialogue rendered by `ChatTokenizer.render_dialogue`; the loss is the
next-token cross-entropy on the assistant tokens only (their content and the `<|end|>` closing
each reply), so the model learns to reply and to stop, never to imitate the user. The prompt and
user turns are context, masked out with the target -100.

Training: AdamW, linear warmup then cosine decay, gradient clipping; a validation split by
prompt (no prompt on both sides) whose loss is reported every `eval_every` steps and at the end.
How the loop starts (split, step budget, LoRA, optimizer, resume) and walks its batches is shared
with the reward model and PPO: `training.ml.train_loop`.
`train_sft` reports each step through `on_step`, stops when it returns True (after saving a
checkpoint), and resumes from `checkpoint_dir` when one is there. With `lora_rank` > 0 only LoRA
adapters are trained (`training.ml.lora`), and merged into the returned model at the end.

    result = train_sft(model, tokenizer, demonstrations, SFTConfig(epochs=2),
                       on_step=tqdm_reporter("sft"), checkpoint_dir="artifacts/sft-run")
"""

from collections import Counter
from collections.abc import Hashable
from dataclasses import asdict, dataclass

import torch

from training.ml.architectures import LanguageModel
from training.ml.configs import SFTConfig
from training.ml.device import autocast
from training.ml.lm_loss import IGNORE
from training.ml.lora import merge_lora
from training.ml.optim import apply_update, schedule_lr
from training.ml.progress import OnStep, Progress
from training.ml.records import Demonstration
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
class TokenExample:
    """Ids of one text and the 0/1 mask of the tokens to learn (all 1 for pretraining text)."""

    ids: list[int]
    loss_mask: list[int]
    key: Hashable = None  # the prompt it answers, for the split by prompt


@dataclass
class SFTResult:
    model: LanguageModel
    step: int
    total_steps: int
    stopped: bool  # on_step asked to stop before the end
    metrics: dict[str, float]


# -- data -----------------------------------------------------------------------------------


def dialogue_examples(
    tokenizer: ChatTokenizer, demonstrations: list[Demonstration], *, block_size: int
) -> tuple[list[TokenExample], Counter]:
    """Render demonstrations to `TokenExample`s, cut to `block_size + 1` tokens (inputs plus the
    shifted targets). Returns the examples and a count of the records skipped, by reason."""
    examples, skipped = [], Counter()
    for demo in demonstrations:
        try:
            ids, mask = tokenizer.render_dialogue(demo.turns)
        except ValueError:
            skipped["invalid_dialogue"] += 1
            continue
        ids, mask = ids[: block_size + 1], mask[: block_size + 1]
        if sum(mask[1:]) == 0:
            skipped["no_assistant_tokens"] += 1
            continue
        examples.append(TokenExample(ids, mask, demo.key()))
    return examples, skipped


def lm_batch(
    examples: list[TokenExample], *, pad_id: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded inputs (B, T) and targets (B, T): target t is token t+1 where the loss mask
    is 1 and -100 elsewhere (the prompt, user turns, padding)."""
    T = max(len(ex.ids) for ex in examples) - 1  # noqa: N806
    idx = torch.full((len(examples), T), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    for row, ex in enumerate(examples):
        ids = torch.tensor(ex.ids, dtype=torch.long)
        learn = torch.tensor(ex.loss_mask[1:], dtype=torch.bool)
        n = len(ex.ids) - 1
        idx[row, :n] = ids[:-1]
        targets[row, :n] = torch.where(learn, ids[1:], IGNORE)
    return idx.to(device), targets.to(device)


@torch.no_grad()
def lm_eval_loss(
    model: LanguageModel, examples: list[TokenExample], *, pad_id: int, batch_size: int
) -> float:
    """Mean cross-entropy per learned token over `examples`, in eval mode (no dropout)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, len(examples), batch_size):
            idx, targets = lm_batch(
                examples[start : start + batch_size], pad_id=pad_id, device=device
            )
            with autocast(device):
                _, loss = model(idx, targets)
            n = int((targets != IGNORE).sum())
            total += float(loss) * n
            count += n
    finally:
        model.train(was_training)
    return total / max(count, 1)


# -- the loop -------------------------------------------------------------------------------


def train_sft(
    model: LanguageModel,
    tokenizer: ChatTokenizer,
    demonstrations: list[Demonstration],
    config: SFTConfig | None = None,
    *,
    on_step: OnStep | None = None,
    checkpoint_dir=None,
) -> SFTResult:
    """Fine-tune `model` in place on the assistant tokens of `demonstrations`; see the module
    docstring. Raises ValueError when no demonstration is usable and FloatingPointError when the
    loss stops being finite (no update is applied with it)."""
    config = config or SFTConfig()
    device = next(model.parameters()).device
    examples, skipped = dialogue_examples(
        tokenizer, demonstrations, block_size=model.config.block_size
    )
    if not examples:
        raise ValueError(
            f"SFT needs at least one demonstration with an assistant reply: got "
            f"{len(demonstrations)} records, skipped {dict(skipped) or 0}"
        )
    train, val, total, optimizer, step, extra = start_loop(model, examples, config, checkpoint_dir)
    metrics: dict[str, float] = dict(extra.get("metrics", {}))
    metrics.update(
        train_examples=len(train),
        val_examples=len(val),
        **skipped_metrics(skipped),
    )

    def checkpoint():
        save_loop(checkpoint_dir, step=step, model=model, optimizer=optimizer,
                  tokenizer=tokenizer, stage="sft",
                  extra={"metrics": metrics, "config": asdict(config)})  # fmt: skip

    stopped = False
    model.train()
    while step < total:
        lr = schedule_lr(optimizer, step, total, config)
        batch = [
            train[i]
            for i in batches_for_step(len(train), config.batch_size, step, seed=config.seed)
        ]
        idx, targets = lm_batch(batch, pad_id=tokenizer.pad_id, device=device)
        with autocast(device):
            _, loss = model(idx, targets)  # mean cross entropy over the learned tokens
        grad_norm = apply_update(
            model, optimizer, loss, grad_clip=config.grad_clip, what="SFT", step=step, lr=lr
        )
        step += 1
        metrics.update(
            loss=loss.item(),
            lr=lr,
            grad_norm=grad_norm.item(),
            tokens=float((targets != IGNORE).sum()),
        )
        if val and due(step, config.eval_every, total):
            metrics["val_loss"] = lm_eval_loss(
                model, val, pad_id=tokenizer.pad_id, batch_size=config.batch_size
            )
        if end_step(on_step, Progress("sft", step, total, dict(metrics)),
                    checkpoint_every=config.checkpoint_every, checkpoint=checkpoint):  # fmt: skip
            stopped = True
            break
    # Checkpoints keep the adapters apart (what a resumed run continues from); the result is
    # plain. Merging into saved weights mid-run would apply the adapters twice on resume.
    merge_lora(model)
    return SFTResult(model, step, total, stopped, metrics)
