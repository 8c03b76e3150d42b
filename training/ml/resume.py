"""A train loop's checkpoint directory: everything a killed run needs to continue, saved so
that a crash mid-save never leaves a checkpoint that looks complete.

    checkpoint_dir/
      LATEST             name of the newest complete checkpoint, replaced atomically, last
      step-000120/
        tokenizer.json
        model/           one folder per model (`model_files.save_model`): model, value, ema ...;
                         of a model with LoRA adapters only them and its scalar head
                         (`trained_only`: its frozen base is the run's input)
        model.state      its optimizer, the step and the loop's extra state (`save_train_state`)

The model folders are `training.ml.model_files` directories; `save_train_state` writes what
resuming needs besides the weights (optimizer moments, step, RNG states, the loop's `extra`) as one
safetensors file: tensors as tensors, everything else as JSON in its header, written to a
temporary name then renamed. Nothing is unpickled.

Only the newest checkpoint is kept. Loading copies the weights into the caller's models and the
state into its optimizers, so a loop builds its objects as for a fresh run, then resumes.
"""

import json
import os
import random
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from training.ml.architectures import LanguageModel
from training.ml.model_files import load_weights, save_model

LATEST = "LATEST"
TRAIN_STATE_FORMAT = "rlhf-loop-train-state"


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
            trained_only=True,
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
        try:
            load_weights(path / key, model)
        except ValueError as exc:  # missing / unexpected / mis-shaped weights
            raise ValueError(
                f"checkpoint {path / key} does not fit this run's model (was the run started "
                f"with other settings, e.g. LoRA on or off?): {exc}"
            ) from None
    step, extra = 0, {}
    for i, (key, optimizer) in enumerate(optimizers.items()):
        state_step, state_extra = load_train_state(path / f"{key}.state", optimizer)
        if i == 0:
            step, extra = state_step, state_extra
    return step, extra


def save_train_state(
    path: str | os.PathLike, *, optimizer: torch.optim.Optimizer, step: int, extra: dict | None
) -> None:
    """Optimizer state, `step`, the torch / CUDA / Python RNG states and `extra` (JSON) in one
    safetensors file, written to a temporary name then renamed."""
    path = Path(path)
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, param_state in state["state"].items():
        for name, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = rng
    header = {
        "format": TRAIN_STATE_FORMAT,
        "step": step,
        "extra": extra or {},
        "param_groups": state["param_groups"],
        "state_scalars": scalars,
        "python_random": random.getstate(),
    }
    metadata = {"train_state": json.dumps(header)}  # fails here, before any file is touched
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_train_state(path: str | os.PathLike, optimizer: torch.optim.Optimizer):
    """Restore the optimizer and the RNG states saved by `save_train_state`; returns
    (step, extra). The optimizer must be built over the same parameters as the saved one."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {})["train_state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # a missing file, a non-safetensors file, no train-state header
        raise ValueError(f"cannot read training state {path}: {exc!r}") from None
    if header.get("format") != TRAIN_STATE_FORMAT:
        raise ValueError(f"{path} is not a {TRAIN_STATE_FORMAT} file")
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in header["state_scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    _check_matches(header["param_groups"], state, optimizer, path)
    optimizer.load_state_dict({"state": state, "param_groups": header["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    version, internal, gauss = header["python_random"]
    random.setstate((version, tuple(internal), gauss))
    return header["step"], header["extra"]


def _check_matches(groups: list[dict], state: dict, optimizer: torch.optim.Optimizer, path):
    """The saved groups and moment shapes must fit the optimizer's parameters: torch would
    otherwise accept a mismatch and fail later, far from the cause."""
    sizes = [len(g["params"]) for g in groups]
    if sizes != [len(g["params"]) for g in optimizer.param_groups]:
        raise ValueError(f"training state {path} was saved for a different model or optimizer")
    for saved, current in zip(groups, optimizer.param_groups, strict=True):
        for pid, param in zip(saved["params"], current["params"], strict=True):
            for name, value in state.get(pid, {}).items():
                if torch.is_tensor(value) and value.dim() and value.shape != param.shape:
                    raise ValueError(
                        f"training state {path}: {name} of parameter {pid} has shape "
                        f"{tuple(value.shape)}, the model's parameter {tuple(param.shape)}"
                    )
