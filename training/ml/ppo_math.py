"""The maths of PPO for language models, as pure functions on tensors (no model, no loop).

Every tensor here is laid out per response token: shape (B, R), column t is the t-th token the
policy produced. One mask, `response_mask`, says which columns are real: every token up to and
including the first end-of-reply token, or up to the last sampled token of a reply that was cut
off. Every index is derived from that mask, above all the column the score lands on
(`last_index`): the end-of-reply token when there is one, else the last real token. Rewards,
values, advantages and losses are zero after it. (TRL and DeepSpeed-Chat both shipped
off-by-one bugs here, scoring a padding token or bootstrapping from one.)

`training.ml.ppo` runs the loop; these functions are what its tests check by hand.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# -- masks and indices ----------------------------------------------------------------------


def response_mask(responses: Tensor, lengths: Tensor, *, end_id: int) -> Tensor:
    """(B, R) float mask, 1 on each real response token up to and including the first `end_id`.

    `lengths` (B,) counts the sampled tokens of each row (the rest is padding); a row that kept
    going after an end token is cut at that token. Rows must hold at least one token.
    """
    B, R = responses.shape  # noqa: N806
    lengths = torch.as_tensor(lengths, device=responses.device)
    if bool((lengths < 1).any()) or bool((lengths > R).any()):
        raise ValueError(f"response lengths must lie in 1..{R}, got {lengths.tolist()}")
    cols = torch.arange(R, device=responses.device).expand(B, R)
    within = cols < lengths[:, None]
    is_end = (responses == end_id) & within
    ends_before = torch.cumsum(is_end.long(), dim=1) - is_end.long()  # end tokens strictly before
    return (within & (ends_before == 0)).float()


def last_index(mask: Tensor) -> Tensor:
    """(B,) column of the last real token of each row of a prefix mask: where the score goes."""
    return mask.sum(dim=1).long() - 1


def finished(responses: Tensor, mask: Tensor, *, end_id: int) -> Tensor:
    """(B,) bool: the reply ended with the end-of-reply token rather than being cut off."""
    last = last_index(mask)
    return responses.gather(1, last[:, None]).squeeze(1) == end_id


# -- masked statistics ----------------------------------------------------------------------


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: Tensor, mask: Tensor) -> Tensor:
    """Unbiased variance of the masked entries."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask)
    return var * n / (n - 1).clamp(min=1)


def masked_whiten(x: Tensor, mask: Tensor, *, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Zero mean, unit variance over the masked entries; entries outside the mask become 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


# -- log-probabilities --------------------------------------------------------------------


def token_logprobs(logits: Tensor, tokens: Tensor, *, temperature: float = 1.0) -> Tensor:
    """(B, R) log-probability of each token under `logits` (B, R, V) divided by `temperature`,
    the distribution the tokens were sampled from."""
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens[..., None]).squeeze(-1)


def entropy_from_logits(logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """(B, R) entropy of each next-token distribution, in nats."""
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


# -- rewards and advantages -----------------------------------------------------------------


def per_token_rewards(
    scores: Tensor, logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, *, kl_coef: float
) -> tuple[Tensor, Tensor]:
    """Step 3 of the PPO iteration: the reward each response token receives.

    reward_t = -kl_coef * (logp_t - logp_ref_t), plus the sequence's score on its last real
    token (`last_index`). Returns (rewards, kl), both (B, R) and zero outside the mask; `kl` is
    the per-token estimate log p - log p_ref, whose row sum estimates KL(policy || reference).
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows, last_index(mask)] += scores.to(rewards.dtype)
    return rewards * mask, kl


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float = 1.0, lam: float = 0.95
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over the masked tokens.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with V and A
    zero after the last real token: the episode ends there, nothing is bootstrapped from
    padding. Returns (advantages, returns = advantages + values), zero outside the mask.
    """
    rewards, values = rewards * mask, values * mask
    R = rewards.shape[1]  # noqa: N806
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(values[:, 0])
    for t in reversed(range(R)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = (delta + gamma * lam * next_adv) * mask[:, t]
        advantages[:, t] = next_adv
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


# -- losses ---------------------------------------------------------------------------------


@dataclass
class PolicyLoss:
    loss: Tensor
    clip_frac: Tensor
    approx_kl: Tensor
    ratio_mean: Tensor


def policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, *, clip: float = 0.2
) -> PolicyLoss:
    """The clipped surrogate objective (Schulman et al. 2017), to minimise.

    ratio = exp(logp - logp_old); loss = mean over masked tokens of
    max(-A * ratio, -A * clip(ratio, 1 - clip, 1 + clip)). Also returns the fraction of tokens
    where clipping was active, the approximate KL(old || new) (the k3 estimator,
    (ratio - 1) - log ratio, unbiased and never negative) and the mean ratio.
    """
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_frac = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
        ratio_mean = masked_mean(ratio, mask)
    return PolicyLoss(loss, clip_frac, approx_kl, ratio_mean)


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, *, clip: float = 0.2
) -> tuple[Tensor, Tensor]:
    """Clipped value loss: 0.5 * mean of max((V - R)^2, (V_clipped - R)^2), where V_clipped
    stays within `clip` of the values seen at sampling time. Returns (loss, clip fraction)."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    unclipped_err = (values - returns) ** 2
    clipped_err = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_err, clipped_err), mask)
    with torch.no_grad():
        clip_frac = masked_mean((clipped_err > unclipped_err).float(), mask)
    return loss, clip_frac


# -- KL coefficient -------------------------------------------------------------------------


class FixedKLController:
    """A constant KL coefficient beta."""

    def __init__(self, value: float):
        self.value = value

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """Ziegler et al. 2019, section 2.2: move beta so the KL tracks `target`.

    e = clip(KL / target - 1, -0.2, 0.2); beta <- beta * (1 + e * n_steps / horizon), where
    n_steps counts the samples since the last update.
    """

    def __init__(self, value: float, *, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError("adaptive KL needs a positive target and horizon")
        self.value, self.target, self.horizon = value, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
