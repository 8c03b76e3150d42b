"""The continuous-batching engine: what a request gets never depends on its companions."""

import pytest
import torch

from training.ml.engine import Engine, Request
from training.ml.gpt import KVCache
from training.ml.sampling import SampleConfig, generate

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


@pytest.mark.parametrize("stop_id", [1, 10_000])  # a token it may produce, and none
def test_greedy_requests_joining_mid_batch_match_each_alone(make_model, stop_id):
    model = make_model(seed=3)
    engine = Engine(model, stop_id=stop_id, pad_id=0, max_batch=3)
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


def test_seeded_sampling_gives_the_same_reply_whatever_the_companions(make_model):
    model = make_model(seed=1)
    request = dict(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=42)

    def sampled(companions: int) -> list[int]:
        engine = Engine(model, stop_id=10_000, pad_id=0)
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
