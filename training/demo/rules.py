"""What the headless demo's simulated labelers prefer: a library of visible preferences (plain
Python, no torch: the command line lists them without loading the ML stack).

A preference scores one reply (higher is better, `top` for a reply that fully follows it); a
simulated labeler (`training.demo.labelers`) ranks the K replies of a task by that score, replies
alike under it tied. Each class is a preference a person might really hold, so the loop is tried
on what labelers prefer, not on the one rule the demo's settings were tuned for.

- `returns` (the default): says what the function returns. A tiny reward model learns it from one
  round of ~250 ranked prompts (held-out accuracy ~1.0): the round shows the whole loop working.
- `names`: names the function asked about. Too hard for the tiny preset: telling
  `typing.reveal_type` from `typing.reveal_tpye` is a copy check a ~1M-parameter reward model
  does not learn from ~250 prompts (held-out accuracy ~0.6).
- `example`, `plain`, `caveat`, `polite`, `concise`: what a reader of the answers might want
  instead: an example call, no jargon, a warning of the catch, courtesy, brevity.
"""

import re
from abc import ABC, abstractmethod


class Preference(ABC):
    """One way a labeler judges a reply: `score(reply, name)` where `name` is the dotted function
    the question is about (from its reference answer; None when it has none)."""

    key: str  # the name `--rule` takes
    description: str  # what the report says the labelers prefer
    best: str  # what a reply at the top score does, for the report ("replies that <best>")
    top: int  # the score of a reply that fully follows the preference

    @abstractmethod
    def score(self, reply: str, name: str | None) -> int: ...


DOTTED = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+\b")


def reference_name(answer: str) -> str | None:
    """The function a reference answer names: its first dotted name (`os.writev`), the `name`
    a preference is given."""
    match = DOTTED.search(answer)
    return match.group(0).rstrip(".") if match else None


def has(pattern: re.Pattern, reply: str) -> int:
    return 1 if pattern.search(reply) else 0


class SaysWhatItReturns(Preference):
    """A reply that says what the function returns ("returns", "returned", "returning") beats
    one that does not: the reader wants to know what they get back."""

    key, top = "returns", 1
    description = "saying what the function returns > not saying it."
    best = "say what it returns"
    PATTERN = re.compile(r"\breturn(?:s|ed|ing)?\b", re.IGNORECASE)

    def score(self, reply, name):
        return has(self.PATTERN, reply)


class NamesTheFunction(Preference):
    """A reply that names the function asked about (`os.writev`) beats one that names only its
    module (`os`), which beats one that names neither: the reader wants the exact name to type."""

    key, top = "names", 2
    description = "naming the function asked about > naming only its module > neither."
    best = "name the function"

    def score(self, reply, name):
        if not name:
            return 0
        if name in reply:
            return 2
        module = name.rsplit(".", 1)[0]
        return 1 if re.search(rf"\b{re.escape(module)}\b", reply) else 0


class GivesAnExampleCall(Preference):
    """A reply that shows a call, a dotted or plain name followed by parentheses (`os.getcwd()`,
    `len(x)`), beats one that only describes it: many readers learn from the example first."""

    key, top = "example", 1
    description = "showing an example call such as `os.getcwd()` > describing it only."
    best = "show an example call"
    PATTERN = re.compile(r"\b[A-Za-z_][\w.]*\([^()\n]{0,40}\)")

    def score(self, reply, name):
        return has(self.PATTERN, reply)


class PlainWords(Preference):
    """A reply without jargon beats one with a single jargon word, which beats one with more: a
    beginner stops reading at "descriptor" or "coroutine". Jargon is the fixed list `JARGON`, whole
    words, any case."""

    key, top = "plain", 2
    description = "no jargon > one jargon word > several (e.g. 'iterable', 'descriptor')."
    best = "use no jargon"
    JARGON = re.compile(
        r"\b(?:iterables?|iterators?|callables?|coroutines?|descriptors?|mutable|immutable|"
        r"idempotent|instantiates?|serializes?|deserializes?|namespaces?|semantics|invocation|"
        r"polymorphic|asynchronous|kwargs|args|boolean|predicate|sentinel|buffer(?:s|ed)?|"
        r"file descriptors?|encod(?:er|ing)s?|codecs?|opcodes?|bytecode|syscall|struct)\b",
        re.IGNORECASE,
    )

    def score(self, reply, name):
        return max(0, 2 - len(self.JARGON.findall(reply)))


class MentionsACaveat(Preference):
    """A reply that warns of a catch ("but", "however", "unless", "note", "raises", "only",
    "deprecated", "careful") beats one that does not: the surprise is what costs an afternoon."""

    key, top = "caveat", 1
    description = "mentioning a caveat ('but', 'unless', 'raises', 'note', ...) > not."
    best = "mention a caveat"
    PATTERN = re.compile(
        r"\b(?:but|however|unless|note|beware|careful|caution|warning|raises?|only|deprecated|"
        r"except|not)\b",
        re.IGNORECASE,
    )

    def score(self, reply, name):
        return has(self.PATTERN, reply)


class PoliteTone(Preference):
    """A courteous reply ("you can", "please", "hope this helps", "happy to") beats a neutral one,
    which beats a condescending one ("obviously", "simply", "just", "of course", "clearly"):
    condescension costs a point whatever else the reply says."""

    key, top = "polite", 2
    description = "courteous > neutral > condescending ('obviously', 'simply', 'just')."
    best = "sound courteous"
    COURTEOUS = re.compile(
        r"\b(?:you can|you may|please|hope (?:this|that) helps|happy to|glad to|thanks?|"
        r"thank you|feel free)\b",
        re.IGNORECASE,
    )
    CONDESCENDING = re.compile(r"\b(?:obviously|simply|just|of course|clearly|trivially)\b",
                               re.IGNORECASE)  # fmt: skip

    def score(self, reply, name):
        if self.CONDESCENDING.search(reply):
            return 0
        return 1 + has(self.COURTEOUS, reply)


class Concise(Preference):
    """A reply of at most 12 words beats one of at most 24, which beats a longer one: the reader
    wants the answer, not an essay. The opposite of the longer-reply baseline, so a reward model
    that only learned length fails it."""

    key, top = "concise", 2
    description = "at most 12 words > at most 24 words > longer."
    best = "stay within 12 words"
    SHORT, MEDIUM = 12, 24

    def score(self, reply, name):
        words = len(reply.split())
        return 2 if words <= self.SHORT else 1 if words <= self.MEDIUM else 0


PREFERENCES: dict[str, Preference] = {
    p.key: p()
    for p in (SaysWhatItReturns, NamesTheFunction, GivesAnExampleCall, PlainWords,
              MentionsACaveat, PoliteTone, Concise)
}  # fmt: skip


def score_groups(preference: Preference, completions, name: str | None) -> dict[int, list[int]]:
    """{score: completion ids with that score}, in the order the completions come."""
    groups = {}
    for c in completions:
        groups.setdefault(preference.score(c.text, name), []).append(c.pk)
    return groups


def preference_order(preference: Preference, completions, name: str | None) -> list[list[int]]:
    """Groups of completion ids, best first, by the preference's score; equal scores are a tie."""
    groups = score_groups(preference, completions, name)
    return [groups[score] for score in sorted(groups, reverse=True)]
