from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
import transformers  # the dev extra: never skipped

from training.ml.gpt import KVCache
from training.ml.llama import Llama, LlamaConfig
from training.ml.sampling import SampleConfig, generate, left_pad

V = 101
SMALL = dict(
    vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
    num_attention_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-5,
)  # fmt: skip
LLAMA3_ROPE = dict(
    rope_type="llama3", rope_theta=50000.0, factor=8.0, low_freq_factor=1.0,
    high_freq_factor=4.0, original_max_position_embeddings=256,
)  # fmt: skip
# Small random configs of each family, covering GQA, tied and untied heads, Qwen2's q/k/v
# biases, both rope scalings and a head_dim other than hidden_size / heads.
FAMILIES = {
    "llama-gqa-llama3": ("llama", dict(num_key_value_heads=2, rope_parameters=LLAMA3_ROPE)),
    "llama-tied-linear": (
        "llama",
        dict(
            tie_word_embeddings=True,
            rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0),
        ),
    ),
    "qwen2-tied": (
        "qwen2",
        dict(
            num_key_value_heads=2,
            tie_word_embeddings=True,
            rope_parameters=dict(rope_type="default", rope_theta=1e6),
        ),
    ),
    "mistral-head-dim": ("mistral", dict(num_key_value_heads=1, head_dim=32, sliding_window=4096)),
}


def random_hf_model(family: str, seed: int = 0):
    """A transformers model of `family` with weights large enough that positions, heads and
    biases all move the logits: the default 0.02 init leaves attention nearly uniform, where a
    wrong rotation would hide, and zeroes the biases."""
    model_type, extra = FAMILIES[family]
    torch.manual_seed(seed)
    config = transformers.AutoConfig.for_model(model_type, **SMALL, **extra)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, p.size(1) ** -0.5)
            elif "norm" in name:
                p.normal_(1.0, 0.1)
            else:  # biases
                p.normal_(0.0, 0.5)
    return model


def ours_from(hf_model) -> Llama:
    model = Llama(LlamaConfig.from_hf(hf_model.config.to_dict()))
    model.load_state_dict(hf_model.state_dict())
    return model.eval()


@pytest.fixture(scope="module")
def gqa_model():
    return ours_from(random_hf_model("llama-gqa-llama3"))


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_equal_transformers_past_position_1024(family):
    hf = random_hf_model(family)
    ours = ours_from(hf)
    assert ours.config.block_size == 2048
    assert ours.num_params() == hf.num_parameters()  # a tied head counted once
    idx = torch.randint(0, V, (1, 1100), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(idx).logits
        logits, _ = ours(idx)
    assert expected.abs().mean() > 0.3  # logits of a size where a mistake shows
    assert (logits - expected).abs().max() < 1e-4


def test_kv_cache_decode_equals_the_full_forward(gqa_model):
    seqs = [[5, 6, 7, 8, 9, 10, 11], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]]
    ids, mask = left_pad(seqs, pad_id=0)  # (2, 10)
    with torch.no_grad():
        full, _ = gqa_model(ids, attention_mask=mask)
        cache = KVCache(gqa_model.config.n_layer, max_len=ids.size(1))
        steps = [gqa_model(ids[:, :6], attention_mask=mask[:, :6], kv_cache=cache)[0]]
        for t in range(6, ids.size(1)):
            step, _ = gqa_model(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], kv_cache=cache)
            steps.append(step)
    assert cache.keys[0].shape[1] == 2  # the cache holds the 2 kv heads, not the 4 query heads
    real = mask.bool()
    assert (torch.cat(steps, dim=1)[real] - full[real]).abs().max() < 1e-4


def test_left_padded_rows_equal_each_row_alone(gqa_model):
    g = torch.Generator().manual_seed(2)
    seqs = [torch.randint(0, V, (n,), generator=g).tolist() for n in (5, 23, 14)]
    ids, mask = left_pad(seqs, pad_id=0)
    with torch.no_grad():
        batched, _ = gqa_model(ids, attention_mask=mask)  # (3, 23, V)
        for row, seq in enumerate(seqs):
            alone, _ = gqa_model(torch.tensor([seq]))
            assert (batched[row, -len(seq) :] - alone[0]).abs().max() < 1e-4
    assert not batched.isnan().any()


