"""Checkpoints: safetensors weights plus JSON, written atomically, read without unpickling.

`save_model` writes a model directory:

    model.safetensors   the weights (a tied output head is stored once, as the embedding)
    config.json         {"format", "version", "arch", "config", "tokenizer", "meta"}, and
                        "lora" (`LoraSettings`) for a model with unmerged LoRA adapters
    tokenizer.json      a copy of the tokenizer, so the directory is self-contained

It goes to a temporary directory beside the target, which then replaces the target with two
renames, so a crash never leaves a half-written model under the real name (at worst the
previous one under `.<name>.old-*`).

`save_train_state` writes what resuming needs besides the weights (optimizer moments, step,
RNG states, the loop's `extra`) as one safetensors file: tensors as tensors, everything else
as JSON in its header, written to a temporary name then renamed. `training.ml.resume` puts
the two together into a loop's checkpoint directory.

Nothing a user could supply is ever passed to `pickle` or `torch.load`.
"""

import json
import os
import random
import shutil
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from training.ml.architectures import DEFAULT_ARCH, arch_of, build_model
from training.ml.lora import LoraSettings, add_lora, settings_dict
from training.ml.tokenizer import ChatTokenizer

FORMAT = "rlhf-loop-gpt"
TRAIN_STATE_FORMAT = "rlhf-loop-train-state"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"


def stored_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each tensor once: a name sharing its storage with an earlier one (a
    tied output head) is left out, and comes back by the tie when the model is rebuilt."""
    seen, out = set(), {}
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            out[name] = tensor
    return out


def save_model(
    directory: str | os.PathLike,
    model: nn.Module,
    *,
    tokenizer_path: str | os.PathLike | None,
    meta: dict | None = None,
) -> Path:
    """Write `model` to `directory`, replacing what was there.

    `tokenizer_path` is copied in as tokenizer.json; `meta` (JSON) is stored in config.json
    for the caller (run id, stage, metrics). Returns the directory.
    """
    directory = Path(directory)
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves as its model
    info = {
        "format": FORMAT,
        "version": 1,
        "arch": arch_of(model),
        "config": asdict(model.config),
        "tokenizer": TOKENIZER_FILE if tokenizer_path else None,
        "meta": meta or {},
    }
    lora = settings_dict(model)
    if lora is not None:  # a LoRA run's checkpoint: the loader adds the same adapters first
        info["lora"] = lora
    text = json.dumps(info, indent=2)  # not JSON-serializable: fail before writing anything
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is shared with the web app
        weights = {k: v.detach().cpu().contiguous() for k, v in stored_weights(model).items()}
        save_file(weights, tmp / MODEL_FILE, metadata={"format": FORMAT})
        (tmp / CONFIG_FILE).write_text(text)
        if tokenizer_path:
            shutil.copyfile(tokenizer_path, tmp / TOKENIZER_FILE)
        _swap_into_place(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _swap_into_place(tmp: Path, directory: Path) -> None:
    if not directory.exists():
        os.rename(tmp, directory)
        return
    old = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(directory, old)
    os.rename(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def read_config(directory: str | os.PathLike) -> dict:
    """config.json of a model directory, checked to be ours; `tokenizer_path` added (absolute,
    or None)."""
    directory = Path(directory)
    try:
        info = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{directory} is not a model checkpoint: {exc}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ValueError(f"{directory / CONFIG_FILE} is not a {FORMAT} config")
    tokenizer = info.get("tokenizer")
    info["tokenizer_path"] = str((directory / tokenizer).resolve()) if tokenizer else None
    return info


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu"):
    """(model, info) from a directory written by `save_model`; `info` is its config.json with
    `tokenizer_path` resolved. Weights that do not fit the config are a ValueError. A LoRA run's
    checkpoint loads with its adapters (`training.ml.lora.merge_lora` makes it plain)."""
    directory = Path(directory)
    info = read_config(directory)
    model = build_model(info.get("arch", DEFAULT_ARCH), info["config"])
    if info.get("lora"):
        add_lora(model, LoraSettings(**info["lora"]))
    try:
        weights = load_file(directory / MODEL_FILE)
    except Exception as exc:  # OSError, or safetensors' own error on a damaged file
        raise ValueError(f"cannot read {directory / MODEL_FILE}: {exc}") from None
    expected = {k: v.shape for k, v in stored_weights(model).items()}
    problems = [f"missing {k}" for k in expected.keys() - weights.keys()]
    problems += [f"unexpected {k}" for k in weights.keys() - expected.keys()]
    problems += [
        f"{k}: weights {tuple(weights[k].shape)} vs config {tuple(shape)}"
        for k, shape in expected.items()
        if k in weights and weights[k].shape != shape
    ]
    if problems:
        shown = "; ".join(sorted(problems)[:5]) + (" ..." if len(problems) > 5 else "")
        raise ValueError(f"checkpoint {directory}: weights do not match config.json: {shown}")
    model.load_state_dict(weights, strict=False)  # a tied head follows its embedding
    return model.to(device), info


def load_tokenizer(directory: str | os.PathLike) -> ChatTokenizer:
    """The tokenizer stored with a model directory."""
    path = read_config(directory)["tokenizer_path"]
    if path is None:
        raise ValueError(f"checkpoint {directory} was saved without a tokenizer")
    return ChatTokenizer.load(path)


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
