"""Hand a model back to the tools teams use: a Hugging Face directory that
`transformers.AutoModelForCausalLM.from_pretrained` loads and generates with as it is (weights,
config, generation config, tokenizer and chat template), or a GGUF file for llama.cpp-based
tools (llama architecture, F16 or F32).

Generation stops at the token that ends an assistant turn (`tokenizer.end_id`), so that is the
exported eos: a model fine-tuned here ends its replies the way it was taught to.
"""

import json
import os
from pathlib import Path

from torch import nn

from training.ml.architectures import arch_of
from training.ml.gguf_export import write_gguf
from training.ml.hf_models import hf_config_for, save_hf_model
from training.ml.tokenizer import ChatTokenizer
from training.ml.tokenizer_files import gguf_vocab_fields, tokenizer_json

GGUF_DTYPES = ("f16", "f32")


def _special_ids(tokenizer: ChatTokenizer) -> dict:
    return {"bos_id": tokenizer.bos_id, "eos_id": tokenizer.end_id, "pad_id": tokenizer.pad_id}


def _language_model(model: nn.Module) -> nn.Module:
    if model.config.scalar_head:
        raise ValueError("a model with a scalar head (a reward or value model) is not a language "
                         "model to export; export the SFT model or a policy")  # fmt: skip
    return model


def save_hf_tokenizer(tokenizer: ChatTokenizer, directory: str | os.PathLike) -> None:
    """Write tokenizer.json and tokenizer_config.json (with the chat template) that
    `transformers.AutoTokenizer.from_pretrained(directory)` loads to encode as `tokenizer` does."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": tokenizer.chat_format.template,
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token or tokenizer.eos_token,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1_000_000_000,
    }
    files = {
        "tokenizer.json": tokenizer_json(tokenizer.bpe_vocab()),
        "tokenizer_config.json": config,
    }
    for name, data in files.items():
        (directory / name).write_text(json.dumps(data, ensure_ascii=False, indent=1))


def gguf_tokenizer_fields(tokenizer: ChatTokenizer) -> dict:
    """The GGUF tokenizer fields (`tokenizer.ggml.*`, `tokenizer.chat_template`), plain
    Python values under their key names, for the GGUF writer."""
    vocab = tokenizer.bpe_vocab()
    if vocab.normalizer != vocab.pre.normalizer:
        raise ValueError(
            f"a GGUF cannot say that this {vocab.pre.kind} tokenizer normalizes text "
            f"({vocab.normalizer}): llama.cpp would tokenize differently"
        )
    return {
        **gguf_vocab_fields(vocab, tokenizer.vocab_size),
        "tokenizer.ggml.bos_token_id": tokenizer.bos_id,
        "tokenizer.ggml.eos_token_id": tokenizer.eot_id,
        "tokenizer.ggml.padding_token_id": tokenizer.pad_id,
        # the chat templates write the bos token themselves
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": tokenizer.chat_format.template,
    }


def export_huggingface(model: nn.Module, tokenizer: ChatTokenizer, directory) -> Path:
    """Write a Hugging Face model directory; returns it."""
    directory = Path(directory)
    save_hf_model(_language_model(model), directory, **_special_ids(tokenizer))
    save_hf_tokenizer(tokenizer, directory)
    return directory


def export_gguf(model: nn.Module, tokenizer: ChatTokenizer, path, *, dtype: str = "f16") -> Path:
    """Write a GGUF file of the llama architecture; returns its path."""
    if dtype not in GGUF_DTYPES:
        raise ValueError(f"GGUF export writes {' or '.join(GGUF_DTYPES)}, not {dtype!r}")
    if arch_of(model) != "llama":
        raise ValueError(f"GGUF export is for the Llama family; this model is {arch_of(model)}")
    model = _language_model(model)
    hf_config = hf_config_for(model, **_special_ids(tokenizer))
    tensors = {name: t.detach().float().cpu() for name, t in model.state_dict().items()}
    write_gguf(Path(path), hf_config=hf_config, tensors=tensors,
               tokenizer_fields=gguf_tokenizer_fields(tokenizer), dtype=dtype)  # fmt: skip
    return Path(path)
