import math

import pytest
import torch

from training.ml.device import decode_matmul_timer, faster_dtype, sampling_dtype
from training.ml.sampling import (
    SampleConfig,
    choose_tokens,
    exponential_noise,
    filter_logits,
    generate,
)

PAD = 0


def prompts_of(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 500, (n,), generator=g).tolist() for n in lengths]


def peaked(model):
    """Make a random model's next-token distributions confident but varied (mean log-prob of a
    sample about -3 rather than the uniform -6): strong blocks, so greedy does not just repeat
    the last token, and a sharp final LayerNorm."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("c_proj.weight"):
                p.mul_(30)
        model.transformer.ln_f.weight.mul_(20)
    return model


@pytest.mark.parametrize(
    "config",
    [
        SampleConfig(max_new_tokens=20, temperature=0),
        SampleConfig(max_new_tokens=20, temperature=1.0, num_samples=3, seed=7),
        SampleConfig(max_new_tokens=20, temperature=0.8, top_k=20, top_p=0.9, num_samples=2),
    ],
    ids=["greedy", "seeded", "top-k-top-p"],
)
def test_kv_cache_gives_the_same_tokens_as_recomputing(make_model, config):
    model = peaked(make_model())
    prompts = prompts_of([3, 11, 6])
    cached = generate(model, prompts, config, stop_id=-1, pad_id=PAD)
    recomputed = generate(model, prompts, config, stop_id=-1, pad_id=PAD, use_cache=False)
    assert cached.responses == recomputed.responses
    for a, b in zip(cached.logprobs, recomputed.logprobs, strict=True):
        assert a == pytest.approx(b, abs=1e-4)
    assert cached.prompt_index == [i for i in range(3) for _ in range(config.num_samples)]
    assert all(len(r) == 20 for r in cached.responses) and not any(cached.finished)


def test_padded_batch_samples_like_each_prompt_alone(make_model):
    model = peaked(make_model(seed=1))
    prompts = prompts_of([2, 9, 5], seed=1)
    config = SampleConfig(max_new_tokens=12, temperature=0)
    batched = generate(model, prompts, config, stop_id=-1, pad_id=PAD)
    for i, prompt in enumerate(prompts):
        alone = generate(model, [prompt], config, stop_id=-1, pad_id=PAD)
        assert batched.responses[i] == alone.responses[0]


def test_seeded_sampling_is_reproducible(make_model):
    model = peaked(make_model())
    prompts = prompts_of([4, 8])
    config = SampleConfig(max_new_tokens=15, num_samples=4, seed=3)
    first = generate(model, prompts, config, stop_id=-1, pad_id=PAD)
    assert first == generate(model, prompts, config, stop_id=-1, pad_id=PAD)
    other = generate(
        model,
        prompts,
        SampleConfig(max_new_tokens=15, num_samples=4, seed=4),
        stop_id=-1,
        pad_id=PAD,
    )
    assert other.responses != first.responses
    assert len({tuple(r) for r in first.responses}) > 1  # the K samples differ


def test_rows_stop_at_the_stop_token_and_keep_it(make_model):
    model = peaked(make_model(seed=2))
    prompts = prompts_of([5, 7], seed=2)
    config = SampleConfig(max_new_tokens=10, temperature=0)
    free = generate(model, prompts, config, stop_id=-1, pad_id=PAD)
    stop_id = free.responses[0][3]
    stopped = generate(model, prompts, config, stop_id=stop_id, pad_id=PAD)
    first_stop = free.responses[0].index(stop_id)
    assert stopped.responses[0] == free.responses[0][: first_stop + 1]
    assert stopped.finished[0] and len(stopped.logprobs[0]) == len(stopped.responses[0])
    assert stopped.responses[1] == free.responses[1][: len(stopped.responses[1])]


def test_logprobs_are_those_of_the_tempered_distribution(make_model):
    model = peaked(make_model(seed=3)).eval()
    prompt = prompts_of([6], seed=3)[0]
    config = SampleConfig(max_new_tokens=8, temperature=0.7, top_k=5, seed=1)
    samples = generate(model, [prompt], config, stop_id=-1, pad_id=PAD)
    ids = torch.tensor([prompt + samples.responses[0]])
    with torch.no_grad():
        logits, _ = model(ids)
    logprobs = torch.log_softmax(logits[0, len(prompt) - 1 : -1] / 0.7, -1)
    expected = logprobs.gather(-1, ids[0, len(prompt) :, None]).squeeze(-1)
    assert samples.logprobs[0] == pytest.approx(expected.tolist(), abs=1e-4)


def test_generate_restores_the_training_mode(make_model):
    model = make_model().train()
    generate(model, [[1, 2]], SampleConfig(max_new_tokens=2), stop_id=-1, pad_id=PAD)
    assert model.training


def test_top_k_one_is_greedy(make_model):
    model = peaked(make_model())
    prompts = prompts_of([4, 6])
    greedy = generate(
        model, prompts, SampleConfig(max_new_tokens=8, temperature=0), stop_id=-1, pad_id=PAD
    )
    top1 = generate(model, prompts, SampleConfig(max_new_tokens=8, top_k=1), stop_id=-1, pad_id=PAD)
    assert greedy.responses == top1.responses


def test_filter_logits_keeps_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = filter_logits(logits, top_k=0, top_p=0.7).isfinite()
    assert kept.tolist() == [[True, True, False, False]]
    assert filter_logits(logits, top_k=0, top_p=0.1).isfinite().tolist() == [
        [True, False, False, False]
    ]
    assert filter_logits(logits, top_k=3, top_p=1.0).isfinite().sum() == 3


@pytest.mark.parametrize(
    "prompts, message",
    [
        ([], "no prompts"),
        ([[1, 2], []], "empty prompt"),
        ([[1] * 60], "too long"),
        ([[1, 10_000]], "outside the vocabulary"),
    ],
)
def test_bad_prompts_are_rejected(make_model, prompts, message):
    with pytest.raises(ValueError, match=message):
        generate(make_model(), prompts, SampleConfig(max_new_tokens=8), stop_id=-1, pad_id=PAD)


def test_bad_sample_configs_are_rejected():
    for bad in (dict(max_new_tokens=0), dict(temperature=-1), dict(top_p=0), dict(num_samples=0)):
        with pytest.raises(ValueError):
            SampleConfig(**bad)


def test_sampling_precision_is_chosen_and_a_bf16_model_samples(make_model, tiny_tokenizer):
    assert sampling_dtype("cpu", "float32") is torch.float32
    assert sampling_dtype("cpu", "bfloat16") is torch.bfloat16
    assert sampling_dtype("cpu") in (torch.float32, torch.bfloat16)  # measured here, once
    assert sampling_dtype("cpu", "auto") is sampling_dtype("cpu")
    with pytest.raises(ValueError, match="sampling dtype"):
        sampling_dtype("cpu", "float8")
    model = make_model(seed=4).to(torch.bfloat16)
    prompt = tiny_tokenizer.render_prompt([{"role": "user", "content": "What does json do?"}])
    out = generate(model, [prompt], SampleConfig(max_new_tokens=8, num_samples=3, seed=1),
                   stop_id=tiny_tokenizer.end_id, pad_id=tiny_tokenizer.pad_id)  # fmt: skip
    assert len(out.responses) == 3 and all(out.responses)
    assert all(math.isfinite(lp) and lp <= 0 for row in out.logprobs for lp in row)


def nucleus_by_full_sort(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The reference top-p cut of one row (V,): rank every token, keep a token while the tokens
    above it hold at most top_p of the mass."""
    probs = torch.softmax(logits, -1)
    ranked, order = torch.sort(probs, descending=True)
    keep_ranked = ranked.cumsum(-1) - ranked <= top_p
    return torch.zeros_like(keep_ranked).scatter(-1, order, keep_ranked)


