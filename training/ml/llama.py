"""Llama: the decoder of Llama, Qwen2, Mistral and SmolLM, gpt-fast style, beside our GPT.

Against GPT-2 it swaps LayerNorm for RMSNorm, learned positions for rotary embeddings (RoPE),
the GELU MLP for SwiGLU, and lets several query heads share one key/value head (grouped-query
attention, GQA). Everything else is GPT's: the same `forward` / `scores` / `with_scalar_head`
(inherited from `CausalLM`), the same left-padding semantics (position ids count real tokens,
padded keys are masked by `attention_bias`), the same `KVCache` (holding the n_kv_head heads,
not the repeated ones) and the same chunked loss.

Parameter names are Hugging Face's LlamaForCausalLM names (`model.layers.0.self_attn.q_proj`,
`model.norm`, `lm_head`), so a Hugging Face state dict loads as it is and LoRA targets read as
usual. Qwen2 is Llama with biases on q, k and v (`qkv_bias`); Mistral is Llama with a sliding
window, which `from_hf` turns into a `block_size` no longer than the window.
"""

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from training.ml.gpt import CausalLM, ConfigFromDict, KVCache, attention_bias

ROPE_SCALING_KEYS = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}
HF_MODEL_TYPES = ("llama", "qwen2", "mistral")