def test_loss_is_the_cross_entropy_of_the_logits_and_trains(gqa_model):
    model = Llama(gqa_model.config)
    model.load_state_dict(gqa_model.state_dict())
    idx = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(3))
    targets = idx.roll(-1, dims=1)
    targets[:, -1] = -100
    _, loss = model(idx, targets)
    logits, _ = model(idx)
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_with_scalar_head_copies_the_trunk_and_scores_start_at_zero(gqa_model):
    scored = Llama.with_scalar_head(gqa_model).eval()
    idx = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(scored(idx)[0], gqa_model(idx)[0])
        assert torch.equal(scored.scores(idx), torch.zeros(2, 9))
    assert scored.score_head is not None and gqa_model.score_head is None
    with pytest.raises(ValueError, match="Llama.with_scalar_head"):
        gqa_model.scores(idx)


def test_generate_runs_on_llama_unchanged(gqa_model):
    prompts = [[1, 2, 3], [7, 8, 9, 10, 11, 12]]
    for config in (
        SampleConfig(max_new_tokens=12, temperature=0),
        SampleConfig(max_new_tokens=12, temperature=1.0, num_samples=2, seed=5),
    ):
        cached = generate(gqa_model, prompts, config, stop_id=-1, pad_id=0)
        recomputed = generate(gqa_model, prompts, config, stop_id=-1, pad_id=0, use_cache=False)
        assert cached.responses == recomputed.responses
        assert all(len(r) == 12 for r in cached.responses)


@pytest.mark.parametrize("tie", [True, False])
def test_resize_token_embeddings_keeps_the_old_logits(tie):
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=50, n_kv_head=2, tie_embeddings=tie)).eval()
    idx = torch.randint(0, 50, (1, 7))
    with torch.no_grad():
        before, _ = model(idx)
        model.resize_token_embeddings(53)
        after, _ = model(idx)
    assert after.shape[-1] == 53 and torch.equal(after[..., :50], before)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tie


def test_config_round_trips_and_rejects_what_it_cannot_run():
    config = LlamaConfig(
        vocab_size=V, n_head=4, n_kv_head=2, rope_scaling={"type": "linear", "factor": 2.0}
    )
    assert config.head_dim == 32 and config.rope_scaling == {"rope_type": "linear", "factor": 2.0}
    assert LlamaConfig.from_dict(asdict(config)) == config
    with pytest.raises(ValueError, match="unknown LlamaConfig fields"):
        LlamaConfig.from_dict({**asdict(config), "n_positions": 3})
    with pytest.raises(ValueError, match="unsupported rope scaling 'yarn'"):
        LlamaConfig(vocab_size=V, rope_scaling={"rope_type": "yarn", "factor": 4.0})
    with pytest.raises(ValueError, match="n_kv_head"):
        LlamaConfig(vocab_size=V, n_head=4, n_kv_head=3)


def test_from_hf_reads_transformers_4_layouts_and_family_quirks():
    legacy = dict(
        model_type="llama", vocab_size=V, hidden_size=64, intermediate_size=96,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=4096,
        rope_theta=500000.0, rope_scaling={"type": "linear", "factor": 4.0},
    )  # fmt: skip
    config = LlamaConfig.from_hf(legacy)
    assert config.rope_theta == 500000.0
    assert config.rope_scaling == {"rope_type": "linear", "factor": 4.0}
    assert (config.n_kv_head, config.tie_embeddings, config.qkv_bias) == (4, False, False)
    mistral = LlamaConfig.from_hf({**legacy, "model_type": "mistral", "sliding_window": 1024})
    assert mistral.block_size == 1024  # never attend past the window we do not implement
    # Qwen2 files name a window but use it only with use_sliding_window.
    qwen2 = LlamaConfig.from_hf(
        {**legacy, "model_type": "qwen2", "sliding_window": 1024, "tie_word_embeddings": True}
    )
    assert (qwen2.block_size, qwen2.qkv_bias, qwen2.tie_embeddings) == (4096, True, True)
    with pytest.raises(ValueError, match="unsupported model_type 'gemma'"):
        LlamaConfig.from_hf({**legacy, "model_type": "gemma"})
    with pytest.raises(ValueError, match="unsupported rope scaling 'dynamic'"):
        LlamaConfig.from_hf({**legacy, "rope_scaling": {"type": "dynamic", "factor": 2.0}})