def test_filter_logits_cuts_each_row_with_its_own_settings():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(5, 1)
    top_k = torch.tensor([0, 1, 3, 0, 2])
    top_p = torch.tensor([0.7, 1.0, 1.0, 1.0, 0.4])
    kept = filter_logits(logits, top_k, top_p).isfinite().tolist()
    assert kept == [
        [True, True, False, False],  # nucleus 0.7
        [True, False, False, False],  # top-1
        [True, True, True, False],  # top-3
        [True, True, True, True],  # no cut
        [True, False, False, False],  # top-2, then nucleus 0.4 of what is left
    ]


@pytest.mark.parametrize("width", ["narrow", "wide"])
def test_the_nucleus_equals_a_full_sort_per_row(width):
    """Peaked rows keep a nucleus inside the ranked candidates; flat rows (wide) reach past
    them and take the full sort: either way the same tokens as ranking the whole row."""
    g = torch.Generator().manual_seed(0)
    scale = 8.0 if width == "narrow" else 0.05
    logits = torch.randn(6, 5000, generator=g) * scale
    top_p = torch.tensor([0.3, 0.5, 0.8, 0.9, 0.95, 0.99])
    kept = filter_logits(logits, 0, top_p).isfinite()
    for row in range(6):
        expected = nucleus_by_full_sort(logits[row], float(top_p[row]))
        assert torch.equal(kept[row], expected), row
    mass = torch.softmax(logits, -1).topk(256, -1).values.sum(-1)
    assert bool((mass > top_p).all()) == (width == "narrow")  # both paths were taken