@dataclass
class LlamaConfig(ConfigFromDict):
    vocab_size: int
    block_size: int = 2048  # longest sequence (Hugging Face's max_position_embeddings)
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None  # key/value heads (GQA); None = n_head (plain multi-head)
    n_embd: int = 128
    intermediate_size: int = 384  # SwiGLU hidden width
    head_dim: int | None = None  # None = n_embd // n_head
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # Hugging Face's dict: rope_type "linear" or "llama3"
    norm_eps: float = 1e-5
    tie_embeddings: bool = True  # lm_head shares the token embeddings (small models do)
    qkv_bias: bool = False  # biases on q, k, v (Qwen2)
    dropout: float = 0.0  # on attention weights and each residual branch, in training
    scalar_head: bool = False  # add `score_head` (reward model, PPO value model)

    def __post_init__(self):
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.head_dim is None and isinstance(self.n_head, int) and self.n_head > 0:
            if self.n_embd % self.n_head:
                raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
            self.head_dim = self.n_embd // self.n_head
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "n_embd",
                     "intermediate_size", "head_dim"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"LlamaConfig.{name} must be a positive int, got {value!r}")
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"n_head {self.n_head} is not a multiple of n_kv_head {self.n_kv_head}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even (RoPE rotates pairs), got {self.head_dim}")
        if not self.rope_theta > 0 or not self.norm_eps > 0:
            raise ValueError("rope_theta and norm_eps must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        self.rope_scaling = _check_rope_scaling(self.rope_scaling)

    @classmethod
    def from_hf(cls, hf: dict) -> "LlamaConfig":
        """From a Hugging Face config.json dict of model_type llama, qwen2 or mistral, in the
        layout of transformers 4 (`rope_theta`, `rope_scaling`) or 5 (`rope_parameters`)."""
        model_type = hf.get("model_type")
        if model_type not in HF_MODEL_TYPES:
            raise ValueError(
                f"unsupported model_type {model_type!r}: the Llama family reads "
                f"{', '.join(HF_MODEL_TYPES)}"
            )
        if hf.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {hf['hidden_act']!r}: only silu (SwiGLU)")
        if hf.get("mlp_bias") or (model_type == "llama" and hf.get("attention_bias")):
            raise ValueError("Llama with attention_bias or mlp_bias is not supported")
        rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
        theta = rope.pop("rope_theta", hf.get("rope_theta", 10000.0))
        if rope.get("rope_type", rope.get("type")) == "llama3":
            # transformers' default when the file leaves it out
            rope.setdefault("original_max_position_embeddings", hf["max_position_embeddings"])
        block_size = hf["max_position_embeddings"]
        window = hf.get("sliding_window")
        if model_type == "qwen2" and not hf.get("use_sliding_window"):
            window = None
        if window:
            # Past the window the model attends to the last `window` tokens only; we attend to
            # all, so never run past it rather than silently differ.
            block_size = min(block_size, window)
        return cls(
            vocab_size=hf["vocab_size"],
            block_size=block_size,
            n_layer=hf["num_hidden_layers"],
            n_head=hf["num_attention_heads"],
            n_kv_head=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            n_embd=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            head_dim=hf.get("head_dim"),
            rope_theta=float(theta),
            rope_scaling=rope or None,
            norm_eps=hf.get("rms_norm_eps", 1e-6),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=model_type == "qwen2",
        )


def _check_rope_scaling(scaling: dict | None) -> dict | None:
    """Hugging Face's rope scaling dict reduced to {"rope_type", its parameters}, or None."""
    if scaling is None:
        return None
    if not isinstance(scaling, dict):
        raise ValueError(f"rope_scaling must be a dict or None, got {scaling!r}")
    rope_type = scaling.get("rope_type", scaling.get("type"))
    if rope_type == "default":
        return None
    if rope_type not in ROPE_SCALING_KEYS:
        raise ValueError(
            f"unsupported rope scaling {rope_type!r}: choose linear or llama3 (or none)"
        )
    missing = [k for k in ROPE_SCALING_KEYS[rope_type] if k not in scaling]
    if missing:
        raise ValueError(f"{rope_type} rope scaling needs {', '.join(missing)}")
    return {"rope_type": rope_type, **{k: scaling[k] for k in ROPE_SCALING_KEYS[rope_type]}}


def rope_inv_freq(config: LlamaConfig, device=None) -> torch.Tensor:
    """The rotation speed of each pair of channels (head_dim / 2,), float32, scaled as
    transformers' "linear" and "llama3" rope types do."""
    dim = config.head_dim
    inv_freq = 1.0 / config.rope_theta ** (
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim
    )
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq
    factor = scaling["factor"]
    if scaling["rope_type"] == "linear":
        return inv_freq / factor  # positions divided by factor
    # llama3: wavelengths longer than the original context slow down by `factor`, shorter than
    # original / high_freq_factor stay, and those between blend smoothly.
    old_len = scaling["original_max_position_embeddings"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(medium, smoothed, scaled)


def rope_cos_sin(inv_freq: torch.Tensor, pos: torch.Tensor, dtype):
    """cos and sin (..., 1, T, hd) of the angles pos * inv_freq, each frequency written twice
    (Hugging Face's rotate_half layout: channel i pairs with channel i + hd/2)."""
    freqs = pos[..., None].float() * inv_freq  # (T, hd/2) or (B, T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1).unsqueeze(-3)  # (..., 1, T, hd)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, nh, T, hd) by the angles whose cos, sin are given (..., 1, T, hd)."""
    x1, x2 = x.chunk(2, dim=-1)  # 2 x (B, nh, T, hd/2)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin  # (B, nh, T, hd)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # In fp32 whatever x is, as transformers does: a bf16 mean of squares loses digits.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)  # (B, T, C)
        return self.weight * h.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head
        self.head_dim = hd = config.head_dim
        self.dropout = config.dropout
        C, bias = config.n_embd, config.qkv_bias
        self.q_proj = nn.Linear(C, config.n_head * hd, bias=bias)
        self.k_proj = nn.Linear(C, config.n_kv_head * hd, bias=bias)
        self.v_proj = nn.Linear(C, config.n_kv_head * hd, bias=bias)
        self.o_proj = nn.Linear(config.n_head * hd, C, bias=False)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, cos, sin, mask=None, cache: KVCache | None = None, layer: int = 0):
        B, T, _ = x.size()
        hd = self.head_dim
        q = self.q_proj(x).view(B, T, self.n_head, hd).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_head, hd).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_head, hd).transpose(1, 2)  # (B, nkv, T, hd)
        # RoPE in cos's fp32 under autocast (as transformers), back to v's bf16 before the cache
        # and SDPA: the cast SDPA's autocast would make anyway, and one dtype in the cache.
        q, k = apply_rope(q, cos, sin).type_as(v), apply_rope(k, cos, sin).type_as(v)
        if cache is not None:
            k, v = cache.append(layer, k, v)  # (B, nkv, S, hd)
        dropout = self.dropout if self.training else 0.0
        causal = mask is None and T > 1
        # SDPA's GQA: each group of n_head / n_kv_head query heads reads one key/value head, no
        # repeated copy of k and v. Same output as repeating them, and faster on CPU (2 cores,
        # 4 x 256 tokens, 9 / 3 heads of 64, forward + backward: 13.4 ms against 14.5 causal,
        # 13.7 against 14.3 with a padding mask; a decode step over 300 keys 52 us against 125).
        gqa = self.n_kv_head != self.n_head
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal, enable_gqa=gqa
        )  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * hd)  # (B, T, nh * hd)
        return self.resid_dropout(self.o_proj(y))


