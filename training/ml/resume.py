"""A train loop's checkpoint directory: everything a killed run needs to continue, saved so
that a crash mid-save never leaves a checkpoint that looks complete.

    checkpoint_dir/
      LATEST             name of the newest complete checkpoint, replaced atomically, last
      step-000120/
        tokenizer.json
        model/           one folder per model (`checkpoint.save_model`): model, value, ema ...
        model.state      its optimizer, the step and the loop's extra state (`save_train_state`)

Only the newest checkpoint is kept. Loading copies the weights into the caller's models and the
state into its optimizers, so a loop builds its objects as for a fresh run, then resumes.
"""

import os
import shutil
from pathlib import Path

import torch

from training.ml.architectures import LanguageModel
from training.ml.checkpoint import load_model, load_train_state, save_model, save_train_state

LATEST = "LATEST"


def save_checkpoint(
    directory,
    *,
    step: int,
    models: dict[str, LanguageModel],
    optimizers: dict[str, torch.optim.Optimizer],
    extra: dict,
    tokenizer,
    meta: dict,
) -> Path:
    """Write step `step` under `directory`, point LATEST at it, drop the older ones.

    `optimizers` is keyed like `models` (an optimizer's state is saved next to its model); the
    first optimizer's file also carries `extra`, the loop's own resumable state.
    """
    directory = Path(directory)
    name = f"step-{step:06d}"
    target = directory / name
    tmp = directory / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer_path = tmp / "tokenizer.json"
    tokenizer.save(tokenizer_path)
    for key, model in models.items():
        save_model(
            tmp / key,
            model,
            tokenizer_path=tokenizer_path,
            meta={**meta, "step": step, "role": key},
        )
    for i, (key, optimizer) in enumerate(optimizers.items()):
        save_train_state(
            tmp / f"{key}.state", optimizer=optimizer, step=step, extra=extra if i == 0 else {}
        )
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    pointer = directory / f".{LATEST}.tmp-{os.getpid()}"
    pointer.write_text(name)
    os.replace(pointer, directory / LATEST)
    for old in directory.glob("step-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(directory) -> Path | None:
    """The newest complete checkpoint under `directory`, or None for a fresh run."""
    pointer = Path(directory) / LATEST
    if not pointer.exists():
        return None
    path = Path(directory) / pointer.read_text().strip()
    if not path.is_dir():
        raise ValueError(
            f"{pointer} names {path.name}, which is missing: the checkpoint is damaged"
        )
    return path


def load_checkpoint(
    directory, *, models: dict[str, LanguageModel], optimizers: dict[str, torch.optim.Optimizer]
) -> tuple[int, dict] | None:
    """Load the newest checkpoint under `directory` into `models` and `optimizers` (in place);
    returns (step, extra), or None when there is none yet."""
    path = latest_checkpoint(directory)
    if path is None:
        return None
    for key, model in models.items():
        device = next(model.parameters()).device
        loaded, _ = load_model(path / key, device)
        try:
            model.load_state_dict(loaded.state_dict())
        except RuntimeError as exc:  # missing / unexpected / mis-shaped weights
            raise ValueError(
                f"checkpoint {path / key} does not fit this run's model (was the run started "
                f"with other settings, e.g. LoRA on or off?): {str(exc).splitlines()[0]}"
            ) from None
    step, extra = 0, {}
    for i, (key, optimizer) in enumerate(optimizers.items()):
        state_step, state_extra = load_train_state(path / f"{key}.state", optimizer)
        if i == 0:
            step, extra = state_step, state_extra
    return step, extra
