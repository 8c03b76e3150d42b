"""Read a llama-family GGUF file (llama.cpp's format) as Hugging Face LlamaForCausalLM weights.

`read_gguf(path)` returns what the rest of `training/ml` reads from a Hugging Face directory:
- `hf_config`: a config.json dict (model_type "llama", or "qwen2" for that architecture),
- `tensors`: float32 weights under LlamaForCausalLM names, dequantized by `gguf.quants`
  (F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q4_K/Q6_K/...: whatever `gguf` can dequantize),
- `tokenizer_fields`: the `tokenizer.*` values under their GGUF names as plain Python values,
  for `ChatTokenizer.from_gguf_fields`.

What differs from a Hugging Face checkpoint:
- Names: `blk.N.attn_q.weight` is `model.layers.N.self_attn.q_proj.weight`; the mapping is
  gguf's own tensor name map, read backwards.
- Shapes: GGUF lists dimensions fastest first (ggml's `ne`); the reader hands data over in
  numpy (= torch) order, only header shapes need reversing.
- llama.cpp's converter permutes the rows of q_proj/k_proj (weights and biases) of the llama
  architecture to suit its interleaved rotary embedding; they are permuted back here as
  transformers does. qwen2 keeps Hugging Face's rotate-half layout and is left alone.
- Llama-3.1-style rope scaling is stored as a `rope_freqs` tensor; it is read back into
  `rope_scaling` when it fits Llama 3's published parameters (only the factor varies).

Every check (architecture, tokenizer model, quant types, names and shapes) runs on the header
before one tensor is dequantized, so bad input fails fast with one ValueError. Tensors are
dequantized from the memory-mapped file a few rows at a time straight into the float32 result,
so the peak is little more than the result (SmolLM2-135M: 540 MB of tensors, ~930 MB RSS in all,
~230 MB of it torch itself).
"""

import functools
import math
import os
from dataclasses import dataclass

import gguf
import numpy as np
import torch
from gguf import GGUFReader, GGUFValueType, Keys

ARCHITECTURES = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}
ROPE_FREQS = "rope_freqs.weight"
# Llama 3.1/3.2's rope scaling apart from its factor: the only llama3 setting a file can hold.
LLAMA3_ROPE = {
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}

# The tokenizer fields read and written, with their GGUF value types (for arrays: the item type).
TOKENIZER_FIELDS: dict[str, tuple[GGUFValueType, GGUFValueType | None]] = {
    Keys.Tokenizer.MODEL: (GGUFValueType.STRING, None),
    Keys.Tokenizer.PRE: (GGUFValueType.STRING, None),
    Keys.Tokenizer.LIST: (GGUFValueType.ARRAY, GGUFValueType.STRING),
    Keys.Tokenizer.MERGES: (GGUFValueType.ARRAY, GGUFValueType.STRING),
    Keys.Tokenizer.TOKEN_TYPE: (GGUFValueType.ARRAY, GGUFValueType.INT32),
    Keys.Tokenizer.BOS_ID: (GGUFValueType.UINT32, None),
    Keys.Tokenizer.EOS_ID: (GGUFValueType.UINT32, None),
    Keys.Tokenizer.PAD_ID: (GGUFValueType.UINT32, None),
    Keys.Tokenizer.UNK_ID: (GGUFValueType.UINT32, None),
    Keys.Tokenizer.EOT_ID: (GGUFValueType.UINT32, None),
    Keys.Tokenizer.EOM_ID: (GGUFValueType.UINT32, None),
    Keys.Tokenizer.ADD_BOS: (GGUFValueType.BOOL, None),
    Keys.Tokenizer.ADD_EOS: (GGUFValueType.BOOL, None),
    Keys.Tokenizer.CHAT_TEMPLATE: (GGUFValueType.STRING, None),
}
DEQUANTIZE_CHUNK = 1 << 20  # elements dequantized at once: 4 MB of float32
TOKENIZER_MODEL = "gpt2"  # llama.cpp's name for byte-level BPE, the only kind we tokenize


@dataclass
class GGUFCheckpoint:
    hf_config: dict
    tensors: dict[str, torch.Tensor]
    tokenizer_fields: dict


