"""A model's files: safetensors weights plus JSON, written atomically, read without unpickling.
What a model version, an export or an import points at; a train loop's checkpoints (the same
model files plus the optimizer's state, to resume from) are `training.ml.resume`.

`save_model` writes a model directory:

    model.safetensors   the weights (a tied output head is stored once, as the embedding)
    config.json         {"format", "version", "arch", "config", "tokenizer", "meta"}, and
                        "lora" (`LoraSettings`) for a model with unmerged LoRA adapters
    tokenizer.json      a copy of the tokenizer, so the directory is self-contained

A reward-model ensemble (`training.ml.ensemble_model.RewardEnsemble`) is one directory too, with
"members" (their number) in config.json beside the members' "arch" and "config", which a
version's page reads; `load_model` gives the ensemble back. LoRA members over one base
(`RewardEnsemble.shared_base`) store that base once:

    model.safetensors   the frozen base every member shares
    member-0.safetensors, member-1.safetensors, ...
                        each member's LoRA adapters and scalar head (`lora.lora_trained`)
    config.json         "members" and "lora", the adapters' settings

and load sharing it again. Other members (full fine-tuning, or adapters over different bases)
are model directories `member-0/`, `member-1/`, ... (without tokenizer copies) in place of
model.safetensors; so was every ensemble saved before bases were shared, and it loads as before.

A train loop's checkpoint of a model with LoRA adapters is `trained_only`: model.safetensors holds
the adapters and the scalar head alone (config.json says "trained_only"), since the frozen base
is the run's input model, which a resumed run builds again; `load_weights` fills them into that
model. For a 7B base that is megabytes per checkpoint instead of gigabytes, and a resume that
never holds a second copy of the model.

It goes to a temporary directory beside the target, which then replaces the target with two
renames, so a crash never leaves a half-written model under the real name (at worst the
previous one under `.<name>.old-*`).

Nothing a user could supply is ever passed to `pickle` or `torch.load`.
"""

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from training.ml.architectures import DEFAULT_ARCH, arch_of, build_model
from training.ml.ensemble_model import RewardEnsemble
from training.ml.lora import (
    LoraSettings,
    add_lora,
    frozen_base_copy,
    has_lora,
    lora_trained,
    settings_dict,
)
from training.ml.tokenizer import ChatTokenizer

