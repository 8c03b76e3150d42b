"""The continuous-batching engine: what a request gets never depends on its companions."""

import pytest
import torch

from training.ml.engine import Engine, Request
from training.ml.gpt import KVCache
from training.ml.llama import Llama, LlamaConfig
from training.ml.sampling import SampleConfig, generate, last_logits, left_pad

PROMPTS = [[5, 9, 14, 3], [7, 2], [11, 4, 8, 20, 6, 1, 12], [30, 31, 32]]


def run(engine: Engine, arrivals: dict[int, list[Request]]) -> dict[str, list[int]]:
    """Step the engine, adding requests at the steps `arrivals` names; tokens per key."""
    out: dict[str, list[int]] = {}
    step = 0
    while engine.busy or any(s >= step for s in arrivals):
        for request in arrivals.get(step, []):
            engine.add(request)
        for event in engine.step():
            out.setdefault(event.key, []).append(event.token)
        step += 1
    return out


def alone(model, prompt, stop_id, **config) -> list[int]:
    samples = generate(model, [prompt], SampleConfig(**config), stop_id=stop_id, pad_id=0)
    return samples.responses[0]


@pytest.mark.parametrize("prefill_chunk", [0, 1, 5])  # whole prompts, and in slices
@pytest.mark.parametrize("stop_id", [1, 10_000])  # a token it may produce, and none
def test_greedy_requests_joining_mid_batch_match_each_alone(make_model, stop_id, prefill_chunk):
    model = make_model(seed=3)
    engine = Engine(model, stop_id=stop_id, pad_id=0, max_batch=3, prefill_chunk=prefill_chunk)
    arrivals = {
        0: [Request("a", PROMPTS[0], max_new_tokens=12, temperature=0)],
        2: [Request("b", PROMPTS[1], max_new_tokens=5, temperature=0),
            Request("c", PROMPTS[2], max_new_tokens=9, temperature=0)],
        4: [Request("d", PROMPTS[3], max_new_tokens=7, temperature=0)],  # waits for room
    }  # fmt: skip
    got = run(engine, arrivals)
    for key, prompt, n in zip("abcd", PROMPTS, (12, 5, 9, 7), strict=True):
        expected = alone(model, prompt, stop_id, max_new_tokens=n, temperature=0)
        assert got[key] == expected, key


@pytest.mark.parametrize("prefill_chunk", [0, 4])
def test_seeded_sampling_gives_the_same_reply_whatever_the_companions(make_model, prefill_chunk):
    model = make_model(seed=1)
    request = dict(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=42)

    def sampled(companions: int) -> list[int]:
        engine = Engine(model, stop_id=10_000, pad_id=0, prefill_chunk=prefill_chunk)
        others = [Request(f"o{i}", PROMPTS[i % 4], max_new_tokens=8, temperature=1.0, seed=i)
                  for i in range(companions)]  # fmt: skip
        return run(engine, {0: others, 1: [Request("x", PROMPTS[2], **request)]})["x"]

    assert sampled(0) == sampled(3) == sampled(6)
    other_seed = Engine(model, stop_id=10_000, pad_id=0)
    assert run(other_seed, {0: [Request("x", PROMPTS[2], **{**request, "seed": 7})]})["x"] != (
        sampled(0)
    )


def test_requests_with_mixed_settings_sample_as_each_alone(make_model):
    """The engine samples all rows in one pass: greedy, nucleus and top-k rows side by side
    each get what they get alone."""
    model = make_model(seed=2)
    settings = [dict(temperature=0), dict(temperature=1.0, top_p=0.8, seed=5),
                dict(temperature=0.7, top_k=4, seed=6), dict(temperature=1.2, seed=7)]  # fmt: skip

    def requests():
        return [Request(str(i), PROMPTS[i], max_new_tokens=9, **s) for i, s in enumerate(settings)]

    together = run(Engine(model, stop_id=10_000, pad_id=0), {0: requests()[:2], 2: requests()[2:]})
    for request in requests():
        by_itself = run(Engine(model, stop_id=10_000, pad_id=0), {0: [request]})
        assert together[request.key] == by_itself[request.key], request.key


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_a_prompt_prefilled_in_chunks_gives_the_logits_of_one_pass(make_model, family):
    """What the engine's chunked prefill feeds: left-padded prompts, a few columns a step over
    the cache so far, the mask covering everything fed (padding columns in the first chunks,
    chunks that end inside a row's padding)."""
    torch.manual_seed(0)
    if family == "gpt":
        model = make_model(seed=6).eval()
    else:
        model = Llama(LlamaConfig(vocab_size=300, n_layer=2, n_head=4, n_kv_head=2,
                                  n_embd=32, intermediate_size=64)).eval()  # fmt: skip
    ids, mask = left_pad(PROMPTS, pad_id=0)
    n_layer, P = model.config.n_layer, ids.size(1)
    with torch.no_grad():
        whole = last_logits(model, ids, mask, KVCache(n_layer, P))
        for chunk in (1, 2, 3, 5):
            cache = KVCache(n_layer, P)
            for start in range(0, P, chunk):
                end = min(P, start + chunk)
                chunked = last_logits(model, ids[:, start:end], mask[:, :end], cache)
            assert cache.length == P
            assert torch.allclose(chunked, whole, atol=1e-4, rtol=0), chunk