def read_gguf(path: str | os.PathLike) -> GGUFCheckpoint:
    """The config, float32 tensors (Hugging Face names) and tokenizer fields of a GGUF file."""
    fields, by_name = _read_header(path)
    arch = fields.get(Keys.General.ARCHITECTURE)
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"{path}: GGUF architecture {arch!r} is not supported "
            f"(supported: {', '.join(ARCHITECTURES)})"
        )
    tokenizer_fields = {key: fields[key] for key in TOKENIZER_FIELDS if key in fields}
    model = tokenizer_fields.get(Keys.Tokenizer.MODEL)
    if model != TOKENIZER_MODEL:
        raise ValueError(
            f"{path}: tokenizer model {model!r} is not supported (only "
            f"{TOKENIZER_MODEL!r}, byte-level BPE)"
        )
    hf_config = _hf_config(fields, arch, by_name, str(path))
    named = _check_tensors(by_name, hf_config, arch, str(path))
    heads = {"q_proj": hf_config["num_attention_heads"], "k_proj": hf_config["num_key_value_heads"]}
    tensors = {}
    for hf_name, t in named.items():
        w = _dequantize(t)  # (out, in) or (n,), float32
        n_head = heads.get(hf_name.split(".")[-2]) if arch == "llama" else None
        tensors[hf_name] = w if n_head is None else unpermute_rope(w, n_head)
    return GGUFCheckpoint(hf_config, tensors, tokenizer_fields)


def llama_tensor_shapes(hf_config: dict) -> dict[str, tuple[int, ...]]:
    """The LlamaForCausalLM tensors a config.json dict implies, with their torch shapes, in
    checkpoint order (`lm_head.weight` only when the embeddings are not tied)."""
    c = hf_config
    hidden, heads, ffn = c["hidden_size"], c["num_attention_heads"], c["intermediate_size"]
    kv_heads = c.get("num_key_value_heads") or heads
    q_dim, kv_dim = heads * head_dim_of(c), kv_heads * head_dim_of(c)
    bias = c.get("model_type") == "qwen2" or c.get("attention_bias", False)
    shapes = {"model.embed_tokens.weight": (c["vocab_size"], hidden)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (q_dim, hidden),
            p + "self_attn.k_proj.weight": (kv_dim, hidden),
            p + "self_attn.v_proj.weight": (kv_dim, hidden),
            p + "self_attn.o_proj.weight": (hidden, q_dim),
            p + "post_attention_layernorm.weight": (hidden,),
            p + "mlp.gate_proj.weight": (ffn, hidden),
            p + "mlp.up_proj.weight": (ffn, hidden),
            p + "mlp.down_proj.weight": (hidden, ffn),
        }
        if bias:
            shapes |= {
                p + "self_attn.q_proj.bias": (q_dim,),
                p + "self_attn.k_proj.bias": (kv_dim,),
                p + "self_attn.v_proj.bias": (kv_dim,),
            }
    shapes["model.norm.weight"] = (hidden,)
    if not c.get("tie_word_embeddings", False):
        shapes["lm_head.weight"] = (c["vocab_size"], hidden)
    return shapes


def head_dim_of(hf_config: dict) -> int:
    return hf_config.get("head_dim") or hf_config["hidden_size"] // hf_config["num_attention_heads"]


def gguf_names(hf_names, arch: str, n_layer: int) -> dict[str, str]:
    """Hugging Face name -> GGUF name, by gguf's own tensor name map."""
    name_map = gguf.get_tensor_name_map(ARCHITECTURES[arch], n_layer)
    return {name: name_map.get_name(name, try_suffixes=(".weight", ".bias")) for name in hf_names}


def permute_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Rotate-half rows (Hugging Face) -> interleaved rows (llama.cpp), per head: the
    `LlamaModel.permute` of llama.cpp's convert_hf_to_gguf.py."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .transpose(1, 2)
        .reshape(w.shape)
    )


def unpermute_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """The inverse of `permute_rope`, as transformers' GGUF loader does it."""
    return (
        w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
        .transpose(1, 2)
        .reshape(w.shape)
    )


