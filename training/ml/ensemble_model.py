"""A reward-model ensemble as one module: n reward models that score as their mean.

It has what the consumers of a reward model read (`scores`, `config`, parameters, eval mode), so
`RewardModelScorer`, best-of-n, the evaluation scores and the demo take it as they take one model,
and `training.ml.model_files` saves and loads it as one version. Apart from
`training.ml.reward_ensemble`, which trains one: the file code imports this class, and the
training code imports the file code.

**One frozen base.** LoRA members (`RewardConfig.lora_rank` > 0) differ only in their adapters
and scalar heads, so they are kept unmerged over one base: each member is its own module tree
(its own peft wrappers and head) whose frozen base parameters are the very same tensors as the
other members' (`training.ml.lora.frozen_base_copy`). The base is held once however many members
there are, `parameters()` yields it once, `.to()` moves it once, and `model_files` writes it once
beside each member's adapters and head (`shared_base`). Why separate trees rather than one model
whose adapters are swapped in before each member's forward (or peft's named adapters switched
with `set_adapter`): a member stays a whole reward model that scores with no state to set first,
so `members`, `member_scores` and PPO's value start read it as they read a full-fine-tuning
member, and no forward can run with another member's adapters left in. The price is one set of
module objects per member, a few kilobytes. The shared base must stay frozen: nothing trains an
ensemble in place (PPO's value model starts from a merged copy of member 0).
"""

import torch
from torch import nn

from training.ml.lora import has_lora, lora_trained


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

    @property
    def shared_base(self) -> bool:
        """Whether the members are LoRA adapters and heads over one base: the same tensors, not
        only equal ones (so a base saved once is what every member computes with)."""
        bases = [_base_tensors(m) for m in self.members]
        return has_lora(self.members[0]) and all(base == bases[0] for base in bases[1:])

    def member_scores(self, idx: torch.Tensor) -> torch.Tensor:
        """(M, N, T) each member's scalar head at every position of `idx` (N, T)."""
        return torch.stack([member.scores(idx).float() for member in self.members])

    def scores(self, idx: torch.Tensor) -> torch.Tensor:
        """(N, T) the members' mean score: the ensemble's reward where one model's is read."""
        return self.member_scores(idx).mean(0)


def _base_tensors(member: nn.Module) -> dict[str, int]:
    """Where each of a member's base tensors lives, by name."""
    return {n: t.data_ptr() for n, t in member.state_dict().items() if not lora_trained(n)}
