"""GPT: the pre-LayerNorm GPT-2 architecture, nanoGPT style, with padding, a KV cache and an
optional scalar head.

- Attention goes through `F.scaled_dot_product_attention` (flash / memory-efficient kernels
  where the hardware has them); plain causal attention uses `is_causal`, the fastest path.
- `attention_mask` (B, T) marks real tokens 1 and left padding 0. Position ids count real
  tokens only (cumsum - 1), and padded keys are masked out, so a left-padded row yields the same
  logits on its real tokens as the row alone: batched sampling and scoring need no repacking.
- `KVCache` keeps the keys and values of tokens already seen, so generation feeds one new token
  per step instead of the whole prefix.
- With `config.scalar_head` the model also carries `score_head`, a linear map from the final
  hidden state to one number per position: the reward model's reward and PPO's value head.
"""

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from training.ml.lm_loss import lm_head_cross_entropy

# Sizes only; `vocab_size` comes from the tokenizer (GPT-2 sizes default to GPT-2's vocabulary).
PRESETS: dict[str, dict] = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=256),  # ~0.8M + embeddings, CPU
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=512),  # ~10.6M + embeddings
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024, vocab_size=50257),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280, block_size=1024, vocab_size=50257),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600, block_size=1024, vocab_size=50257),
}


class ConfigFromDict:
    """`from_dict` for the model config dataclasses."""

    @classmethod
    def from_dict(cls, values: dict):
        """From a JSON dict, rejecting unknown keys (a config from another program or version)."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**values)


@dataclass
class GPTConfig(ConfigFromDict):
    vocab_size: int
    block_size: int = 256  # longest sequence: the number of learned positions
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm, as GPT-2 has them
    scalar_head: bool = False  # add `score_head` (reward model, PPO value model)

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def preset(cls, name: str, **overrides) -> "GPTConfig":
        """A named size from `PRESETS`, with fields overridden (`vocab_size` at least, for the
        presets that do not fix it)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        values = {**PRESETS[name], **overrides}
        if "vocab_size" not in values:
            raise ValueError(f"preset {name!r} needs vocab_size=... (the tokenizer's vocab_size)")
        return cls(**values)


class KVCache:
    """Keys and values of the tokens seen so far, for every layer, in buffers preallocated to
    `max_len` tokens so a decoding step writes in place instead of concatenating.

    The model appends to it in `forward` and advances `length` by the tokens it fed. After the
    prompt is prefilled, `repeat_interleave(k)` turns each row into k rows so k samples share
    one prefill.
    """

    def __init__(self, n_layer: int, max_len: int):
        self.max_len = max_len
        self.length = 0
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, nh, T, hs) after the cached tokens; return all so far (B, nh, S, hs)."""
        B, nh, T, hs = k.shape
        end = self.length + T
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} tokens > max_len {self.max_len}")
        if self.keys[layer] is None:
            self.keys[layer] = k.new_empty(B, nh, self.max_len, hs)
            self.values[layer] = v.new_empty(B, nh, self.max_len, hs)
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def repeat_interleave(self, k: int) -> None:
        """Row b becomes rows b*k .. b*k+k-1 (the order `Tensor.repeat_interleave` gives)."""
        for store in (self.keys, self.values):
            for layer, t in enumerate(store):
                store[layer] = t.repeat_interleave(k, dim=0) if t is not None else None

    def select(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (indices into the batch), in that order: finished rows leave."""
        for store in (self.keys, self.values):
            for layer, t in enumerate(store):
                store[layer] = t.index_select(0, rows) if t is not None else None

    def drop_left(self, n: int) -> None:
        """Forget the first `n` columns (padding every row has), freeing room on the right."""
        if n <= 0:
            return
        for store in (self.keys, self.values):
            for layer, t in enumerate(store):
                if t is not None:
                    store[layer] = t[:, :, n:].clone()
        self.max_len -= n
        self.length -= n

    @classmethod
    def stack(cls, caches: list["KVCache"], max_len: int) -> "KVCache":
        """One cache holding the rows of `caches` in order, each right-aligned to the longest
        (shorter ones padded on the left, which the attention mask must then mark as padding):
        how requests prefilled apart join a running batch."""
        length = max(c.length for c in caches)
        if length > max_len:
            raise ValueError(f"KV cache full: {length} tokens > max_len {max_len}")
        merged = cls(len(caches[0].keys), max_len)
        merged.length = length
        for name in ("keys", "values"):
            for layer in range(len(caches[0].keys)):
                parts = [getattr(c, name)[layer] for c in caches]
                B = sum(p.size(0) for p in parts)
                _, nh, _, hs = parts[0].shape
                out = parts[0].new_zeros(B, nh, max_len, hs)
                row = 0
                for c, p in zip(caches, parts, strict=True):
                    out[row : row + p.size(0), :, length - c.length : length] = p[:, :, : c.length]
                    row += p.size(0)
                getattr(merged, name)[layer] = out
        return merged


