"""PPO's rollout, steps 1 and 2 of an iteration (see `training.ml.ppo`): query and response
rows laid out once, the policy's, reference's and value model's outputs on them, and the scores
of the finished responses. Apart from the trainer so the forward-pass layout — which column
predicts which response token — can be read and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.ml import ppo_math as pm
from training.ml.architectures import LanguageModel
from training.ml.configs import PPOConfig
from training.ml.device import autocast
from training.ml.lora import adapters_disabled
from training.ml.records import Turns
from training.ml.tokenizer import ChatTokenizer


@dataclass
class Rollout:
    """One iteration's responses and everything computed from them, per response token."""

    input_ids: torch.Tensor  # (N, T) prompt + response, right-padded
    positions: torch.Tensor  # (N, R) column whose output predicts response token t
    responses: torch.Tensor  # (N, R) response ids, padded after the last real token
    mask: torch.Tensor  # (N, R) 1 up to and including the end token / last sampled token
    logprobs: torch.Tensor  # (N, R) policy at sampling time
    ref_logprobs: torch.Tensor  # (N, R)
    values: torch.Tensor  # (N, R)
    entropy: torch.Tensor  # (N, R)
    scores: torch.Tensor = None  # (N,)
    finished: torch.Tensor = None  # (N,) bool
    rewards: torch.Tensor = None  # (N, R)
    kl: torch.Tensor = None  # (N, R)
    advantages: torch.Tensor = None  # (N, R)
    returns: torch.Tensor = None  # (N, R)


# -- forward passes -------------------------------------------------------------------------


