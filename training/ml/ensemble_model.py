"""A reward-model ensemble as one module: n reward models that score as their mean.

It has what the consumers of a reward model read (`scores`, `config`, parameters, eval mode), so
`RewardModelScorer`, best-of-n, the evaluation scores and the demo take it as they take one model,
and `training.ml.model_files` saves and loads it as one version (a `member-<i>/` model directory
each). Apart from `training.ml.reward_ensemble`, which trains one: the file code imports this
class, and the training code imports the file code.
"""

import torch
from torch import nn


class RewardEnsemble(nn.Module):
    """Members trained on the same rankings from the same start (`training.ml.reward_ensemble`);
    they share the input model's architecture and size, so one `config` describes them all."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("a reward-model ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @property
    def config(self):
        return self.members[0].config

    def member_scores(self, idx: torch.Tensor) -> torch.Tensor:
        """(M, N, T) each member's scalar head at every position of `idx` (N, T)."""
        return torch.stack([member.scores(idx).float() for member in self.members])

    def scores(self, idx: torch.Tensor) -> torch.Tensor:
        """(N, T) the members' mean score: the ensemble's reward where one model's is read."""
        return self.member_scores(idx).mean(0)
