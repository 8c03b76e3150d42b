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


# The top-p cut ranks this many tokens first; a full sort only when the nucleus is wider.
NUCLEUS_CANDIDATES = 256


def filter_logits(logits: torch.Tensor, top_k, top_p) -> torch.Tensor:
    """Set logits (N, V) outside the top-k and outside the top-p nucleus to -inf. `top_k` and
    `top_p` are one setting for every row (int, float) or one per row ((N,) tensors): the live
    engine filters all its chats, each with its own settings, in one pass."""
    N, V = logits.shape
    top_k = torch.as_tensor(top_k, device=logits.device).expand(N)  # (N,)
    top_p = torch.as_tensor(top_p, dtype=torch.float32, device=logits.device).expand(N)  # (N,)
    cut_k = (top_k > 0) & (top_k < V)
    if bool(cut_k.any()):
        k = int(top_k[cut_k].max())
        values = torch.topk(logits, k, dim=-1).values  # (N, k), descending
        kth = values.gather(-1, (top_k.clamp(1, k) - 1)[:, None])  # (N, 1)
        kth = kth.masked_fill(~cut_k[:, None], float("-inf"))
        logits = logits.masked_fill(logits < kth, float("-inf"))
    cut_p = top_p < 1.0
    if bool(cut_p.any()):
        rows = cut_p.nonzero().squeeze(-1)  # (M,)
        drop = _outside_nucleus(logits[rows], top_p[rows])  # (M, V)
        logits = logits.index_put((rows,), logits[rows].masked_fill(drop, float("-inf")))
    return logits


def _outside_nucleus(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """(M, V) True for the tokens outside each row's top-p nucleus: a token is dropped when the
    tokens ranked above it already hold top_p of the mass (the most likely token always stays).

    Ranking a whole 49k vocabulary costs ~4 ms a row on a CPU, but the nucleus is nearly always
    among the few hundred likeliest tokens: rank those (topk), and sort in full only the rows
    whose nucleus reaches past them. Both give the same cut: the first ranks are the same."""
    probs = torch.softmax(logits, dim=-1)  # (M, V)
    n = min(NUCLEUS_CANDIDATES, probs.size(-1))
    ranked, order = torch.topk(probs, n, dim=-1)  # (M, n), descending
    mass = ranked.cumsum(dim=-1)  # (M, n)
    if bool((mass[:, -1] <= top_p).any()):  # a nucleus may reach past the candidates
        # Every row gets the full ranking (simpler than ragged widths): rare in practice.
        ranked, order = torch.sort(probs, dim=-1, descending=True)  # (M, V)
        mass = ranked.cumsum(dim=-1)
    drop_ranked = mass - ranked > top_p[:, None]  # (M, n or V)
    drop = torch.ones_like(probs, dtype=torch.bool)
    return drop.scatter(-1, order, drop_ranked)


def exponential_noise(shape, generators: list[torch.Generator], device=None) -> torch.Tensor:
    """Exp(1) noise (N, V) for the exponential race, row i drawn from `generators[i]` (or all
    rows from one generator when one is given), so a row's draws never depend on its
    companions. -log(U) is Exp(1); on CPU it is ~5x faster than Tensor.exponential_."""
    if len(generators) == 1:
        uniform = torch.rand(shape, generator=generators[0], device=device)
    else:
        uniform = torch.stack([torch.rand(shape[-1], generator=g, device=device)
                               for g in generators])  # fmt: skip
    return uniform.log_().neg_()


def choose_tokens(logits: torch.Tensor, temperature, top_k, top_p, noise) -> torch.Tensor:
    """Next tokens (N,) from float logits (N, V): greedy for the rows whose temperature is 0,
    else sampled from softmax(logits / temperature) cut by top-k and top-p. The settings are
    one for all rows or one per row ((N,) tensors); `noise` is Exp(1) noise (N, V), or None
    when every row is greedy.

    Exponential-race sampling: argmax(p / E) with E ~ Exp(1) picks i with probability p_i, and
    draws the same noise whatever the probabilities, so two paths whose logits differ by
    rounding make the same choice."""
    temperature = torch.as_tensor(temperature, dtype=logits.dtype, device=logits.device)
    temperature = temperature.expand(logits.size(0))  # (N,)
    greedy = temperature == 0
    if bool(greedy.all()):
        return logits.argmax(dim=-1)
    scaled = logits / temperature.masked_fill(greedy, 1.0)[:, None]
    probs = torch.softmax(filter_logits(scaled, top_k, top_p), dim=-1)  # (N, V)
    token = (probs / noise).argmax(dim=-1)
    return torch.where(greedy, logits.argmax(dim=-1), token) if bool(greedy.any()) else token


def sample_next(logits: torch.Tensor, config: SampleConfig, generator: torch.Generator):
    """Next token (N,) and its log-probability (N,) from float logits (N, V), all rows with
    `config`'s settings and noise from one generator."""
    greedy = config.temperature == 0
    noise = None if greedy else exponential_noise(logits.shape, [generator], logits.device)
    token = choose_tokens(logits, config.temperature, config.top_k, config.top_p, noise)
    logprobs = torch.log_softmax(logits if greedy else logits / config.temperature, dim=-1)
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
