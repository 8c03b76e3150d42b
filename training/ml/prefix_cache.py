"""Keys and values of finished replies, kept so that the next turn of a conversation skips the
prefill of what the model has already read.

A chat's next prompt is its last prompt, the reply, and the new message: without this, every
turn prefills the whole conversation again (SmolLM2 on one CPU core: ~4.5 ms a token, so a
90-token second turn waits ~0.4 s before its first token, four of them at once ~1.6 s). With
it, only the tokens after the longest prefix shared with a kept sequence are fed. Kept entries
are matched by token ids, not text, so a reply that re-tokenizes differently in the next
prompt simply shares a shorter prefix.

Reused keys and values are those the model computed for the same tokens at the same positions
(positions count real tokens only, so left padding does not move them), so the logits are
those of a full prefill up to float rounding.
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch

from training.ml.gpt import KVCache


@dataclass
class _Entry:
    tokens: tuple[int, ...]
    keys: list[torch.Tensor]  # per layer (nh, L, hs)
    values: list[torch.Tensor]


class PrefixCache:
    """At most `max_tokens` tokens' keys and values, the least recently used dropped first."""

    def __init__(self, max_tokens: int):
        self.max_tokens = max_tokens
        self.entries: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        self.reused = 0  # prompt tokens not prefilled thanks to kept entries, in all

    @property
    def tokens(self) -> int:
        return sum(len(e.tokens) for e in self.entries.values())

    def keep(self, tokens: list[int], cache: KVCache, row: int) -> None:
        """Keep the keys and values of `tokens`, the last len(tokens) columns of `cache`'s row
        `row` (a finished reply: its prompt and the tokens it fed)."""
        tokens = tuple(tokens)
        if not tokens or len(tokens) > self.max_tokens:
            return
        columns = slice(cache.length - len(tokens), cache.length)
        entry = _Entry(tokens, [k[row, :, columns].clone() for k in cache.keys],
                       [v[row, :, columns].clone() for v in cache.values])  # fmt: skip
        for kept in list(self.entries):  # what this entry extends is no longer needed
            if tokens[: len(kept)] == kept:
                del self.entries[kept]
        self.entries[tokens] = entry
        while self.tokens > self.max_tokens:
            self.entries.popitem(last=False)

    def longest(self, prompt: list[int]) -> tuple[_Entry | None, int]:
        """The kept entry sharing the longest prefix with `prompt`, and how many of its tokens
        to reuse: at most all but the prompt's last, which must be fed for its logits."""
        best, best_n = None, 0
        for entry in self.entries.values():
            n = _common_prefix(entry.tokens, prompt)
            if n > best_n:
                best, best_n = entry, n
        if best is not None:
            self.entries.move_to_end(best.tokens)
        return best, min(best_n, len(prompt) - 1)

    def group_cache(self, prompts: list[list[int]], n_layer: int, max_len: int) -> KVCache:
        """A cache for `prompts` left-padded together, holding the first columns every row
        can take from kept entries (all rows are fed from the same column on: a row without a
        kept prefix keeps the others to what precedes its own tokens)."""
        P = max(len(p) for p in prompts)
        hits = [self.longest(p) for p in prompts]
        start = min(P - len(p) + n for p, (_, n) in zip(prompts, hits, strict=True))
        cache = KVCache(n_layer, max_len)
        if start <= 0:
            return cache
        some = next(e for e, n in hits if e is not None and n > 0)
        for layer in range(n_layer):
            nh, _, hs = some.keys[layer].shape
            like = some.keys[layer]
            cache.keys[layer] = like.new_zeros(len(prompts), nh, max_len, hs)
            cache.values[layer] = like.new_zeros(len(prompts), nh, max_len, hs)
        for row, (prompt, (entry, _)) in enumerate(zip(prompts, hits, strict=True)):
            pad = P - len(prompt)
            take = start - pad
            if take <= 0:
                continue  # only padding of this row precedes `start`
            for layer in range(n_layer):
                cache.keys[layer][row, :, pad:start] = entry.keys[layer][:, :take]
                cache.values[layer][row, :, pad:start] = entry.values[layer][:, :take]
            self.reused += take
        cache.length = start
        return cache


def _common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
