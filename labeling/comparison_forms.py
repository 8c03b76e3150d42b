"""The comparison page's form: which reply is better, and optional per-reply labels. Parses the
post into `vote_submit` arguments; the rules live in the service."""
from django import forms

from labeling.evaluation_models import LIKERT_MAX, LIKERT_MIN, REPLY_FLAGS
from labeling.forms import TimedForm
from labeling.models import Vote
from labeling.validation import MAX_COMMENT_CHARS

SIDES = ("a", "b")
KEYS = {"a": "A", "b": "B", "tie": "T", "both_bad": "X"}
LIKERT_CHOICES = list(range(LIKERT_MIN, LIKERT_MAX + 1))


class VoteForm(TimedForm):
    outcome = forms.ChoiceField(
        choices=Vote.Outcome.choices,
        error_messages={"required": "Say which reply is better (or tie, or both bad)."},
    )
    likert_a = forms.TypedChoiceField(
        choices=[("", "–")] + [(str(i), str(i)) for i in range(LIKERT_MIN, LIKERT_MAX + 1)],
        coerce=int, required=False, empty_value=None,
    )
    likert_b = forms.TypedChoiceField(
        choices=[("", "–")] + [(str(i), str(i)) for i in range(LIKERT_MIN, LIKERT_MAX + 1)],
        coerce=int, required=False, empty_value=None,
    )
    flags_a = forms.MultipleChoiceField(choices=list(REPLY_FLAGS.items()), required=False)
    flags_b = forms.MultipleChoiceField(choices=list(REPLY_FLAGS.items()), required=False)
    comment = forms.CharField(required=False, max_length=MAX_COMMENT_CHARS, strip=True)

    def vote(self) -> dict:
        """`vote_submit` keyword arguments (with the assignment and labeler added by the view)."""
        data = self.cleaned_data
        return {
            "outcome": data["outcome"], "likert_a": data["likert_a"],
            "likert_b": data["likert_b"], "comment": data["comment"],
            "flags": {side: data[f"flags_{side}"] for side in SIDES if data[f"flags_{side}"]},
            "time_spent_ms": self.time_spent(),
        }

    def outcomes(self) -> list[dict]:
        """The four choices with their key and whether they are picked (a form shown again)."""
        picked = self["outcome"].value()
        return [{"value": v, "label": label, "key": KEYS[v], "checked": picked == v}
                for v, label in Vote.Outcome.choices]

    def sides(self, reply_a, reply_b) -> list[dict]:
        rows = []
        for side, reply in zip(SIDES, (reply_a, reply_b), strict=True):
            checked = self[f"flags_{side}"].value() or []
            rows.append({
                "side": side, "letter": side.upper(), "reply": reply,
                "likert_name": f"likert_{side}", "likert": self[f"likert_{side}"].value(),
                "flags_name": f"flags_{side}",
                "flags": [{"value": v, "label": label, "checked": v in checked}
                          for v, label in REPLY_FLAGS.items()],
            })  # fmt: skip
        return rows