def test_running_chats_keep_their_pace_while_a_long_prompt_prefills(make_model):
    model = make_model(seed=3, block_size=128)
    engine = Engine(model, stop_id=10_000, pad_id=0, prefill_chunk=8)
    engine.add(Request("running", PROMPTS[0], max_new_tokens=20, temperature=0))
    steps = [engine.step()]
    long_prompt = [(7 * i) % 300 + 1 for i in range(40)]
    engine.add(Request("long", long_prompt, max_new_tokens=3, temperature=0))
    while engine.busy:
        steps.append(engine.step())
    assert all(any(e.key == "running" for e in step) for step in steps[:20])  # one token a step
    first_long = next(n for n, step in enumerate(steps) if any(e.key == "long" for e in step))
    assert first_long == 1 + 40 // 8 - 1  # its prompt took five steps of eight tokens
    got = {key: [e.token for step in steps for e in step if e.key == key]
           for key in ("running", "long")}  # fmt: skip
    assert got["long"] == alone(model, long_prompt, 10_000, max_new_tokens=3, temperature=0)
    assert got["running"] == alone(model, PROMPTS[0], 10_000, max_new_tokens=20, temperature=0)


def test_cancel_while_prefilling_leaves_the_others_exact(make_model):
    model = make_model(seed=5)
    engine = Engine(model, stop_id=10_000, pad_id=0, prefill_chunk=4)
    engine.add(Request("r", PROMPTS[3], max_new_tokens=12, temperature=0))
    events = engine.step()  # nothing runs yet: "r" is prefilled whole
    engine.add(Request("a", PROMPTS[2], max_new_tokens=6, temperature=0))
    engine.add(Request("b", PROMPTS[0], max_new_tokens=6, temperature=0))
    events += engine.step()  # "r" decodes; two columns of each new prompt go in
    assert [e.key for e in events] == ["r", "r"] and engine.filling is not None
    engine.cancel("a")
    while engine.busy:
        events += engine.step()
    tokens = {key: [e.token for e in events if e.key == key] for key in "rab"}
    assert tokens["a"] == []
    assert tokens["b"] == alone(model, PROMPTS[0], 10_000, max_new_tokens=6, temperature=0)
    assert tokens["r"] == alone(model, PROMPTS[3], 10_000, max_new_tokens=12, temperature=0)


def test_a_prompt_is_prefilled_whole_when_no_chat_waits(make_model):
    engine = Engine(make_model(seed=5), stop_id=10_000, pad_id=0, prefill_chunk=2)
    engine.add(Request("a", PROMPTS[2], max_new_tokens=3, temperature=0))
    assert [e.key for e in engine.step()] == ["a"]  # seven prompt tokens, one step


def test_finish_reasons_and_rows_leave_the_batch(make_model):
    model = make_model(seed=3)
    greedy = alone(model, PROMPTS[0], 10_000, max_new_tokens=6, temperature=0)
    stop = greedy[2]  # make the third greedy token the stop token
    engine = Engine(model, stop_id=stop, pad_id=0)
    engine.add(Request("s", PROMPTS[0], max_new_tokens=6, temperature=0))
    engine.add(Request("l", PROMPTS[1], max_new_tokens=2, temperature=0))
    events = []
    while engine.busy:
        events += engine.step()
    last = {e.key: e for e in events}
    assert last["l"].finish_reason == "length" and sum(e.key == "l" for e in events) == 2
    s_tokens = [e.token for e in events if e.key == "s"]
    assert s_tokens[-1] == stop and last["s"].finish_reason == "stop"
    assert s_tokens == greedy[: s_tokens.index(stop) + 1]
    assert engine.rows == [] and engine.cache is None


def test_cancel_stops_a_request_and_leaves_the_others_exact(make_model):
    model = make_model(seed=5)
    engine = Engine(model, stop_id=10_000, pad_id=0)
    engine.add(Request("a", PROMPTS[2], max_new_tokens=10, temperature=0))
    engine.add(Request("b", PROMPTS[0], max_new_tokens=10, temperature=0))
    events = engine.step() + engine.step()
    engine.cancel("a")
    while engine.busy:
        events += engine.step()
    assert sum(e.key == "a" for e in events) == 2
    b_tokens = [e.token for e in events if e.key == "b"]
    assert b_tokens == alone(model, PROMPTS[0], 10_000, max_new_tokens=10, temperature=0)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (Request("e", [], max_new_tokens=4), "empty prompt"),
        (Request("v", [10**6], max_new_tokens=4), "outside the vocabulary"),
        (Request("n", [1] * 60, max_new_tokens=10), "exceed the model's context of 64"),
    ],
)
def test_requests_that_cannot_run_are_refused(make_model, request_, message):
    engine = Engine(make_model(), stop_id=1, pad_id=0)
    with pytest.raises(ValueError, match=message):
        engine.add(request_)
    assert not engine.busy


def test_kv_cache_stack_select_and_drop_left_keep_each_rows_keys():
    a, b = KVCache(1, 8), KVCache(1, 8)
    ka, kb = torch.randn(2, 1, 3, 4), torch.randn(1, 1, 5, 4)
    a.append(0, ka, ka), a.advance(3)
    b.append(0, kb, kb), b.advance(5)
    merged = KVCache.stack([a, b], max_len=9)
    assert merged.length == 5 and merged.keys[0].shape == (3, 1, 9, 4)
    assert torch.equal(merged.keys[0][:2, :, 2:5], ka)  # right-aligned
    assert torch.equal(merged.keys[0][:2, :, :2], torch.zeros(2, 1, 2, 4))
    assert torch.equal(merged.values[0][2:, :, :5], kb)
    merged.select(torch.tensor([1]))
    merged.drop_left(2)
    assert merged.length == 3 and merged.max_len == 7
    assert torch.equal(merged.keys[0][0, :, :3], ka[1])