def test_batched_sampling_equals_each_row_alone():
    """The live engine samples all its chats at once: each row must get exactly the token it
    would get alone, with its own settings and its own generator's noise."""
    settings = [(0.0, 0, 1.0), (1.0, 0, 0.9), (0.7, 5, 1.0), (1.3, 50, 0.8), (1.0, 0, 1.0),
                (0.5, 0, 0.3)]  # (temperature, top_k, top_p) fmt: skip
    temperature, top_k, top_p = (torch.tensor(c) for c in zip(*settings, strict=True))
    batched_gens = [torch.Generator().manual_seed(10 + i) for i in range(len(settings))]
    alone_gens = [torch.Generator().manual_seed(10 + i) for i in range(len(settings))]
    sampling = [i for i, (t, _, _) in enumerate(settings) if t > 0]
    logits_gen = torch.Generator().manual_seed(1)
    for _ in range(30):
        logits = torch.randn(len(settings), 3000, generator=logits_gen) * 4
        noise = torch.ones_like(logits)
        drawing = [batched_gens[i] for i in sampling]
        noise[sampling] = exponential_noise((len(sampling), 3000), drawing)
        batched = choose_tokens(logits, temperature, top_k, top_p, noise).tolist()
        for i, (t, k, p) in enumerate(settings):
            row_noise = exponential_noise((1, 3000), [alone_gens[i]]) if t > 0 else None
            assert batched[i] == int(choose_tokens(logits[i : i + 1], t, k, p, row_noise)), i


def test_sampled_frequencies_follow_the_cut_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    generators = [torch.Generator().manual_seed(0)]
    tokens = choose_tokens(logits, 1.0, 0, 0.9, exponential_noise(logits.shape, generators))
    frequencies = torch.bincount(tokens, minlength=4).float() / len(tokens)
    expected = torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95  # the nucleus 0.9 drops the last
    assert torch.allclose(frequencies, expected, atol=0.03)


def timings(**seconds):
    """A fake `measure(dtype)` answering from lists of seconds per dtype, in order; it records
    the order it was asked in."""
    queues = {torch.float32: list(seconds["fp32"]), torch.bfloat16: list(seconds["bf16"])}
    asked = []

    def measure(dtype):
        asked.append(dtype)
        return queues[dtype].pop(0)

    measure.asked = asked
    return measure


@pytest.mark.parametrize(
    ("fp32", "bf16", "expected"),
    [
        ([1.0] * 5, [0.5] * 5, torch.bfloat16),  # twice as fast
        ([1.0] * 5, [0.9] * 5, torch.float32),  # within the margin: not worth the precision
        ([1.0] * 5, [1.7] * 5, torch.float32),  # slower, as on this CPU
        ([1.0] * 5, [9.0, 0.5, 9.0, 9.0, 9.0], torch.bfloat16),  # bursts of load: best round
        ([9.0, 9.0, 1.0, 9.0, 9.0], [0.9] * 5, torch.float32),
    ],
)
def test_the_faster_cpu_precision_is_picked_from_the_best_rounds(fp32, bf16, expected):
    measure = timings(fp32=fp32, bf16=bf16)
    assert faster_dtype(measure) is expected
    assert measure.asked == [torch.float32, torch.bfloat16] * 5  # timed in turns


def test_the_decode_matmul_timer_times_both_precisions():
    measure = decode_matmul_timer(rows=2, width=16)
    assert measure(torch.float32) > 0 and measure(torch.bfloat16) > 0
    assert faster_dtype(measure) in (torch.float32, torch.bfloat16)