FORMAT = "rlhf-loop-gpt"
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
    trained_only: bool = False,
) -> Path:
    """Write `model` to `directory`, replacing what was there.

    `tokenizer_path` is copied in as tokenizer.json; `meta` (JSON) is stored in config.json
    for the caller (run id, stage, metrics). With `trained_only`, a model with LoRA adapters
    stores only what LoRA trains (the module docstring). Returns the directory.
    """
    directory = Path(directory)
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves as its model
    members = list(model.members) if isinstance(model, RewardEnsemble) else []
    shared = bool(members) and model.shared_base
    described = members[0] if members else model
    info = {
        "format": FORMAT,
        "version": 1,
        "arch": arch_of(described),
        "config": asdict(described.config),
        "tokenizer": TOKENIZER_FILE if tokenizer_path else None,
        "meta": meta or {},
    }
    if members:
        info["members"] = len(members)
    lora = settings_dict(described) if shared or not members else None
    if lora is not None:  # LoRA adapters unmerged: the loader adds the same adapters first
        info["lora"] = lora
    trained_only = trained_only and lora is not None and not members
    if trained_only:
        info["trained_only"] = True
    text = json.dumps(info, indent=2)  # not JSON-serializable: fail before writing anything
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is shared with the web app
        for i, member in enumerate([] if shared else members):
            save_model(tmp / member_dir(i), member, tokenizer_path=None)
        for name, weights in weight_files(model, trained_only=trained_only).items():
            weights = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
            save_file(weights, tmp / name, metadata={"format": FORMAT})
        (tmp / CONFIG_FILE).write_text(text)
        if tokenizer_path:
            shutil.copyfile(tokenizer_path, tmp / TOKENIZER_FILE)
        _swap_into_place(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def weight_files(
    model: nn.Module, *, trained_only: bool = False
) -> dict[str, dict[str, torch.Tensor]]:
    """The safetensors files of `model`'s directory by name: a model's weights (its adapters and
    head alone when `trained_only`), or a shared-base ensemble's base and each member's adapters
    and head; none for an ensemble of member directories."""
    if not isinstance(model, RewardEnsemble):
        weights = stored_weights(model)
        kept = lora_trained if trained_only else lambda key: True
        return {MODEL_FILE: {k: v for k, v in weights.items() if kept(k)}}
    if not model.shared_base:
        return {}
    base = stored_weights(model.members[0])
    files = {MODEL_FILE: {k: v for k, v in base.items() if not lora_trained(k)}}
    for i, member in enumerate(model.members):
        own = stored_weights(member)
        files[member_file(i)] = {k: v for k, v in own.items() if lora_trained(k)}
    return files


def member_dir(i: int) -> str:
    """The directory of an ensemble's member `i`, inside the ensemble's."""
    return f"member-{i}"


def member_file(i: int) -> str:
    """The adapters and head of a shared-base ensemble's member `i`, inside its directory."""
    return f"member-{i}.safetensors"


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
    checkpoint loads with its adapters (`training.ml.lora.merge_lora` makes it plain); an
    ensemble's directory loads as a `RewardEnsemble` of its members, LoRA members sharing the
    one base stored."""
    directory = Path(directory)
    info = read_config(directory)
    if info.get("trained_only"):
        raise ValueError(f"{directory} is a training checkpoint of LoRA adapters alone, without "
                         "the base model they adapt: it cannot be loaded as a model")
    if "members" in info:
        n = info["members"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{directory / CONFIG_FILE}: members must be a count, got {n!r}")
        if not info.get("lora"):
            members = [load_model(directory / member_dir(i), device)[0] for i in range(n)]
            return RewardEnsemble(members), info
        base = _built(info)  # a shared base: member 0 is read into it, the others share it
        _read_weights(directory, MODEL_FILE, base, lambda k: not lora_trained(k))
        members = [base] + [frozen_base_copy(base) for _ in range(1, n)]
        for i, member in enumerate(members):
            _read_weights(directory, member_file(i), member, lora_trained)
        return RewardEnsemble(members).to(device), info
    model = _built(info)
    _read_weights(directory, MODEL_FILE, model)
    return model.to(device), info


def load_weights(directory: str | os.PathLike, model: nn.Module) -> None:
    """Copy the weights of a model directory into `model` in place, the model a train loop built
    as for a fresh run: all of them, or of a `trained_only` directory the adapters and head over
    the base `model` already holds. Weights or adapters that do not fit are a ValueError."""
    directory = Path(directory)
    info = read_config(directory)
    if (info.get("lora") is not None) != has_lora(model):
        state = "with" if info.get("lora") else "without"
        raise ValueError(f"checkpoint {directory} holds a model {state} LoRA adapters; this "
                         "model is the other way")
    if info.get("trained_only"):
        _read_weights(directory, MODEL_FILE, model, lora_trained)
    else:
        _read_weights(directory, MODEL_FILE, model)


def _built(info: dict) -> nn.Module:
    """An untrained model of a config.json, with its LoRA adapters when it names them."""
    model = build_model(info.get("arch", DEFAULT_ARCH), info["config"])
    if info.get("lora"):
        add_lora(model, LoraSettings(**info["lora"]))
    return model


def _read_weights(directory: Path, name: str, model: nn.Module, part=lambda key: True) -> None:
    """Load the file `name` of `directory` into `model`: exactly its stored weights whose names
    `part` accepts (all by default), or a ValueError saying what does not fit the config."""
    try:
        weights = load_file(directory / name)
    except Exception as exc:  # OSError, or safetensors' own error on a damaged file
        raise ValueError(f"cannot read {directory / name}: {exc}") from None
    expected = {k: v.shape for k, v in stored_weights(model).items() if part(k)}
    problems = [f"missing {k}" for k in expected.keys() - weights.keys()]
    problems += [f"unexpected {k}" for k in weights.keys() - expected.keys()]
    problems += [
        f"{k}: weights {tuple(weights[k].shape)} vs config {tuple(shape)}"
        for k, shape in expected.items()
        if k in weights and weights[k].shape != shape
    ]
    if problems:
        shown = "; ".join(sorted(problems)[:5]) + (" ..." if len(problems) > 5 else "")
        raise ValueError(f"checkpoint {directory}: weights do not match config.json ({name}): "
                         f"{shown}")
    model.load_state_dict(weights, strict=False)  # a tied head follows its embedding


def load_tokenizer(directory: str | os.PathLike) -> ChatTokenizer:
    """The tokenizer stored with a model directory."""
    path = read_config(directory)["tokenizer_path"]
    if path is None:
        raise ValueError(f"checkpoint {directory} was saved without a tokenizer")
    return ChatTokenizer.load(path)
