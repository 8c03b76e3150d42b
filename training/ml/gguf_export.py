"""Write a Llama-family model as a llama-architecture GGUF file that llama.cpp-based tools run.

`write_gguf(path, hf_config=..., tensors=..., tokenizer_fields=..., dtype="f16")` takes what
`read_gguf` returns (or a Hugging Face config.json dict and state dict of a llama / mistral /
qwen2 model) and writes it with gguf's `GGUFWriter`, the way llama.cpp's convert_hf_to_gguf.py
does for LlamaForCausalLM:
- the `llama.*` hyperparameters, `general.file_type`, the tokenizer fields and chat template;
- matrices in F16 or F32, 1-D tensors (norms, biases) always F32;
- q_proj/k_proj rows permuted for llama.cpp's interleaved rotary embedding (`permute_rope`),
  biases included: that is what lets a qwen2 model run as a llama with q/k/v biases;
- `output.weight` left out when the embeddings are tied; Llama-3 rope scaling as `rope_freqs`.
Everything is checked before the file is opened (only a value beyond float16's range shows up
while writing). Tensors are converted one at a time as they are written, and the file appears
under its name only when complete (a temporary name, then rename).
"""

import os
import tempfile
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf import GGUFWriter, Keys, LlamaFileType

from training.ml.gguf_import import (
    ROPE_FREQS,
    TOKENIZER_FIELDS,
    TOKENIZER_MODEL,
    gguf_names,
    head_dim_of,
    llama3_rope_factors,
    llama_tensor_shapes,
    permute_rope,
)

MODEL_TYPES = ("llama", "mistral", "qwen2")  # one architecture in llama.cpp's terms
FILE_TYPES = {"f16": LlamaFileType.MOSTLY_F16, "f32": LlamaFileType.ALL_F32}
GGUF_ROPE_SCALING = ("linear", "yarn")  # rope_type values llama.cpp reads from metadata


def write_gguf(
    path: str | os.PathLike,
    *,
    hf_config: dict,
    tensors: dict[str, torch.Tensor],
    tokenizer_fields: dict,
    dtype: str = "f16",
    name: str | None = None,
) -> None:
    """Write `tensors` (Hugging Face LlamaForCausalLM names) as a llama GGUF at `path`;
    `name` (general.name) defaults to the file's stem."""
    path = Path(path)
    theta, scaling = _rope(hf_config)
    _check(hf_config, tensors, tokenizer_fields, dtype, scaling)
    fields = _tokenizer_metadata(hf_config, tokenizer_fields)
    shapes = llama_tensor_shapes(hf_config)
    names = gguf_names(shapes, "llama", hf_config["num_hidden_layers"])
    extra = {}
    if scaling.get("rope_type") == "llama3":
        extra[ROPE_FREQS] = llama3_rope_factors(scaling, head_dim_of(hf_config), theta)

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    writer = GGUFWriter(tmp, "llama")
    try:
        _add_metadata(writer, hf_config, theta, scaling, dtype, name or path.stem)
        for key, value in fields.items():
            vtype, item_type = TOKENIZER_FIELDS[key]
            writer.add_key_value(key, value, vtype, sub_type=item_type)
        # Tensor infos first, then the data one tensor at a time: never a second copy in memory.
        for hf_name, shape in shapes.items():
            item = np.dtype(np.float16 if dtype == "f16" and len(shape) > 1 else np.float32)
            writer.add_tensor_info(names[hf_name], shape, item, int(np.prod(shape)) * item.itemsize)
        for gguf_name, t in extra.items():
            writer.add_tensor_info(gguf_name, t.shape, np.dtype(np.float32), t.numel() * 4)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for hf_name in shapes:
            writer.write_tensor_data(_array(hf_name, tensors[hf_name], hf_config, dtype))
        for t in extra.values():
            writer.write_tensor_data(t.numpy())
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        os.unlink(tmp)
        raise


def _check(hf_config: dict, tensors: dict, fields: dict, dtype: str, scaling: dict) -> None:
    """Every way the input can be wrong, as one ValueError."""
    if dtype not in FILE_TYPES:
        raise ValueError(
            f"GGUF dtype {dtype!r} is not supported (choose from {', '.join(FILE_TYPES)})"
        )
    if hf_config.get("model_type") not in MODEL_TYPES:
        raise ValueError(
            f"model_type {hf_config.get('model_type')!r} cannot be written as a llama "
            f"GGUF (supported: {', '.join(MODEL_TYPES)})"
        )
    if scaling.get("rope_type") not in (None, "llama3", *GGUF_ROPE_SCALING):
        raise ValueError(f"rope scaling {scaling['rope_type']!r} cannot be written to a llama GGUF")
    _check_tokenizer(fields, hf_config["vocab_size"])
    expected = llama_tensor_shapes(hf_config)
    given = dict(tensors)
    if hf_config.get("tie_word_embeddings") and "lm_head.weight" in given:
        # A tied head is the embedding itself; a different one cannot be written as tied.
        if not torch.equal(given.pop("lm_head.weight"), given.get("model.embed_tokens.weight")):
            raise ValueError(
                "tie_word_embeddings is set but lm_head.weight differs from "
                "model.embed_tokens.weight"
            )
    problems = [f"missing {k}" for k in expected if k not in given]
    problems += [f"unexpected {k}" for k in given if k not in expected]
    problems += [
        f"{k} is {tuple(given[k].shape)}, the config implies {shape}"
        for k, shape in expected.items()
        if k in given and tuple(given[k].shape) != shape
    ]
    if problems:
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ValueError(f"tensors do not match the config: {', '.join(problems[:5])}{more}")


