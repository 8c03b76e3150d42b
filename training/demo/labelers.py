"""A simulated labeler: a preference (`training.demo.rules`) plus the ways real people are
inconsistent, so the loop is measured on labels as messy as a team's (plain Python, no torch).

- **Sorted** (the default): the replies ordered by the preference's score, equal scores tied.
- **Bradley-Terry** (`bt_scale` set): a full ranking sampled from the scores instead, one place
  at a time, each remaining reply chosen with probability proportional to
  exp(bt_scale * score) (Plackett-Luce, whose pairwise marginal for two replies is
  Bradley-Terry: P(a above b) = sigmoid(bt_scale * (s_a - s_b))). Replies alike under the
  preference come out in a random order, and a better reply is sometimes ranked lower, the
  more often the closer the scores.
- **Bradley-Terry with ties** (`bt_ties` too): as above, but replies alike under the preference
  stay tied, as a person does who may mark a tie (the ranking page's "tie"): the order between
  the groups of equal score is sampled, each group weighted by exp(bt_scale * its score). Without
  ties a labeler must order replies they find equal, and those coin flips can outnumber the
  pairs the preference decides.
- **Noise** (`noise` in [0, 1]): then a pass down the ranking swaps each two neighbouring places
  (tied groups move as one) with probability `noise`; a place swapped is not swapped again in
  the same pass, so every swap moves a reply by one place. With K = 2 and no tie, `noise` is
  exactly the share of rankings reversed.

    labeler = SimulatedLabeler(PREFERENCES["caveat"], noise=0.1, bt_scale=2.0, bt_ties=True, seed=1)
    order = labeler.rank(completions, "os.writev")  # [[id], [id, id], ...] best first
"""

import math
import random
from dataclasses import dataclass, field

from training.demo.rules import Preference, preference_order, score_groups


@dataclass
class SimulatedLabeler:
    preference: Preference
    noise: float = 0.0  # share of neighbouring places swapped at random
    bt_scale: float | None = None  # None: sorted by score; else sample rankings Bradley-Terry
    bt_ties: bool = False  # with bt_scale: replies of equal score stay tied
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self):
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise is a share of swaps, between 0 and 1; got {self.noise}")
        if self.bt_scale is not None and self.bt_scale < 0:
            raise ValueError(f"bt_scale must be >= 0; got {self.bt_scale}")
        if self.bt_ties and self.bt_scale is None:
            raise ValueError("ties in sampled rankings need a Bradley-Terry scale (bt_scale)")
        self.rng = random.Random(self.seed)

    def rank(self, completions, name: str | None) -> list[list[int]]:
        """Groups of completion ids (objects with `pk` and `text`), best first."""
        if self.bt_scale is None:
            order = preference_order(self.preference, completions, name)
        else:
            order = self._sample(completions, name)
        return self._swap_neighbours(order) if self.noise else order

    def _sample(self, completions, name) -> list[list[int]]:
        """Plackett-Luce: pick the best of the remaining replies (or groups of equal score, with
        `bt_ties`), weight exp(scale * score)."""
        if self.bt_ties:
            groups = score_groups(self.preference, completions, name)
            remaining = [(pks, score) for score, pks in groups.items()]
        else:
            remaining = [([c.pk], self.preference.score(c.text, name)) for c in completions]
        order = []
        while remaining:
            high = max(score for _, score in remaining)  # subtracted: no overflow
            weights = [math.exp(self.bt_scale * (score - high)) for _, score in remaining]
            pick = self.rng.choices(range(len(remaining)), weights=weights)[0]
            order.append(remaining.pop(pick)[0])
        return order

    def _swap_neighbours(self, order: list[list[int]]) -> list[list[int]]:
        order = list(order)
        place = 0
        while place < len(order) - 1:
            if self.rng.random() < self.noise:
                order[place], order[place + 1] = order[place + 1], order[place]
                place += 2
            else:
                place += 1
        return order
