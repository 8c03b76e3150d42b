"""The rules the headless demo's simulated labelers rank by (plain Python, no torch: the command
line lists them without loading the ML stack).

The simulated labelers follow one visible, simple rule and rank the K replies of a task by it,
replies alike under the rule tied. Two rules, as `RULES` names them:

- `returns` (the default): **a reply that says what the function returns beats one that does
  not**. A tiny reward model learns it from one round of ~250 ranked prompts (held-out accuracy
  ~1.0), so the round shows the whole loop working: PPO against that reward model makes the
  policy follow the rule more often than the SFT model.
- `names`: **a reply that names the function the question is about beats one that only names
  its module, which beats one that names neither** (the function is the dotted name in the
  prompt's reference answer, e.g. `os.writev`, its module `os`). The rule an ML engineer would
  want, and too hard for the tiny preset: telling `typing.reveal_type` from `typing.reveal_tpye`
  is a copy check a ~1M-parameter reward model does not learn from ~250 prompts (held-out
  accuracy ~0.6). A bigger preset on a GPU is where it belongs.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass


def names_score(reply: str, name: str | None) -> int:
    """2: names the function; 1: names its module; 0: neither."""
    if not name:
        return 0
    if name in reply:
        return 2
    module = name.rsplit(".", 1)[0]
    return 1 if re.search(rf"\b{re.escape(module)}\b", reply) else 0


RETURNS = re.compile(r"\breturn(?:s|ed|ing)?\b", re.IGNORECASE)


def returns_score(reply: str, name: str | None) -> int:
    """1: says what it returns ("returns", "returning", ...); 0: does not."""
    return 1 if RETURNS.search(reply) else 0


@dataclass(frozen=True)
class Rule:
    description: str  # what the report says the labelers prefer
    best: str  # what a reply at the rule's top score does, for the report
    score: Callable[[str, str | None], int]  # (reply, the function asked about) -> higher is better
    top: int  # the score of a reply that fully follows the rule


RULES = {
    "returns": Rule("saying what the function returns > not saying it.",
                    "say what it returns", returns_score, top=1),
    "names": Rule("naming the function asked about > naming only its module > neither.",
                  "name the function", names_score, top=2),
}  # fmt: skip


def rule_order(rule: Rule, completions, name: str | None) -> list[list[int]]:
    """Groups of completion ids, best first, by the rule's score; equal scores are a tie."""
    groups = {}
    for c in completions:
        groups.setdefault(rule.score(c.text, name), []).append(c.pk)
    return [groups[score] for score in sorted(groups, reverse=True)]