def llama3_rope_factors(scaling: dict, head_dim: int, theta: float) -> torch.Tensor:
    """The per-frequency divisors llama.cpp stores as `rope_freqs` for Llama 3's `rope_scaling`
    (convert_hf_to_gguf.py's LlamaModel, with its defaults)."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    factor = scaling.get("factor", 8.0)
    low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
    old_context = scaling.get("original_max_position_embeddings", 8192)
    wavelen = 2 * math.pi / freqs  # (head_dim/2,)
    smooth = (old_context / wavelen - low) / (high - low)
    factors = 1 / ((1 - smooth) / factor + smooth)
    factors = torch.where(wavelen < old_context / high, 1.0, factors)
    return torch.where(wavelen > old_context / low, factor, factors).to(torch.float32)


def _read_header(path) -> tuple[dict, dict]:
    """The metadata as plain values, and the tensors (memory-mapped) by GGUF name. The reader
    itself is let go: it keeps a numpy array per token string, ~160 MB for a 49k vocabulary."""
    try:
        reader = GGUFReader(path)
    except (OSError, ValueError, IndexError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable GGUF file ({exc})") from None
    fields = {key: field.contents() for key, field in reader.fields.items()}
    return fields, {t.name: t for t in reader.tensors}


def _hf_config(fields: dict, arch: str, by_name: dict, path: str) -> dict:
    """The config.json dict of a llama/qwen2 GGUF, from its metadata and tensor header."""

    def get(key: str, default=None):
        return fields.get(key.format(arch=arch), default)

    def need(key: str):
        if key.format(arch=arch) not in fields:
            raise ValueError(f"{path}: metadata {key.format(arch=arch)} is missing")
        return fields[key.format(arch=arch)]

    if "token_embd.weight" not in by_name:
        raise ValueError(f"{path}: missing required tensor token_embd.weight")
    vocab_size = _shape(by_name["token_embd.weight"])[0]  # the truth: Qwen pads past its tokens
    hidden = need(Keys.LLM.EMBEDDING_LENGTH)
    if get(Keys.LLM.VOCAB_SIZE, vocab_size) != vocab_size:
        raise ValueError(
            f"{path}: token_embd.weight has {vocab_size} rows but "
            f"{arch}.vocab_size is {get(Keys.LLM.VOCAB_SIZE)}"
        )
    heads = need(Keys.Attention.HEAD_COUNT)
    head_dim = get(Keys.Attention.KEY_LENGTH) or get(Keys.Rope.DIMENSION_COUNT) or hidden // heads
    for key in (Keys.Rope.DIMENSION_COUNT, Keys.Attention.VALUE_LENGTH):
        if get(key, head_dim) != head_dim:
            raise ValueError(
                f"{path}: {key.format(arch=arch)} = {get(key)} differs from the head "
                f"size {head_dim}: partial rotary / unequal heads are not supported"
            )
    tokens = Keys.Tokenizer
    config = {
        "model_type": arch,
        "architectures": ["Qwen2ForCausalLM" if arch == "qwen2" else "LlamaForCausalLM"],
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": need(Keys.LLM.FEED_FORWARD_LENGTH),
        "num_hidden_layers": need(Keys.LLM.BLOCK_COUNT),
        "num_attention_heads": heads,
        "num_key_value_heads": get(Keys.Attention.HEAD_COUNT_KV, heads),
        "max_position_embeddings": need(Keys.LLM.CONTEXT_LENGTH),
        "rope_theta": _f32(get(Keys.Rope.FREQ_BASE, 10000.0)),
        "rms_norm_eps": _f32(need(Keys.Attention.LAYERNORM_RMS_EPS)),
        "tie_word_embeddings": "output.weight" not in by_name,
        "hidden_act": "silu",
        "bos_token_id": fields.get(tokens.BOS_ID),
        "eos_token_id": fields.get(tokens.EOS_ID),
        "pad_token_id": fields.get(tokens.PAD_ID),
    }
    if arch == "llama":
        config["attention_bias"] = "blk.0.attn_q.bias" in by_name
    if head_dim != hidden // heads:
        config["head_dim"] = head_dim
    scaling = get(Keys.Rope.SCALING_TYPE, "none")
    if scaling != "none":
        config["rope_scaling"] = {
            "rope_type": scaling,
            "factor": _f32(need(Keys.Rope.SCALING_FACTOR)),
        }
        if get(Keys.Rope.SCALING_ORIG_CTX_LEN):
            config["rope_scaling"]["original_max_position_embeddings"] = get(
                Keys.Rope.SCALING_ORIG_CTX_LEN
            )
    if ROPE_FREQS in by_name:
        config["rope_scaling"] = _llama3_rope_scaling(by_name[ROPE_FREQS], config, path)
    return config


def _llama3_rope_scaling(t, config: dict, path: str) -> dict:
    """Llama 3's rope_scaling, recovered from the `rope_freqs` tensor llama.cpp stores instead."""
    if not _dequantizable(t.tensor_type) or t.n_elements != head_dim_of(config) // 2:
        raise ValueError(f"{path}: {ROPE_FREQS} does not fit the head size {head_dim_of(config)}")
    stored = _dequantize(t)  # (head_dim/2,)
    scaling = {"rope_type": "llama3", "factor": _f32(stored.max().item()), **LLAMA3_ROPE}
    computed = llama3_rope_factors(scaling, head_dim_of(config), config["rope_theta"])
    if not torch.allclose(computed, stored, rtol=1e-4):
        raise ValueError(f"{path}: {ROPE_FREQS} is not Llama 3's rope scaling: not supported")
    return scaling