def _check_tokenizer(fields: dict, vocab_size: int) -> None:
    unknown = sorted(fields.keys() - TOKENIZER_FIELDS.keys())
    if unknown:
        raise ValueError(f"unknown tokenizer fields: {', '.join(unknown)}")
    model = fields.get(Keys.Tokenizer.MODEL)
    if model != TOKENIZER_MODEL:
        raise ValueError(f"tokenizer model {model!r} is not supported (only {TOKENIZER_MODEL!r})")
    for key in (Keys.Tokenizer.LIST, Keys.Tokenizer.MERGES):
        if not fields.get(key):
            raise ValueError(f"tokenizer field {key} is missing or empty")
    n_tokens = len(fields[Keys.Tokenizer.LIST])
    if n_tokens > vocab_size:
        raise ValueError(f"the tokenizer has {n_tokens} tokens, the model only {vocab_size} rows")
    types = fields.get(Keys.Tokenizer.TOKEN_TYPE)
    if types is not None and len(types) != n_tokens:
        raise ValueError(f"{len(types)} token types for {n_tokens} tokens")


def _rope(c: dict) -> tuple[float, dict]:
    """rope_theta and the rope scaling (empty when there is none), from config.json's classic
    keys or transformers 5's `rope_parameters`, which holds both."""
    params = c.get("rope_parameters") or {}
    theta = c.get("rope_theta") or params.get("rope_theta", 10000.0)
    scaling = {k: v for k, v in (c.get("rope_scaling") or params).items() if k != "rope_theta"}
    rope_type = scaling.pop("type", None) or scaling.get("rope_type")  # older configs: "type"
    return theta, {**scaling, "rope_type": rope_type} if rope_type not in (None, "default") else {}


def _add_metadata(
    writer: GGUFWriter, c: dict, theta: float, scaling: dict, dtype: str, name: str
) -> None:
    heads, head_dim = c["num_attention_heads"], head_dim_of(c)
    writer.add_type("model")
    writer.add_name(name)
    writer.add_vocab_size(c["vocab_size"])
    writer.add_context_length(c["max_position_embeddings"])
    writer.add_embedding_length(c["hidden_size"])
    writer.add_block_count(c["num_hidden_layers"])
    writer.add_feed_forward_length(c["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(c.get("num_key_value_heads") or heads)
    writer.add_rope_freq_base(theta)
    writer.add_layer_norm_rms_eps(c.get("rms_norm_eps", 1e-6))  # LlamaConfig's default
    writer.add_rope_dimension_count(head_dim)
    if head_dim != c["hidden_size"] // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if scaling.get("rope_type") in GGUF_ROPE_SCALING:
        writer.add_rope_scaling_type(gguf.RopeScalingType(scaling["rope_type"]))
        writer.add_rope_scaling_factor(scaling["factor"])
        if "original_max_position_embeddings" in scaling:
            writer.add_rope_scaling_orig_ctx_len(scaling["original_max_position_embeddings"])
    writer.add_file_type(FILE_TYPES[dtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _tokenizer_metadata(c: dict, fields: dict) -> dict:
    """The tokenizer fields as written: ids the tokenizer lacks come from the config, and the
    token list is padded to the embedding's rows with `[PADn]` tokens as llama.cpp's converter
    does (llama.cpp sizes its vocabulary by the token list)."""
    ids = {
        Keys.Tokenizer.BOS_ID: c.get("bos_token_id"),
        Keys.Tokenizer.EOS_ID: c.get("eos_token_id"),
        Keys.Tokenizer.PAD_ID: c.get("pad_token_id"),
    }
    out = {k: v for k, v in ids.items() if isinstance(v, int)} | fields
    pad = range(len(out[Keys.Tokenizer.LIST]), c["vocab_size"])
    if pad:
        out[Keys.Tokenizer.LIST] = [*out[Keys.Tokenizer.LIST], *(f"[PAD{i}]" for i in pad)]
        if Keys.Tokenizer.TOKEN_TYPE in out:
            unused = int(gguf.TokenType.UNUSED)
            out[Keys.Tokenizer.TOKEN_TYPE] = [*out[Keys.Tokenizer.TOKEN_TYPE], *[unused] * len(pad)]
    return out


def _array(hf_name: str, t: torch.Tensor, c: dict, dtype: str) -> np.ndarray:
    """One tensor as the contiguous numpy array the file holds."""
    t = t.detach().to("cpu", torch.float32)
    kind = hf_name.split(".")[-2]
    if kind in ("q_proj", "k_proj"):
        heads = c["num_attention_heads"]
        t = permute_rope(t, heads if kind == "q_proj" else c.get("num_key_value_heads") or heads)
    if dtype == "f16" and t.dim() > 1:
        if t.abs().amax() > torch.finfo(torch.float16).max:  # checked in float32: far faster
            raise ValueError(f"{hf_name} exceeds float16's range: write the GGUF as f32")
        t = t.to(torch.float16)
    return t.contiguous().numpy()
