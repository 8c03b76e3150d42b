"""Kept keys and values of finished replies: a conversation's next turn prefills only what is
new, and gets what a full prefill gives."""

import pytest
import torch

from training.ml.engine import Engine, Request
from training.ml.gpt import KVCache
from training.ml.llama import Llama, LlamaConfig
from training.ml.prefix_cache import PrefixCache
from training.ml.sampling import SampleConfig, generate, last_logits, left_pad

NO_STOP = 10_000
FIRST = [5, 9, 14, 3, 22, 8]
OTHER = [7, 2, 30, 31]


def tiny_llama():
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=300, block_size=128, n_layer=2, n_head=4, n_kv_head=2,
                             n_embd=32, intermediate_size=64)).eval()  # fmt: skip


def run(engine, *requests) -> dict[str, list[int]]:
    for request in requests:
        engine.add(request)
    out: dict[str, list[int]] = {}
    while engine.busy:
        for event in engine.step():
            out.setdefault(event.key, []).append(event.token)
    return out


def alone(model, prompt, n) -> list[int]:
    config = SampleConfig(max_new_tokens=n, temperature=0)
    return generate(model, [prompt], config, stop_id=NO_STOP, pad_id=0).responses[0]


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_the_next_turn_reuses_the_conversation_and_replies_as_alone(make_model, family):
    model = make_model(seed=3, block_size=128) if family == "gpt" else tiny_llama()
    engine = Engine(model, stop_id=NO_STOP, pad_id=0, prefix_cache_tokens=1000)
    first = run(engine, Request("a", FIRST, max_new_tokens=6, temperature=0),
                Request("b", OTHER, max_new_tokens=3, temperature=0))  # fmt: skip
    second_turn = FIRST + first["a"] + [40, 41, 42]
    new = [50, 51, 52, 53, 54, 55, 56, 57, 58, 59]  # a conversation nothing is kept for
    second = run(engine, Request("a2", second_turn, max_new_tokens=5, temperature=0),
                 Request("c", new, max_new_tokens=5, temperature=0))  # fmt: skip
    assert second["a2"] == alone(model, second_turn, 5)
    assert second["c"] == alone(model, new, 5)
    # "a" fed its prompt and 5 of its 6 tokens; "c" (10 tokens, padded to 15 columns) let the
    # group start at column 5: 5 of "a2"'s tokens came from the cache.
    assert engine.prefixes.reused == 5
    third = run(engine, Request("a2'", second_turn, max_new_tokens=5, temperature=0))
    assert third["a2'"] == second["a2"]  # regenerated: all but its last prompt token reused
    assert engine.prefixes.reused == 5 + len(second_turn) - 1


def test_a_group_with_kept_prefixes_gives_the_logits_of_a_full_prefill():
    model = tiny_llama()
    kept = PrefixCache(max_tokens=1000)
    ids, mask = left_pad([FIRST, OTHER + [1, 2, 3, 4, 5]], pad_id=0)  # FIRST padded by 3
    cache = KVCache(model.config.n_layer, ids.size(1))
    with torch.no_grad():
        last_logits(model, ids, mask, cache)
    kept.keep(FIRST, cache, row=0)
    prompts = [FIRST + [60, 61], FIRST[:4] + [70, 71, 72, 73]]  # both share a kept prefix
    ids, mask = left_pad(prompts, pad_id=0)
    group = kept.group_cache(prompts, model.config.n_layer, ids.size(1))
    assert group.length == 4  # row 1 shares 4 tokens, at columns 0-3 like row 0's first 4
    with torch.no_grad():
        reused = last_logits(model, ids[:, group.length :], mask, group)
        full = last_logits(model, ids, mask, KVCache(model.config.n_layer, ids.size(1)))
    assert torch.allclose(reused, full, atol=1e-4, rtol=0)


def test_kept_tokens_stay_within_the_budget_least_recently_used_out():
    kept = PrefixCache(max_tokens=10)
    cache = KVCache(1, 20)
    kv = torch.randn(3, 1, 12, 2)
    cache.append(0, kv, kv), cache.advance(12)
    kept.keep([1, 2, 3, 4], cache, row=0)
    kept.keep([5, 6, 7], cache, row=1)
    kept.keep([1, 2, 3, 4, 8], cache, row=2)  # extends the first: replaces it
    assert list(kept.entries) == [(5, 6, 7), (1, 2, 3, 4, 8)] and kept.tokens == 8
    assert torch.equal(kept.entries[(5, 6, 7)].keys[0], kv[1, :, 9:12])  # its last columns
    kept.keep([9] * 11, cache, row=0)  # longer than the whole budget: not kept
    assert kept.tokens == 8
    assert kept.longest([5, 6, 7, 9]) == (kept.entries[(5, 6, 7)], 3)  # now the most recent
    assert kept.longest([5, 6, 7])[1] == 2  # the last prompt token is always fed
    kept.keep([20, 21, 22, 23], cache, row=0)
    assert list(kept.entries) == [(5, 6, 7), (20, 21, 22, 23)]  # the least recent went