def _check_tensors(by_name: dict, hf_config: dict, arch: str, path: str) -> dict:
    """Hugging Face name -> reader tensor, once every name, shape and type is known good."""
    expected = llama_tensor_shapes(hf_config)
    to_gguf = gguf_names(expected, arch, hf_config["num_hidden_layers"])
    present = by_name.keys() - {ROPE_FREQS}
    missing = sorted(g for g in to_gguf.values() if g not in present)
    extra = sorted(present - set(to_gguf.values()))
    wrong = [
        f"{g} is {_shape(by_name[g])}, the metadata implies {tuple(expected[h])}"
        for h, g in to_gguf.items()
        if g in by_name and _shape(by_name[g]) != expected[h]
    ]
    unreadable = [
        f"{t.name} ({t.tensor_type.name})"
        for t in by_name.values()
        if not _dequantizable(t.tensor_type)
    ]
    for problems, what in (
        (missing, "missing required tensors"),
        (extra, "unexpected tensors"),
        (wrong, "tensor shapes do not match the metadata"),
        (unreadable, "quant types gguf cannot dequantize"),
    ):
        if problems:
            more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise ValueError(f"{path}: {what}: {', '.join(problems[:5])}{more}")
    return {h: by_name[g] for h, g in to_gguf.items()}


def _shape(t) -> tuple[int, ...]:
    return tuple(int(n) for n in reversed(t.shape.tolist()))  # ggml's ne order -> torch order


@functools.cache
def _dequantizable(qtype: gguf.GGMLQuantizationType) -> bool:
    """Whether `gguf.quants.dequantize` handles `qtype`: asked of one zero block, since gguf
    keeps its table of quant types private."""
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    try:
        gguf.quants.dequantize(np.zeros((1, type_size), dtype=np.uint8), qtype)
    except NotImplementedError:
        return False
    return True


def _dequantize(t) -> torch.Tensor:
    """One tensor as float32, dequantized a block of rows at a time into the result so that
    gguf's intermediates stay small (the 135M model's embedding alone is 113 MB of float32)."""
    out = torch.empty(_shape(t), dtype=torch.float32)
    rows = out.numpy().reshape(-1, out.shape[-1])  # (rows, cols), a view of out
    data = t.data.reshape(rows.shape[0], -1)  # (rows, bytes or items per row)
    step = max(1, DEQUANTIZE_CHUNK // rows.shape[1])
    for start in range(0, rows.shape[0], step):
        chunk = gguf.quants.dequantize(data[start : start + step], t.tensor_type)
        rows[start : start + step] = chunk
    return out


def _f32(value: float) -> float:
    """A float32 from the file as the decimal it was written from (1e-05, not 9.9999997e-06)."""
    return float(str(np.float32(value)))
