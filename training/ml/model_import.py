"""Bring a model made elsewhere into the loop: a Hugging Face directory (`config.json`,
`*.safetensors`, `tokenizer.json`) or a GGUF file becomes our model with its own tokenizer and
chat format. Everything is read and checked before the caller writes anything, so a bad file
never leaves a half-registered model.

    imported = import_checkpoint("models/SmolLM2-135M-Instruct")      # or a .gguf file
    save_model(out, imported.model, tokenizer_path=...)
"""

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from training.ml.gguf_import import read_gguf
from training.ml.hf_models import model_from_hf, read_hf_directory
from training.ml.tokenizer import ChatTokenizer

GGUF_MAGIC = b"GGUF"


@dataclass
class ImportedModel:
    model: nn.Module
    tokenizer: ChatTokenizer
    source: dict  # where it came from, for the model version's record


def import_checkpoint(path: str | Path) -> ImportedModel:
    """Our model and tokenizer from a Hugging Face directory or a GGUF file; ValueError with
    the reason for anything we cannot read exactly."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if path.is_dir():
        hf_config, tensors = read_hf_directory(path)
        tokenizer = ChatTokenizer.from_hf_files(
            _read_json(path / "tokenizer.json", "the tokenizer"),
            _read_json(path / "tokenizer_config.json", None),
        )
        source_format = "huggingface"
    elif _is_gguf(path):
        checkpoint = read_gguf(path)
        hf_config, tensors = checkpoint.hf_config, checkpoint.tensors
        tokenizer = ChatTokenizer.from_gguf_fields(checkpoint.tokenizer_fields)
        source_format = "gguf"
    else:
        raise ValueError(
            f"{path} is neither a Hugging Face model directory nor a GGUF file"
        )
    model = model_from_hf(hf_config, tensors)
    del tensors
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} ids but the model embeds only "
            f"{model.config.vocab_size}: they do not belong together"
        )
    source = {
        "format": source_format,
        "path": str(path.resolve()),
        "model_type": hf_config.get("model_type"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "chat_format": tokenizer.chat_format.kind,
    }
    return ImportedModel(model=model, tokenizer=tokenizer, source=source)


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == GGUF_MAGIC


def _read_json(path: Path, required: str | None) -> dict | None:
    """A JSON file of a model directory; None when it is optional and absent."""
    if not path.exists():
        if required:
            raise ValueError(f"{path.parent} has no {path.name} ({required} is needed)")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
