"""Continuous batching for the live model: many chats share each forward pass, and a request
that arrives while others are generating joins them at the next step instead of waiting for
the batch to finish.

`Engine.step()` does one decoding step for every running row (one token each), then feeds the
requests that arrived since (a prefilling group) the next `prefill_chunk` tokens of their
prompts. Chunked prefill: a long new prompt no longer stalls every running chat for the whole
of its prefill (SmolLM2 on one CPU core: ~4.5 ms a prompt token, so ~0.5 s for a 100-token
follow-up), it takes its turn in slices between their tokens, and gives the same logits as in
one pass. Once the group's prompts are in, their first tokens are sampled and their KV cache is
right-aligned with the running rows' (`KVCache.stack`): left padding that the attention mask
hides, so every row is positioned as if it were alone. Rows that finish leave at once
(`KVCache.select`), and padding columns that no row needs any more are dropped
(`KVCache.drop_left`).

Each request samples with its own settings and its own seeded generator, so what a request
gets does not depend on which others shared its steps: greedy output is identical batched or
alone, and a seed gives the same reply either way. All rows are sampled in one pass
(`sampling.choose_tokens` with per-row settings).
"""

from collections import deque
from dataclasses import dataclass, field

import torch

from training.ml.architectures import LanguageModel
from training.ml.device import autocast
from training.ml.gpt import KVCache
from training.ml.prefix_cache import PrefixCache
from training.ml.sampling import (
    SampleConfig,
    choose_tokens,
    exponential_noise,
    last_logits,
    left_pad,
)


@dataclass
class Request:
    key: str
    prompt: list[int]
    max_new_tokens: int = 256
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 0.95
    top_k: int = 0
    seed: int = 0


@dataclass
class Event:
    """One new token of a request; the last event of a request carries its finish reason
    ("stop": the model ended its turn, "length": max_new_tokens reached)."""

    key: str
    token: int
    finish_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


@dataclass
class _Row:
    request: Request
    generator: torch.Generator
    tokens: list[int] = field(default_factory=list)  # sampled so far

    @property
    def remaining(self) -> int:
        return self.request.max_new_tokens - len(self.tokens)


@dataclass
class _Filling:
    """Requests whose prompts are being prefilled, left-padded together: `cache.length` of
    their `ids` columns are in `cache` so far."""

    rows: list[_Row]
    ids: torch.Tensor  # (n, P)
    mask: torch.Tensor  # (n, P): 1 real token, 0 left padding
    cache: KVCache

    def keep(self, keep: list[int]) -> None:
        index = torch.tensor(keep, device=self.ids.device)
        self.rows = [self.rows[i] for i in keep]
        self.ids, self.mask = self.ids[index], self.mask[index]
        if self.cache.length:
            self.cache.select(index)


