import pytest
import torch
import torch.nn.functional as F

from training.ml.gpt import GPT, PRESETS, GPTConfig, KVCache
from training.ml.optim import make_optimizer
from training.ml.sampling import left_pad


def sequence_logprobs(model, ids, mask=None):
    """log p(ids[t] | ids[:t]) for t >= 1, as (B, T-1)."""
    logits, _ = model(ids, attention_mask=mask)
    return torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)


def test_changing_a_later_token_never_changes_earlier_logits(make_model):
    model = make_model().eval()
    idx = torch.randint(
        0, model.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1)
    )
    logits, _ = model(idx)
    for t in (0, 17, 39):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % model.config.vocab_size
        changed_logits, _ = model(changed)
        assert torch.equal(logits[:, :t], changed_logits[:, :t])
        assert not torch.allclose(logits[:, t], changed_logits[:, t])


def test_left_padded_batch_matches_unpadded_single_sequences(make_model):
    model = make_model().eval()
    g = torch.Generator().manual_seed(2)
    seqs = [torch.randint(0, 500, (n,), generator=g).tolist() for n in (5, 23, 14)]
    ids, mask = left_pad(seqs, pad_id=0)
    batched = sequence_logprobs(model, ids, mask)  # (3, 22)
    for row, seq in enumerate(seqs):
        alone = sequence_logprobs(model, torch.tensor([seq]))[0]  # (n - 1,)
        torch.testing.assert_close(batched[row, -(len(seq) - 1) :], alone, atol=1e-5, rtol=1e-5)
    assert not batched.isnan().any()  # padding queries attend to themselves, never to nothing


def test_kv_cache_forward_matches_the_full_forward(make_model):
    model = make_model().eval()
    seqs = [[5, 6, 7, 8, 9, 10, 11], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]]
    ids, mask = left_pad(seqs, pad_id=0)  # (2, 10)
    full, _ = model(ids, attention_mask=mask)
    cache = KVCache(model.config.n_layer, max_len=ids.size(1))
    prefix, _ = model(ids[:, :6], attention_mask=mask[:, :6], kv_cache=cache)  # prefill 6 tokens
    steps = [prefix]
    for t in range(6, ids.size(1)):
        logits, _ = model(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], kv_cache=cache)
        steps.append(logits)
    incremental = torch.cat(steps, dim=1)
    real = mask.bool()
    torch.testing.assert_close(incremental[real], full[real], atol=1e-5, rtol=1e-5)


def test_loss_ignores_minus_100_targets_and_matches_the_plain_path(make_model):
    model = make_model()
    idx = torch.randint(0, 500, (2, 12))
    targets = idx.roll(-1, dims=1)
    targets[:, :4] = -100
    logits, _ = model(idx)
    expected = F.cross_entropy(
        logits[:, 4:].reshape(-1, logits.size(-1)), targets[:, 4:].reshape(-1)
    )
    expected.backward()
    expected_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    none, loss = model(idx, targets)
    assert none is None  # the training loss never materializes the logits
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected_grads[name], msg=name)
    assert model(idx)[1] is None


def test_a_tiny_model_overfits_a_short_text(make_model, tiny_tokenizer):
    text = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs."
    ids = torch.tensor([tiny_tokenizer.encode(text)])  # (1, T)
    model = make_model(seed=3)
    optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.0)
    for _ in range(150):
        _, loss = model(ids[:, :-1], ids[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05


def test_weights_are_tied(make_model):
    model = make_model()
    assert model.lm_head.weight is model.transformer.wte.weight


def test_with_scalar_head_copies_the_trunk_and_starts_at_zero(make_model):
    model = make_model(seed=4).eval()
    scored = GPT.with_scalar_head(model).eval()
    idx = torch.randint(0, 500, (2, 9))
    assert scored.config.scalar_head and not model.config.scalar_head
    torch.testing.assert_close(scored.hidden_states(idx), model.hidden_states(idx), atol=0, rtol=0)
    assert torch.equal(scored.scores(idx), torch.zeros(2, 9))
    with pytest.raises(ValueError, match="no scalar head"):
        model.scores(idx)


def test_scores_respect_padding(make_model):
    model = GPT.with_scalar_head(make_model(seed=5)).eval()
    torch.nn.init.normal_(model.score_head.weight)
    ids, mask = left_pad([[7, 8, 9], [1, 2, 3, 4, 5]], pad_id=0)
    batched = model.scores(ids, attention_mask=mask)  # (2, 5)
    torch.testing.assert_close(batched[0, -3:], model.scores(torch.tensor([[7, 8, 9]]))[0])


def test_sequences_longer_than_block_size_are_rejected(make_model):
    model = make_model(block_size=16)
    with pytest.raises(ValueError, match="exceeds block_size 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_presets_and_config_validation():
    with torch.device("meta"):
        gpt2 = GPT(GPTConfig.preset("gpt2"))
    assert round(gpt2.num_params() / 1e6, 2) == 124.44  # GPT-2 small, tied head
    assert set(PRESETS) >= {"tiny", "gpt2", "gpt2-medium"}
    assert GPTConfig.preset("tiny", vocab_size=300, dropout=0.1).dropout == 0.1
    with pytest.raises(ValueError, match="needs vocab_size"):
        GPTConfig.preset("tiny")
    with pytest.raises(ValueError, match="unknown preset"):
        GPTConfig.preset("huge", vocab_size=10)
    with pytest.raises(ValueError, match="not divisible"):
        GPTConfig(vocab_size=10, n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="unknown GPTConfig fields"):
        GPTConfig.from_dict({"vocab_size": 10, "n_experts": 8})


def test_resize_token_embeddings_keeps_old_rows(make_model):
    model = make_model()
    old = model.lm_head.weight.detach().clone()
    model.resize_token_embeddings(old.size(0) + 3)
    assert model.config.vocab_size == old.size(0) + 3
    assert torch.equal(model.transformer.wte.weight[: old.size(0)], old)
    assert model.lm_head.weight is model.transformer.wte.weight
