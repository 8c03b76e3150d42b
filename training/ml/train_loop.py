"""The training loop SFT, the reward model and PPO share: the split by prompt, the step budget,
LoRA adapters, the optimizer, the resume from the last checkpoint (`start_loop`), the batch
order that a resumed run continues (`batches_for_step`), and what happens after a step (`end_step`:
report, checkpoint when due or stopping, stop). Each trainer keeps its own step: what it
computes differs, how it starts and walks its data does not.
"""

import math

import torch

from training.ml.architectures import LanguageModel
from training.ml.lora import LoraSettings, add_lora
from training.ml.optim import make_optimizer
from training.ml.progress import Progress, report
from training.ml.records import split_by_prompt
from training.ml.resume import load_checkpoint, save_checkpoint


def start_loop(model: LanguageModel, examples: list, config, checkpoint_dir):
    """What SFT and the reward model share before their first step: the split by prompt (no
    prompt on both sides), the step budget, LoRA adapters when `config.lora_rank` > 0, the
    optimizer (of the trainable parameters only), and the state of the last checkpoint when
    there is one. `config` needs val_fraction, seed, batch_size, epochs, max_steps, lr,
    weight_decay and the lora_ fields. Returns (train, val, total_steps, optimizer, step, extra).
    """
    train_idx, val_idx = split_by_prompt(
        [ex.key for ex in examples], config.val_fraction, seed=config.seed
    )
    train = [examples[i] for i in train_idx]
    val = [examples[i] for i in val_idx]
    per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.max_steps if config.max_steps is not None else config.epochs * per_epoch
    lora = LoraSettings.from_config(config)
    if lora is not None:
        add_lora(model, lora, seed=config.seed)
    optimizer = make_optimizer(model, lr=config.lr, weight_decay=config.weight_decay)
    step, extra = 0, {}
    if checkpoint_dir is not None:
        resumed = load_checkpoint(
            checkpoint_dir, models={"model": model}, optimizers={"model": optimizer}
        )
        if resumed is not None:
            step, extra = resumed
    return train, val, total, optimizer, step, extra


def batches_for_step(n: int, batch_size: int, step: int, *, seed: int) -> list[int]:
    """Example indices of 0-based `step`: epoch e is a permutation seeded by (seed, e), cut into
    batches; the same step always gets the same batch, so a resumed run continues the order."""
    per_epoch = math.ceil(n / batch_size)
    epoch, batch = divmod(step, per_epoch)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    return order[batch * batch_size : (batch + 1) * batch_size]


def save_loop(checkpoint_dir, *, step: int, model, optimizer, tokenizer, stage: str,
              extra: dict) -> None:  # fmt: skip
    """The checkpoint of a one-model loop (SFT, the reward model, DPO) that `start_loop` resumes
    from; nothing without a `checkpoint_dir` (a library call that keeps no state)."""
    if checkpoint_dir is not None:
        save_checkpoint(checkpoint_dir, step=step, models={"model": model},
                        optimizers={"model": optimizer}, extra=extra, tokenizer=tokenizer,
                        meta={"stage": stage})  # fmt: skip


def skipped_metrics(skipped: dict) -> dict[str, float]:
    """The records a loop could not use, in all and per reason, as run metrics."""
    return {"skipped_records": sum(skipped.values()),
            **{f"skipped_{reason}": float(n) for reason, n in skipped.items()}}  # fmt: skip


def due(step: int, every: int, total: int) -> bool:
    """Whether a loop evaluates or checkpoints after `step`: every `every` steps (0: never on the
    way) and always after the last."""
    return step == total or bool(every and step % every == 0)


def end_step(on_step, progress: Progress, *, checkpoint_every: int, checkpoint) -> bool:
    """After a step of a one-model loop: report `progress`, call `checkpoint` when it is due or the
    caller asks to stop, and say whether to stop now (a stop asked after the last step is none)."""
    stop = report(on_step, progress)
    if stop or due(progress.step, checkpoint_every, progress.total):
        checkpoint()
    return bool(stop) and progress.step < progress.total
