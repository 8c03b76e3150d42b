"""The pure PPO maths, against examples worked by hand: masks and indices, rewards, GAE,
whitening, the clipped losses and the KL controllers."""

import math

import pytest
import torch

from training.ml import ppo_math as pm

END, PAD = 9, 0


def test_score_lands_on_end_token_or_last_real_token_and_nothing_after_counts():
    responses = torch.tensor(
        [
            [5, 6, END, PAD, PAD],  # finished: end at column 2
            [5, 6, 7, 8, 4],  # cut off at max_new_tokens: last real token at column 4
            [5, END, 7, PAD, PAD],  # kept sampling after the end: only up to the end counts
            [5, 6, 7, PAD, PAD],  # cut off, shorter than the batch (lengths say so)
        ]
    )
    lengths = torch.tensor([3, 5, 3, 3])
    mask = pm.response_mask(responses, lengths, end_id=END)
    assert mask.tolist() == [
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
    ]
    assert pm.last_index(mask).tolist() == [2, 4, 1, 2]
    assert pm.finished(responses, mask, end_id=END).tolist() == [True, False, True, False]

    logprobs = torch.full((4, 5), -1.0)
    ref_logprobs = torch.full((4, 5), -1.5)  # per-token KL estimate 0.5 everywhere
    scores = torch.tensor([10.0, 20.0, 30.0, 40.0])
    rewards, kl = pm.per_token_rewards(scores, logprobs, ref_logprobs, mask, kl_coef=0.1)
    expected = [
        [-0.05, -0.05, 10 - 0.05, 0, 0],
        [-0.05, -0.05, -0.05, -0.05, 20 - 0.05],
        [-0.05, 30 - 0.05, 0, 0, 0],
        [-0.05, -0.05, 40 - 0.05, 0, 0],
    ]
    assert torch.allclose(rewards, torch.tensor(expected))
    assert kl.sum(1).tolist() == pytest.approx([1.5, 2.5, 1.0, 1.5])


def test_response_mask_rejects_empty_rows():
    with pytest.raises(ValueError, match="lengths"):
        pm.response_mask(torch.tensor([[1, 2]]), torch.tensor([0]), end_id=END)


def test_gae_matches_a_hand_computed_example_and_ignores_padding():
    rewards = torch.tensor([[0.1, -0.2, 1.0, 5.0]])  # the 5.0 is padding: must not count
    values = torch.tensor([[0.5, 0.4, 0.3, 9.9]])  # the 9.9 too: no bootstrapping from it
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # gamma 1, lambda 0.95:
    # delta_2 = 1.0 + 0 - 0.3 = 0.7; delta_1 = -0.2 + 0.3 - 0.4 = -0.3;
    # delta_0 = 0.1 + 0.4 - 0.5 = 0
    # A_2 = 0.7; A_1 = -0.3 + 0.95 * 0.7 = 0.365; A_0 = 0 + 0.95 * 0.365 = 0.34675
    advantages, returns = pm.gae(rewards, values, mask, gamma=1.0, lam=0.95)
    assert advantages.tolist()[0] == pytest.approx([0.34675, 0.365, 0.7, 0.0])
    assert returns.tolist()[0] == pytest.approx([0.84675, 0.765, 1.0, 0.0])
    # gamma 0.9: delta_1 = -0.2 + 0.27 - 0.4 = -0.33, delta_0 = 0.1 + 0.36 - 0.5 = -0.04
    # A_1 = -0.33 + 0.855 * 0.7 = 0.2685; A_0 = -0.04 + 0.855 * 0.2685 = 0.1895675
    advantages, _ = pm.gae(rewards, values, mask, gamma=0.9, lam=0.95)
    assert advantages.tolist()[0] == pytest.approx([0.1895675, 0.2685, 0.7, 0.0])


def test_gae_with_lambda_one_is_the_return_minus_the_value():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 0.25, 0.125]])
    advantages, returns = pm.gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert returns.tolist()[0] == pytest.approx([6.0, 5.0, 3.0])
    assert advantages.tolist()[0] == pytest.approx([5.5, 4.75, 2.875])


def test_whitening_uses_only_masked_entries():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -50.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    white = pm.masked_whiten(x, mask)
    kept = white[mask.bool()]
    assert float(kept.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(kept.var()) == pytest.approx(1.0, abs=1e-4)
    assert white[~mask.bool()].tolist() == [0.0, 0.0, 0.0]


def test_policy_loss_at_ratio_one_is_minus_mean_advantage():
    logprobs = torch.tensor([[-1.0, -2.0, -3.0]])
    advantages = torch.tensor([[1.0, -2.0, 4.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    out = pm.policy_loss(logprobs, logprobs.clone(), advantages, mask)
    assert float(out.loss) == pytest.approx(0.5)  # -(1 - 2) / 2
    assert float(out.clip_frac) == 0.0
    assert float(out.approx_kl) == 0.0
    assert float(out.ratio_mean) == 1.0


def test_policy_loss_clips_optimistic_updates_only():
    old = torch.zeros(1, 2)
    new = torch.full((1, 2), math.log(1.65), requires_grad=True)  # ratio 1.65 > 1 + 0.2
    advantages = torch.tensor([[1.0, -1.0]])
    out = pm.policy_loss(new, old, advantages, torch.ones(1, 2), clip=0.2)
    # token 0 (A > 0): max(-1.65, -1.2) = -1.2, clipped, no gradient
    # token 1 (A < 0): max(1.65, 1.2) = 1.65, the pessimistic unclipped term keeps its gradient
    assert float(out.loss.detach()) == pytest.approx((-1.2 + 1.65) / 2)
    out.loss.backward()
    assert new.grad[0, 0] == 0.0
    assert float(new.grad[0, 1]) == pytest.approx(1.65 / 2)
    assert float(out.clip_frac) == 0.5


def test_value_loss_takes_the_larger_of_clipped_and_unclipped_error():
    old = torch.tensor([[0.0, 0.0]])
    new = torch.tensor([[1.0, 0.1]])
    returns = torch.tensor([[1.0, 1.0]])
    loss, clip_frac = pm.value_loss(new, old, returns, torch.ones(1, 2), clip=0.2)
    # token 0: unclipped error 0, clipped prediction 0.2 -> error 0.64 (the larger)
    # token 1: inside the clip range, error 0.81 both ways
    assert float(loss) == pytest.approx(0.5 * (0.64 + 0.81) / 2)
    assert float(clip_frac) == 0.5


def test_token_logprobs_and_entropy_use_the_temperature():
    logits = torch.tensor([[[2.0, 0.0, -2.0]]])
    lp = pm.token_logprobs(logits, torch.tensor([[0]]), temperature=2.0)
    expected = torch.log_softmax(torch.tensor([1.0, 0.0, -1.0]), -1)[0]
    assert float(lp) == pytest.approx(float(expected))
    uniform = pm.entropy_from_logits(torch.zeros(1, 1, 4))
    assert float(uniform) == pytest.approx(math.log(4))


def test_kl_controllers():
    fixed = pm.FixedKLController(0.1)
    fixed.update(100.0, 64)
    assert fixed.value == 0.1
    adaptive = pm.AdaptiveKLController(0.1, target=6.0, horizon=1000)
    adaptive.update(12.0, 100)  # error clipped to +0.2
    assert adaptive.value == pytest.approx(0.1 * (1 + 0.2 * 100 / 1000))
    adaptive.update(6.0 * 0.95, 100)  # error -0.05
    assert adaptive.value == pytest.approx(0.1 * 1.02 * (1 - 0.05 * 0.1))
