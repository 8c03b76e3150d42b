"""The chunked LM-head loss equals the plain `F.cross_entropy(lm_head(h))`: loss and gradients of
the hidden states and the head's weight, with ignored positions, for any chunk size."""

import pytest
import torch
import torch.nn.functional as F

from training.ml.lm_loss import IGNORE, lm_head_cross_entropy


def plain(h, weight, targets):
    logits = F.linear(h, weight)  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def loss_and_grads(loss_fn, h, weight, targets):
    h, weight = h.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = loss_fn(h, weight, targets)
    (2.5 * loss).backward()  # a scale other than 1 reaches both gradients
    return loss, h.grad, weight.grad


@pytest.mark.parametrize("chunk_tokens", [1, 7, 16, 1000])  # 7 does not divide 3 * 11 tokens
@pytest.mark.parametrize("ignored", [False, True])
def test_chunked_loss_and_gradients_equal_the_plain_path(chunk_tokens, ignored):
    g = torch.Generator().manual_seed(0)
    B, T, C, V = 3, 11, 16, 50
    h = torch.randn(B, T, C, generator=g)
    weight = torch.randn(V, C, generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    if ignored:
        targets[0, :5] = IGNORE
        targets[2, 3:] = IGNORE

    def chunked(h, weight, targets):
        return lm_head_cross_entropy(h, weight, targets, chunk_tokens=chunk_tokens)

    expected = loss_and_grads(plain, h, weight, targets)
    got = loss_and_grads(chunked, h, weight, targets)
    for name, e, x in zip(("loss", "grad of h", "grad of weight"), expected, got, strict=True):
        torch.testing.assert_close(x, e, rtol=1e-5, atol=1e-6, msg=name)
    if ignored:
        assert torch.all(got[1][0, :5] == 0) and torch.all(got[1][2, 3:] == 0)


def test_without_grad_it_returns_the_loss_only():
    g = torch.Generator().manual_seed(1)
    h, weight = torch.randn(2, 5, 8, generator=g), torch.randn(13, 8, generator=g)
    targets = torch.randint(0, 13, (2, 5), generator=g)
    with torch.no_grad():
        loss = lm_head_cross_entropy(h, weight.requires_grad_(), targets)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, plain(h, weight.detach(), targets))
