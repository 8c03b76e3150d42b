"""The plain records the three RLHF stages train on, and the split by prompt they share.

These are what `training/` builds from the labeled rows (and what a command line builds from a
JSONL file): dataclasses of strings and ints, no Django, no tensors.

- `Demonstration`: a dialogue written by a person (SFT, the reward model's bias shift,
  PPO-ptx). `turns` is a list of {"role": "user" | "assistant", "content": str}.
- `RankingRecord`: a prompt, its K completions and one or more human rankings of them.
  A ranking lists completion indices best first; an inner list is a group of equally good
  completions (a tie, which yields no pair): `[2, [0, 3], 1]` says 2 > 0 = 3 > 1.
- `prompt`s are dialogues too, ending with a user turn (`ChatTokenizer.render_prompt`).
"""

import hashlib
import json
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

Turns = list[dict[str, str]]
Ranking = Sequence[int | Sequence[int]]


@dataclass
class Demonstration:
    turns: Turns
    prompt_id: Hashable | None = None  # records sharing a prompt stay on one side of a split

    def key(self) -> Hashable:
        """The prompt this dialogue answers: `prompt_id`, else the turns before the first reply."""
        if self.prompt_id is not None:
            return self.prompt_id
        first_reply = next(
            (i for i, t in enumerate(self.turns) if t.get("role") == "assistant"), len(self.turns)
        )
        return prompt_key(self.turns[:first_reply])


@dataclass
class RankingRecord:
    prompt: Turns
    completions: list[str]
    rankings: list[Ranking] = field(default_factory=list)
    prompt_id: Hashable | None = None
    # who wrote each completion (a model version's id; None: not known), when known: held-out
    # figures then also count the pairs of one writer's replies apart (`reward_data`)
    writers: list[Hashable | None] | None = None

    def key(self) -> Hashable:
        return self.prompt_id if self.prompt_id is not None else prompt_key(self.prompt)


class BadRecord(ValueError):
    """A record that cannot be trained on, with the reason in its message."""


def prompt_key(turns: Turns) -> str:
    """A stable key for a prompt's text (the same dialogue gives the same key in any process)."""
    data = json.dumps([[t.get("role"), t.get("content")] for t in turns], ensure_ascii=False)
    return hashlib.sha1(data.encode()).hexdigest()


def ranking_pairs(ranking: Ranking, k: int) -> list[tuple[int, int]]:
    """The (better, worse) pairs implied by one ranking of `k` completions; ties give none.

    Raises `BadRecord` unless the ranking orders every completion exactly once.
    """
    tiers = [[item] if isinstance(item, int) else list(item) for item in ranking]
    flat = [i for tier in tiers for i in tier]
    if any(not isinstance(i, int) or isinstance(i, bool) for i in flat):
        raise BadRecord(f"ranking {list(ranking)!r} must hold completion indices (ints)")
    if sorted(flat) != list(range(k)) or any(not tier for tier in tiers):
        raise BadRecord(
            f"ranking {list(ranking)!r} is not an ordering of the {k} completions "
            f"(each of 0..{k - 1} exactly once)"
        )
    return [
        (better, worse)
        for i, upper in enumerate(tiers)
        for lower in tiers[i + 1 :]
        for better in upper
        for worse in lower
    ]


def split_by_prompt(
    keys: Sequence[Hashable], val_fraction: float, *, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices (train, validation) such that no prompt key is on both sides.

    About `val_fraction` of the distinct prompts go to validation, chosen by a seeded shuffle;
    with a single prompt, or `val_fraction` 0, everything is for training.
    """
    distinct = sorted(set(keys), key=repr)
    n_val = int(round(len(distinct) * val_fraction))
    n_val = min(n_val, len(distinct) - 1) if val_fraction > 0 and len(distinct) > 1 else 0
    if val_fraction > 0 and len(distinct) > 1:
        n_val = max(n_val, 1)
    random.Random(seed).shuffle(distinct)
    val_keys = set(distinct[:n_val])
    train = [i for i, key in enumerate(keys) if key not in val_keys]
    val = [i for i, key in enumerate(keys) if key in val_keys]
    return train, val