@dataclass
class Engine:
    model: LanguageModel
    stop_id: int
    pad_id: int
    max_batch: int = 16
    # Prompt tokens (summed over the group) prefilled per step while other rows are decoding;
    # 0: whole prompts in one step.
    prefill_chunk: int = 0
    # Tokens of finished replies whose keys and values are kept for the conversations' next
    # turns (`prefix_cache`); 0: none.
    prefix_cache_tokens: int = 0
    pending: deque = field(default_factory=deque)
    filling: _Filling | None = None
    rows: list[_Row] = field(default_factory=list)
    cache: KVCache | None = None
    mask: torch.Tensor | None = None  # (B, S): 1 real token, 0 left padding
    last: torch.Tensor | None = None  # (B,): each row's newest token, not yet in the cache

    def __post_init__(self):
        self.device = next(self.model.parameters()).device
        # Once, not per step: toggling the mode walks every module (~17 ms a step for SmolLM2).
        self.model.eval()
        self.prefixes = PrefixCache(self.prefix_cache_tokens) if self.prefix_cache_tokens else None

    @property
    def busy(self) -> bool:
        return bool(self.pending or self.rows or self.filling)

    def add(self, request: Request) -> None:
        """Queue a request for the next step; a clear ValueError for one that cannot run."""
        vocab, limit = self.model.config.vocab_size, self.model.config.block_size
        if not request.prompt:
            raise ValueError("empty prompt")
        if min(request.prompt) < 0 or max(request.prompt) >= vocab:
            raise ValueError("the prompt holds ids outside the vocabulary")
        if len(request.prompt) + request.max_new_tokens > limit:
            raise ValueError(
                f"prompt of {len(request.prompt)} tokens + max_new_tokens "
                f"{request.max_new_tokens} exceed the model's context of {limit}"
            )
        SampleConfig(  # its checks of the sampling settings
            max_new_tokens=request.max_new_tokens, temperature=request.temperature,
            top_p=request.top_p, top_k=request.top_k, seed=request.seed,
        )  # fmt: skip
        generator = torch.Generator(device=self.device).manual_seed(request.seed)
        self.pending.append(_Row(request, generator))

    def cancel(self, key: str) -> None:
        """Stop a request (its client went away): queued or running, it produces nothing more."""
        self.pending = deque(r for r in self.pending if r.request.key != key)
        keep = [i for i, r in enumerate(self.rows) if r.request.key != key]
        if len(keep) != len(self.rows):
            self._keep(keep)
        if self.filling is not None:
            keep = [i for i, r in enumerate(self.filling.rows) if r.request.key != key]
            if not keep:
                self.filling = None
            elif len(keep) != len(self.filling.rows):
                self.filling.keep(keep)

    @torch.no_grad()
    def step(self) -> list[Event]:
        """One token for every running request; the next slice of the prefilling prompts, and
        their first tokens once they are in."""
        events = self._decode() if self.rows else []
        if self.filling is None:
            self.filling = self._start_filling()
        return events + (self._fill() if self.filling is not None else [])

    def _decode(self) -> list[Event]:
        B = len(self.rows)
        if self.cache.length + 1 > self.cache.max_len:
            self.cache = KVCache.stack([self.cache], self.cache.length + self._headroom())
        self.mask = torch.cat([self.mask, self.mask.new_ones(B, 1)], dim=1)  # (B, S)
        with autocast(self.device):
            logits = last_logits(self.model, self.last[:, None], self.mask, self.cache)  # (B, V)
        return self._sample(self.rows, logits)

    def _start_filling(self) -> _Filling | None:
        room = self.max_batch - len(self.rows)
        if room <= 0 or not self.pending:
            return None
        joining = [self.pending.popleft() for _ in range(min(room, len(self.pending)))]
        prompts = [r.request.prompt for r in joining]
        ids, mask = left_pad(prompts, self.pad_id, self.device)
        n_layer = self.model.config.n_layer
        max_len = ids.size(1) + max(r.remaining for r in joining)
        if self.prefixes is not None:  # what earlier replies of these conversations left
            cache = self.prefixes.group_cache(prompts, n_layer, max_len)
        else:
            cache = KVCache(n_layer, max_len)
        return _Filling(joining, ids, mask, cache)

    def _fill(self) -> list[Event]:
        """Feed the prefilling group its next columns; once its prompts are all in, sample
        their first tokens and join them to the running rows."""
        filling = self.filling
        n, P = filling.ids.shape
        start = filling.cache.length
        end = P  # in one pass when no chat waits on it
        if self.prefill_chunk and self.rows:
            end = min(P, start + max(1, self.prefill_chunk // n))
        fed, mask = filling.ids[:, start:end], filling.mask[:, :end]  # (n, T), (n, S)
        with autocast(self.device):
            if end < P:
                self.model.hidden_states(fed, attention_mask=mask, kv_cache=filling.cache)
                return []
            logits = last_logits(self.model, fed, mask, filling.cache)  # (n, V)
        self.filling = None
        joining, cache = filling.rows, filling.cache
        if self.rows:
            length = max(self.cache.length, cache.length)
            self.cache = KVCache.stack([self.cache, cache], length + self._headroom(joining))
            self.mask = torch.cat([_pad_left(self.mask, length), _pad_left(mask, length)])
            self.last = torch.cat([self.last, torch.zeros_like(logits[:, 0], dtype=torch.long)])
        else:
            self.cache, self.mask = cache, mask
            self.last = torch.zeros(len(joining), dtype=torch.long, device=self.device)
        first = len(self.rows)
        self.rows += joining
        return self._sample(joining, logits, offset=first)

    def _sample(self, rows: list[_Row], logits: torch.Tensor, offset: int = 0) -> list[Event]:
        """Sample every row's next token in one pass, each with its own settings and noise from
        its own generator; finished rows leave the batch."""
        tokens = sample_rows(logits.float(), rows).tolist()
        events, keep = [], list(range(offset))
        self.last[offset:] = torch.tensor(tokens, device=self.device)
        for i, (row, token_id) in enumerate(zip(rows, tokens, strict=True)):
            row.tokens.append(token_id)
            reason = "stop" if token_id == self.stop_id else None
            reason = reason or ("length" if row.remaining <= 0 else None)
            events.append(Event(row.request.key, token_id, reason))
            if reason is None:
                keep.append(offset + i)
            elif self.prefixes is not None:  # all it fed: its prompt and tokens but the last
                self.prefixes.keep(row.request.prompt + row.tokens[:-1], self.cache, offset + i)
        if len(keep) != len(self.rows):
            self._keep(keep)
        return events

    def _keep(self, keep: list[int]) -> None:
        if not keep:
            self.rows, self.cache, self.mask, self.last = [], None, None, None
            return
        index = torch.tensor(keep, device=self.device)
        self.rows = [self.rows[i] for i in keep]
        self.cache.select(index)
        self.mask, self.last = self.mask[index], self.last[index]
        padding = int((self.mask.sum(0) == 0).long().cumprod(0).sum())  # all-padding columns
        self.cache.drop_left(padding)
        self.mask = self.mask[:, padding:]

    def _headroom(self, extra: list[_Row] = ()) -> int:
        return max(r.remaining for r in [*self.rows, *extra]) + 1


def sample_rows(logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
    """Next tokens (B,) for float logits (B, V), row i with `rows[i]`'s settings and generator:
    one filtering pass for the whole batch instead of one per row."""
    settings = [(r.request.temperature, r.request.top_k, r.request.top_p) for r in rows]
    temperature, top_k, top_p = (torch.tensor(column, device=logits.device)
                                 for column in zip(*settings, strict=True))  # fmt: skip
    sampling = [r.generator for r in rows if r.request.temperature > 0]
    noise = None
    if sampling:  # greedy rows draw no noise, as alone: a generator's stream is its own
        noise = torch.ones_like(logits)
        noise[temperature > 0] = exponential_noise(
            (len(sampling), logits.size(-1)), sampling, logits.device
        )
    return choose_tokens(logits, temperature, top_k, top_p, noise)


def _pad_left(mask: torch.Tensor, length: int) -> torch.Tensor:
    return torch.cat([mask.new_zeros(mask.size(0), length - mask.size(1)), mask], dim=1)
