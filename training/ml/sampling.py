"""Batched sampling with a KV cache: K completions for each of several prompts in one call.

Prompts of different lengths are left-padded into one batch, so every row's next token sits in
the last column. The batch is prefilled once; its KV cache is then repeated so each prompt's
K samples continue from one shared prefill. Each step feeds one token per row and samples with
temperature, top-k and top-p through a seeded `torch.Generator`: the same call gives the same
samples. `use_cache=False` recomputes the whole prefix at every step instead (the benchmark's
baseline, and the reference the cached path is tested against).

Run `python bench/bench_sampling.py` for the speed of both paths.
"""

from dataclasses import dataclass

import torch

from training.ml.architectures import LanguageModel
from training.ml.device import autocast
from training.ml.gpt import KVCache


@dataclass
class SampleConfig:
    max_new_tokens: int = 64
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = no top-k cut
    top_p: float = 1.0  # 1 = no nucleus cut
    num_samples: int = 1  # K completions per prompt
    seed: int = 0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.num_samples < 1:
            raise ValueError("num_samples must be at least 1")


@dataclass
class Samples:
    """One row per completion, prompts in order and each prompt's K samples together.

    `responses` holds the sampled ids, ending with the stop token when it was produced
    (`finished`). `logprobs[i][t]` is the log-probability of `responses[i][t]` under
    softmax(logits / temperature), taken before the top-k / top-p cut (under softmax(logits)
    when greedy): the policy's own distribution, which is what PPO's ratio compares against.
    """

    prompt_index: list[int]
    responses: list[list[int]]
    logprobs: list[list[float]]
    finished: list[bool]


def left_pad(sequences: list[list[int]], pad_id: int, device=None):
    """Stack sequences right-aligned: ids (B, T) with `pad_id` on the left, mask (B, T)."""
    T = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), T), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, T - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, T - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set logits (N, V) outside the top-k and outside the top-p nucleus to -inf."""
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (N, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already hold top_p of the mass:
        # the most likely token is always kept.
        drop = probs.cumsum(dim=-1) - probs > top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, config: SampleConfig, generator: torch.Generator):
    """Next token (N,) and its log-probability (N,) from float logits (N, V)."""
    if config.temperature == 0:
        token = logits.argmax(dim=-1)
        logprobs = torch.log_softmax(logits, dim=-1)
    else:
        logits = logits / config.temperature
        logprobs = torch.log_softmax(logits, dim=-1)
        probs = torch.softmax(filter_logits(logits, config.top_k, config.top_p), dim=-1)
        # Exponential-race sampling: argmax(p / E) with E ~ Exp(1) picks i with probability
        # p_i, and draws the same noise whatever the probabilities, so two paths whose logits
        # differ by rounding make the same choice.
        # -log(U) is Exp(1); on CPU it is ~5x faster than Tensor.exponential_.
        uniform = torch.rand(probs.shape, generator=generator, device=probs.device)
        noise = uniform.log_().neg_()
        token = (probs / noise).argmax(dim=-1)
    return token, logprobs.gather(-1, token[:, None]).squeeze(-1)


def check_prompts(prompts: list[list[int]], config: SampleConfig, model: LanguageModel) -> None:
    """Clear errors for what would otherwise fail deep inside the model."""
    if not prompts:
        raise ValueError("no prompts to sample from")
    limit = model.config.block_size
    for i, prompt in enumerate(prompts):
        if not prompt:
            raise ValueError(f"empty prompt (prompt {i})")
        if min(prompt) < 0 or max(prompt) >= model.config.vocab_size:
            raise ValueError(f"prompt {i} holds ids outside the vocabulary")
        if len(prompt) + config.max_new_tokens > limit:
            raise ValueError(
                f"prompt {i} is too long: {len(prompt)} tokens + max_new_tokens "
                f"{config.max_new_tokens} exceed the model's block_size {limit}"
            )


def last_logits(model: LanguageModel, ids, mask, cache) -> torch.Tensor:
    """Float logits (B, V) of the last position only: the output head on every prompt position
    would cost prompt length x vocabulary (49152 for SmolLM2) for nothing at prefill."""
    h = model.hidden_states(ids, attention_mask=mask, kv_cache=cache)  # (B, T, C)
    return model.lm_head(h[:, -1]).float()  # (B, V)


@torch.no_grad()
def generate(
    model: LanguageModel,
    prompts: list[list[int]],
    config: SampleConfig,
    *,
    stop_id: int,
    pad_id: int,
    use_cache: bool = True,
) -> Samples:
    """`config.num_samples` completions for every prompt; see the module docstring."""
    check_prompts(prompts, config, model)
    device = next(model.parameters()).device
    K = config.num_samples
    was_training = model.training
    model.eval()
    try:
        ids, mask = left_pad(prompts, pad_id, device)  # (B, P)
        padded = not bool(mask.all())
        generator = torch.Generator(device=device).manual_seed(config.seed)
        cache = KVCache(model.config.n_layer, ids.size(1) + config.max_new_tokens)
        cache = cache if use_cache else None
        with autocast(device):
            logits = last_logits(model, ids, mask if padded else None, cache)  # (B, V)
        logits = logits.repeat_interleave(K, dim=0)  # (N, V), N = B * K
        if cache is not None:
            cache.repeat_interleave(K)
        ids, mask = ids.repeat_interleave(K, dim=0), mask.repeat_interleave(K, dim=0)  # (N, P)

        done = torch.zeros(ids.size(0), dtype=torch.bool, device=device)  # (N,)
        tokens, logprobs = [], []
        for step in range(config.max_new_tokens):
            token, logprob = sample_next(logits, config, generator)  # (N,), (N,)
            token = token.masked_fill(done, pad_id)  # finished rows idle on padding
            tokens.append(token)
            logprobs.append(logprob)
            done |= token == stop_id
            if step == config.max_new_tokens - 1 or bool(done.all()):
                break
            ids = torch.cat([ids, token[:, None]], dim=1)  # (N, S)
            mask = torch.cat([mask, torch.ones_like(token)[:, None]], dim=1)  # (N, S)
            with autocast(device):
                fed = token[:, None] if cache is not None else ids  # (N, 1) or (N, S)
                logits = last_logits(model, fed, mask if padded else None, cache)  # (N, V)
    finally:
        model.train(was_training)
    return _collect(tokens, logprobs, stop_id, num_prompts=len(prompts), num_samples=K)


def _collect(tokens, logprobs, stop_id, *, num_prompts, num_samples) -> Samples:
    """Per-step tensors to per-row lists, each cut after its first stop token."""
    tokens = torch.stack(tokens, dim=1).tolist()  # (N, steps)
    logprobs = torch.stack(logprobs, dim=1).tolist()  # (N, steps)
    responses, kept_logprobs, finished = [], [], []
    for row, row_logprobs in zip(tokens, logprobs, strict=True):
        stopped = stop_id in row
        end = row.index(stop_id) + 1 if stopped else len(row)
        responses.append(row[:end])
        kept_logprobs.append(row_logprobs[:end])
        finished.append(stopped)
    prompt_index = [i for i in range(num_prompts) for _ in range(num_samples)]
    return Samples(prompt_index, responses, kept_logprobs, finished)
