"""A round's evaluation as the project page shows it: for the new policy against each version
it was compared with, the human win rate with its 95% interval (once `MIN_VOTES` votes are in)
beside the reward model's preference on the same prompts, and a warning when they disagree. A
reward model that prefers the new policy while people do not is reward hacking showing."""

from dataclasses import dataclass

import numpy as np

from labeling import evaluation_selectors
from labeling.leaderboard import Interval, share_interval
from labeling.models import ComparisonReply
from training.models import Round

MIN_VOTES = 10
HACKING = "Reward hacking? The reward model prefers the new policy; people do not."
UNDERRATED = "The reward model and people disagree: people prefer the new policy."
CONSISTENT = "People and the reward model do not contradict each other."


@dataclass
class Matchup:
    opponent: str
    votes: int
    human: Interval | None  # the new policy's share of the votes (ties half); None: too few
    reward_share: float | None  # share of prompts where the reward model scored it higher
    prompts_scored: int

    @property
    def verdict(self) -> str:
        if self.human is None or self.reward_share is None:
            return ""
        if self.reward_share > 0.5 and self.human.high < 0.5:
            return HACKING
        if self.reward_share < 0.5 and self.human.low > 0.5:
            return UNDERRATED
        return CONSISTENT

    @property
    def warning(self) -> bool:
        return self.verdict in (HACKING, UNDERRATED)


def round_evaluation(round_: Round) -> list[Matchup] | None:
    """None for a round without a comparison (or whose PPO or DPO made no policy)."""
    made = round_.policy_run
    if not round_.comparison_id or made is None or made.output_model is None:
        return None
    batch = round_.comparison
    policy = made.output_model.pk
    return [
        _matchup(round_, batch, policy, int(other), name)
        for other, name in batch.version_names.items() if int(other) != policy
    ]


def _matchup(round_, batch, policy: int, other: int, name: str) -> Matchup:
    votes, _ = evaluation_selectors.vote_arrays(project=round_.project,
                                                version_ids=[policy, other])  # fmt: skip
    tie = votes.outcome >= 2
    policy_won = (votes.outcome == 0) == (votes.version_a == policy)
    score = np.where(tie, 0.5, policy_won.astype(float))
    human = share_interval(float(score.sum()), len(score)) if len(score) >= MIN_VOTES else None
    rewards: dict[int, dict[int, float]] = {}
    for prompt_id, version_id, sampling in ComparisonReply.objects.filter(
        batch=batch, version_id__in=[policy, other]
    ).values_list("prompt_id", "version_id", "completion__sampling"):
        if "reward" in sampling:
            rewards.setdefault(prompt_id, {})[version_id] = sampling["reward"]
    pairs = [(r[policy], r[other]) for r in rewards.values() if len(r) == 2]
    reward_share = (
        sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
        if pairs else None
    )  # fmt: skip
    return Matchup(name, len(score), human, reward_share, len(pairs))