class MLP(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        h = F.silu(self.gate_proj(x)) * self.up_proj(x)  # (B, T, I), SwiGLU
        return self.dropout(self.down_proj(h))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, mask=None, cache: KVCache | None = None, layer: int = 0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(CausalLM):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.model = nn.ModuleDict(
            dict(
                embed_tokens=nn.Embedding(config.vocab_size, config.n_embd),
                layers=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                norm=RMSNorm(config.n_embd, config.norm_eps),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.model.embed_tokens.weight = self.lm_head.weight
        self.score_head = nn.Linear(config.n_embd, 1) if config.scalar_head else None
        self.apply(self._init_weights)  # as transformers: normal(0.02), zero biases, norms at 1
        self.zero_score_head()

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (tied weights counted once); `non_embedding` leaves out the token
        embeddings and, when untied, the output head."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.model.embed_tokens.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def hidden_states(
        self,
        idx: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """The final hidden states (B, T, C), after the last RMSNorm.

        idx (B, T) token ids. attention_mask (B, S): 1 real, 0 padding, where S = T plus the
        tokens already in `kv_cache` (the mask covers the whole sequence so far).
        """
        T = idx.size(1)
        pos, S = self.positions(idx, attention_mask, kv_cache)  # (T,) or (B, T)
        x = self.model.embed_tokens(idx)  # (B, T, C)
        # The frequencies are recomputed (a few tiny ops) rather than kept in a buffer, which
        # `.to(torch.bfloat16)` would round and so shift the angles at long positions.
        cos, sin = rope_cos_sin(rope_inv_freq(self.config, idx.device), pos, x.dtype)
        mask = attention_bias(attention_mask, T, S, idx.device)
        for layer, block in enumerate(self.model.layers):
            x = block(x, cos, sin, mask, kv_cache, layer)  # (B, T, C)
        if kv_cache is not None:
            kv_cache.advance(T)
        return self.model.norm(x)  # (B, T, C)

    @torch.no_grad()
    def resize_token_embeddings(self, vocab_size: int) -> None:
        """Grow (or shrink) the vocabulary, e.g. to add chat tokens to imported weights. New rows
        start at the mean embedding (and the mean head row), a neutral guess."""

        def resized(old: torch.Tensor) -> nn.Parameter:  # (V, C) -> (vocab_size, C)
            new = old.new_empty(vocab_size, old.size(1))
            keep = min(vocab_size, old.size(0))
            new[:keep] = old[:keep]
            new[keep:] = old.mean(dim=0)
            return nn.Parameter(new)

        old_head, old_embed = self.lm_head.weight, self.model.embed_tokens.weight
        self.lm_head = nn.Linear(old_head.size(1), vocab_size, bias=False)
        self.lm_head.weight = resized(old_head)
        self.model.embed_tokens = nn.Embedding(vocab_size, old_embed.size(1))
        if self.config.tie_embeddings:
            self.model.embed_tokens.weight = self.lm_head.weight
        else:
            self.model.embed_tokens.weight = resized(old_embed)
        self.config = replace(self.config, vocab_size=vocab_size)