def attention_bias(attention_mask: torch.Tensor | None, T: int, S: int, device) -> torch.Tensor:
    """The boolean mask for T queries over S keys (the last T keys are the queries' own tokens),
    or None when SDPA's built-in causal mask (T == S) or no mask (one query) does the job.

    True = may attend. A query attends to earlier real tokens and always to itself: a padding
    query that attended to nothing would give NaN, and NaN values leak through a zero weight.
    """
    if attention_mask is None and (T == S or T == 1):
        return None
    q_pos = torch.arange(S - T, S, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(S, device=device)[None, :]  # (1, S)
    causal = k_pos <= q_pos  # (T, S)
    if attention_mask is None:
        return causal
    real = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
    return causal & (real | (k_pos == q_pos))  # (B, 1, T, S)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, mask=None, cache: KVCache | None = None, layer: int = 0):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.append(layer, k, v)  # (B, nh, S, hs)
        dropout = self.dropout if self.training else 0.0
        causal = mask is None and T > 1
        # The strided q, k, v views are what SDPA's CPU flash kernel wants: contiguous copies are
        # no faster, and for head size 32 a hand-blocked causal bmm + softmax is slower (tiny preset
        # on 2 CPU cores: 48 ms forward + backward per layer against 46 for this call).
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        # (B, T, 4C), GPT-2's "gelu_new". One fused kernel each way; the same function written as
        # x * sigmoid(2u) takes 4 passes forward and 6 backward in eager torch: no faster on CPU.
        x = F.gelu(self.c_fc(x), approximate="tanh")
        return self.dropout(self.c_proj(x))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, mask=None, cache: KVCache | None = None, layer: int = 0):
        x = x + self.attn(self.ln_1(x), mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


class CausalLM(nn.Module):
    """What every model family shares on top of its `hidden_states`: the language-model head and
    its chunked loss, the scalar head, and the copy that adds one. A subclass sets `config` (a
    dataclass with `scalar_head`), `lm_head` and `score_head`, and defines `hidden_states`."""

    @classmethod
    def from_config(cls, config) -> "CausalLM":
        return cls(config)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def zero_score_head(self) -> None:
        """A new scalar head starts neutral: every score 0."""
        if self.score_head is not None:
            nn.init.zeros_(self.score_head.weight)
            nn.init.zeros_(self.score_head.bias)

    @classmethod
    def with_scalar_head(cls, model: "CausalLM") -> "CausalLM":
        """A copy of `model` (same weights, device and dtype) with a fresh zero `score_head`:
        how the reward model starts from the SFT model and the value model from the policy."""
        new = cls(replace(model.config, scalar_head=True))
        param = next(model.parameters())
        new.to(device=param.device, dtype=param.dtype)
        trunk = {k: v for k, v in model.state_dict().items() if not k.startswith("score_head.")}
        missing, unexpected = new.load_state_dict(trunk, strict=False)
        assert not unexpected and all(k.startswith("score_head.") for k in missing)
        return new

    def positions(
        self, idx: torch.Tensor, attention_mask: torch.Tensor | None, kv_cache: KVCache | None
    ) -> tuple[torch.Tensor, int]:
        """(position ids of idx's tokens, S the sequence length so far). Positions count real
        tokens only (cumsum of the mask - 1), so a left-padded row is positioned as if alone."""
        B, T = idx.shape
        past = kv_cache.length if kv_cache is not None else 0
        S = past + T
        # Left padding takes columns but no positions: only real tokens count against the limit
        # (a continuous batch pads rows that joined late).
        if S > self.config.block_size and (
            attention_mask is None or int(attention_mask.sum(-1).max()) > self.config.block_size
        ):
            raise ValueError(f"sequence of {S} tokens exceeds block_size {self.config.block_size}")
        if attention_mask is None:
            return torch.arange(past, S, device=idx.device), S  # (T,)
        if attention_mask.shape != (B, S):
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != {(B, S)}")
        return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:], S  # (B, T)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Without `targets`: (logits (B, T, V) for every position, None). With `targets` (B, T)
        (-100 = ignore): (None, the mean cross entropy), computed chunk by chunk by
        `lm_head_cross_entropy` without ever holding the full logits (training needs the loss
        only, and the logits are the step's largest tensor)."""
        h = self.hidden_states(idx, attention_mask=attention_mask, kv_cache=kv_cache)
        if targets is not None:
            return None, lm_head_cross_entropy(h, self.lm_head.weight, targets)
        return self.lm_head(h), None  # (B, T, V)

    def scores(
        self, idx: torch.Tensor, *, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The scalar head on every position (B, T): the reward model reads it at a reply's last
        token, PPO reads values at every response token."""
        if self.score_head is None:
            raise ValueError(
                f"this model has no scalar head: build it with {type(self).__name__}"
                ".with_scalar_head"
            )
        h = self.hidden_states(idx, attention_mask=attention_mask)  # (B, T, C)
        return self.score_head(h).squeeze(-1)  # (B, T)


class GPT(CausalLM):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as in GPT-2
        self.score_head = nn.Linear(config.n_embd, 1) if config.scalar_head else None
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer), two per block, so the
        # residual stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        self.zero_score_head()

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (tied weights counted once); `non_embedding` leaves out the position
        embeddings and the token embeddings (which are also the output head)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel() + self.transformer.wte.weight.numel()
        return n

    def hidden_states(
        self,
        idx: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """The final hidden states (B, T, C), after the last LayerNorm.

        idx (B, T) token ids. attention_mask (B, S): 1 real, 0 padding, where S = T plus the
        tokens already in `kv_cache` (the mask covers the whole sequence so far).
        """
        T = idx.size(1)
        pos, S = self.positions(idx, attention_mask, kv_cache)  # (T,) or (B, T)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        mask = attention_bias(attention_mask, T, S, idx.device)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, mask, kv_cache, layer)  # (B, T, C)
        if kv_cache is not None:
            kv_cache.advance(T)
        return self.transformer.ln_f(x)  # (B, T, C)

    @torch.no_grad()
    def resize_token_embeddings(self, vocab_size: int) -> None:
        """Grow (or shrink) the vocabulary, e.g. to add the chat tokens to imported GPT-2
        weights. New rows start at the mean embedding, a neutral guess."""
        old = self.lm_head.weight  # (V, C)
        new = old.new_empty(vocab_size, old.size(1))
        keep = min(vocab_size, old.size(0))
        new[:keep] = old[:keep]
        new[keep:] = old.mean(dim=0)
        self.lm_head = nn.Linear(old.size(1), vocab_size, bias=False).to(old.device, old.dtype)
        self.lm_head.weight = nn.Parameter(new)
        self.transformer.wte = nn.Embedding(vocab_size, old.size(1)).to(old.device, old.dtype)
        self.transformer.wte.weight = self.lm_head.weight
        self.config = replace(self.config, vocab_size=vocab_size)