def pack(
    prompts: list[list[int]], responses: list[list[int]], *, pad_id: int, end_id: int, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lay out query + response rows: returns input_ids (N, T) right-padded, positions (N, R),
    responses (N, R) and the response mask (N, R).

    Row i holds its prompt then its response from column 0 (no left padding, positions as in
    SFT). The output at column `len(prompt) - 1 + t` predicts response token t; `positions`
    holds those columns (clamped into the row past its end, where the mask is 0).
    """
    N = len(responses)  # noqa: N806
    R = max(len(r) for r in responses)  # noqa: N806
    T = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))  # noqa: N806
    input_ids = torch.full((N, T), pad_id, dtype=torch.long)
    response_ids = torch.full((N, R), pad_id, dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        input_ids[i, : len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
        response_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    starts = torch.tensor([len(p) for p in prompts])
    positions = (starts[:, None] - 1 + torch.arange(R)[None, :]).clamp(max=T - 1)
    lengths = torch.tensor([len(r) for r in responses])
    mask = pm.response_mask(response_ids, lengths, end_id=end_id)
    return input_ids.to(device), positions.to(device), response_ids.to(device), mask.to(device)


def policy_outputs(
    model: LanguageModel,
    input_ids,
    positions,
    responses,
    *,
    temperature: float,
    with_entropy: bool = False,
):
    """Log-probs (N, R) of the response tokens under `model` at `temperature`, and their
    entropies (N, R) when asked. The LM head runs on the response positions only, in fp32
    even under bf16 autocast: PPO's ratios and KL are differences of these log-probs."""
    with autocast(input_ids.device):
        h = model.hidden_states(input_ids)  # (N, T, C)
    h = h.gather(1, positions[..., None].expand(-1, -1, h.size(-1)))  # (N, R, C)
    logits = F.linear(h.float(), model.lm_head.weight.float())  # (N, R, V)
    logprobs = pm.token_logprobs(logits, responses, temperature=temperature)
    entropy = pm.entropy_from_logits(logits, temperature=temperature) if with_entropy else None
    return logprobs, entropy


def value_outputs(model: LanguageModel, input_ids, positions) -> torch.Tensor:
    """Values (N, R): the scalar head at the state before each response token."""
    with autocast(input_ids.device):
        scores = model.scores(input_ids)  # (N, T)
    return scores.float().gather(1, positions)


# -- the pieces of an iteration -------------------------------------------------------------


@torch.no_grad()
def recompute(
    policy: LanguageModel,
    reference: LanguageModel | None,
    value_model: LanguageModel,
    prompts: list[list[int]],
    responses: list[list[int]],
    *,
    config: PPOConfig,
    pad_id: int,
    end_id: int,
) -> Rollout:
    """Step 1's recomputation: full forward passes in eval mode over the packed rows. A `reference`
    of None is the policy with its LoRA adapters disabled (its frozen base)."""
    device = next(policy.parameters()).device
    input_ids, positions, response_ids, mask = pack(
        prompts, responses, pad_id=pad_id, end_id=end_id, device=device
    )
    out = {"logprobs": [], "ref_logprobs": [], "values": [], "entropy": []}
    for start in range(0, len(responses), config.forward_batch_size):
        rows = slice(start, start + config.forward_batch_size)
        args = (input_ids[rows], positions[rows], response_ids[rows])
        logprobs, entropy = policy_outputs(
            policy, *args, temperature=config.temperature, with_entropy=True
        )
        if reference is None:
            with adapters_disabled(policy):
                ref_logprobs, _ = policy_outputs(policy, *args, temperature=config.temperature)
        else:
            ref_logprobs, _ = policy_outputs(reference, *args, temperature=config.temperature)
        out["logprobs"].append(logprobs)
        out["entropy"].append(entropy)
        out["ref_logprobs"].append(ref_logprobs)
        out["values"].append(value_outputs(value_model, input_ids[rows], positions[rows]))
    tensors = {k: torch.cat(v) * mask for k, v in out.items()}
    return Rollout(input_ids, positions, response_ids, mask, **tensors)


@torch.no_grad()
def reply_kl(
    model: LanguageModel,
    reference: LanguageModel,
    prompts: list[list[int]],
    responses: list[list[int]],
    *,
    temperature: float,
    pad_id: int,
    end_id: int,
    batch_size: int = 16,
) -> torch.Tensor:
    """(N,) the KL to `reference` per reply, estimated on `model`'s own samples as PPO reports
    it: the sum over each reply's tokens of log pi - log pi_ref at `temperature`. For any policy
    against its SFT model, a DPO one too, whose run reports no KL."""
    device = next(model.parameters()).device
    input_ids, positions, response_ids, mask = pack(
        prompts, responses, pad_id=pad_id, end_id=end_id, device=device
    )
    kl = []
    for start in range(0, len(responses), batch_size):
        rows = slice(start, start + batch_size)
        args = (input_ids[rows], positions[rows], response_ids[rows])
        logprobs, _ = policy_outputs(model, *args, temperature=temperature)
        ref_logprobs, _ = policy_outputs(reference, *args, temperature=temperature)
        kl.append(((logprobs - ref_logprobs) * mask[rows]).sum(1))
    return torch.cat(kl)


def score_responses(
    reward,
    prompts: list[list[int]],
    responses: list[list[int]],
    finished: list[bool],
    *,
    config: PPOConfig,
) -> torch.Tensor:
    """Step 2: the reward of each response; cut-off ones get the penalty; clipped."""
    scored = [i for i, done in enumerate(finished) if done or config.unfinished_penalty is None]
    scores = torch.full((len(responses),), float(config.unfinished_penalty or 0.0))
    if scored:
        ps, rs = [prompts[i] for i in scored], [responses[i] for i in scored]
        if hasattr(reward, "score_batch"):
            values = reward.score_batch(ps, rs)
        else:
            values = [reward(p, r) for p, r in zip(ps, rs, strict=True)]
        scores[scored] = torch.tensor([float(v) for v in values])
    if not torch.isfinite(scores).all():
        raise FloatingPointError(
            f"the reward function returned non-finite scores: {scores.tolist()}"
        )
    if config.score_clip is not None:
        scores = scores.clamp(-config.score_clip, config.score_clip)
    return scores


def ema_update(ema: LanguageModel, model: LanguageModel, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            if e is not p:  # a LoRA EMA shares the policy's frozen base
                e.lerp_(p.detach(), 1.0 - decay)


def prompt_ids(
    tokenizer: ChatTokenizer, prompts: list[Turns], *, limit: int
) -> tuple[list[list[int]], dict]:
    """Render the prompts; those invalid or longer than `limit` tokens are skipped, counted."""
    kept, skipped = [], {"skipped_invalid_prompts": 0.0, "skipped_long_prompts": 0.0}
    for turns in prompts:
        try:
            ids = tokenizer.render_prompt(turns)
        except ValueError:
            skipped["skipped_invalid_prompts"] += 1
            continue
        if len(ids) > limit:
            skipped["skipped_long_prompts"] += 1
            continue
        kept.append(ids)
    return kept, skipped
