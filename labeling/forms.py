"""Forms of the labeler UI (and the admin's import upload): they parse what the browser posts
into service arguments.

They check the shape of the post (every reply has a rank, numbers are numbers); the rules of
labeling (an ordering of exactly the task's completions, text limits, leases) live in the
services, which the views call with what these forms return.
"""
import string
import time
import uuid

from django import forms

from labeling.models import Project
from labeling.services.rankings import FLAGS, MAX_TIME_SPENT_MS
from labeling.validation import MAX_COMMENT_CHARS, MAX_REASON_CHARS, MAX_TEXT_CHARS, MAX_TURNS

FLAG_LABELS = {"harmful": "Harmful", "untrue": "Untrue", "private": "Private data"}


def now_ms() -> int:
    return int(time.time() * 1000)


class TimedForm(forms.Form):
    """Time spent: measured by the page's script while visible; without JavaScript, the time
    between rendering the page (`opened_at`) and the submit."""

    time_spent_ms = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)
    opened_at = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def time_spent(self) -> int:
        measured = self.cleaned_data.get("time_spent_ms")
        if measured:
            return measured
        opened = self.cleaned_data.get("opened_at")
        if not opened:
            return 0
        return max(0, min(now_ms() - opened, MAX_TIME_SPENT_MS))


class RankingForm(TimedForm):
    """One rank select and flag boxes per completion; equal ranks are a tie."""

    all_bad = forms.BooleanField(required=False)
    comment = forms.CharField(required=False, max_length=MAX_COMMENT_CHARS, strip=True)
    # The cards' order on screen (the script keeps it, so a tie reads as it was left); the
    # ranking itself is the rank numbers.
    display_order = forms.CharField(required=False, max_length=400, widget=forms.HiddenInput)

    def __init__(self, *args, completions, **kwargs):
        super().__init__(*args, **kwargs)
        self.completions = list(completions)
        ranks = [("", "–")] + [(str(i), str(i)) for i in range(1, len(self.completions) + 1)]
        for completion in self.completions:
            self.fields[f"rank_{completion.pk}"] = forms.TypedChoiceField(
                choices=ranks, coerce=int,
                error_messages={"required": "Give this reply a rank."},
            )
            self.fields[f"flags_{completion.pk}"] = forms.MultipleChoiceField(
                required=False, choices=[(f, FLAG_LABELS[f]) for f in FLAGS]
            )

    def rows(self):
        """What the template shows per completion, in the (shuffled) order it was given."""
        for i, completion in enumerate(self.completions):
            rank, flags = self[f"rank_{completion.pk}"], self[f"flags_{completion.pk}"]
            yield {
                "letter": _letter(i),
                "position": i + 1,
                "completion": completion,
                "rank_name": rank.html_name,
                "rank": str(rank.value() or "") if self.is_bound else "",
                "flags_name": flags.html_name,
                "flags": [
                    {"value": f, "label": FLAG_LABELS[f],
                     "checked": f in (flags.value() or [])}
                    for f in FLAGS
                ],
                "errors": rank.errors + flags.errors,
            }

    def rank_choices(self):
        return range(1, len(self.completions) + 1)

    def order(self) -> list[list[int]]:
        """Groups of completion ids, best first: equal numbers form one group (a tie)."""
        by_rank: dict[int, list[int]] = {}
        for completion in self.completions:
            by_rank.setdefault(self.cleaned_data[f"rank_{completion.pk}"], []).append(completion.pk)
        return [by_rank[r] for r in sorted(by_rank)]

    def flags(self) -> dict[str, list[str]]:
        return {
            str(c.pk): self.cleaned_data[f"flags_{c.pk}"]
            for c in self.completions
            if self.cleaned_data.get(f"flags_{c.pk}")
        }


def _letter(i: int) -> str:
    return string.ascii_uppercase[i] if i < 26 else str(i + 1)


class DemonstrationForm(TimedForm):
    reply = forms.CharField(max_length=MAX_TEXT_CHARS, strip=False)
    client_token = forms.CharField(max_length=64)

    def clean_reply(self):
        reply = self.cleaned_data["reply"]
        if not reply.strip():
            raise forms.ValidationError("Write the reply before submitting.")
        return reply


class DialogueForm(TimedForm):
    """Turns alternate user, assistant, ... The posted `turn` fields are read in order; the
    buttons "add a turn" / "remove the last turn" re-show the form without saving (no-JS)."""

    client_token = forms.CharField(max_length=64)
    suggestion = forms.IntegerField(required=False, widget=forms.HiddenInput)
    # {turn number: live suggestion key} from the "Suggest" buttons (chat/static/chat/suggest.js).
    live_suggestions = forms.JSONField(required=False, widget=forms.HiddenInput)

    ADD, REMOVE, SUBMIT = "add", "remove", "submit"

    def __init__(self, data=None, *, turns=None, **kwargs):
        super().__init__(data, **kwargs)
        if data is not None:
            # All of them: the service refuses more than MAX_TURNS, none is dropped unsaid.
            turns = [t.replace("\r\n", "\n") for t in data.getlist("turn")]
            self.action = data.get("action", self.SUBMIT)
        else:
            self.action = None
        self.turn_texts = list(turns or ["", ""])

    @staticmethod
    def new_token() -> str:
        return uuid.uuid4().hex

    def edited_turns(self) -> list[str]:
        """The turns after an add/remove button (no save)."""
        texts = list(self.turn_texts)
        if self.action == self.ADD and len(texts) < MAX_TURNS:
            texts.append("")
        elif self.action == self.REMOVE and len(texts) > 2:
            texts.pop()
        return texts

    def turns(self) -> list[dict]:
        return [
            {"role": "user" if i % 2 == 0 else "assistant", "content": text}
            for i, text in enumerate(self.turn_texts)
        ]

    def rows(self, texts=None):
        texts = self.turn_texts if texts is None else texts
        return [
            {"number": i + 1, "role": "user" if i % 2 == 0 else "assistant", "content": text}
            for i, text in enumerate(texts)
        ]


class SkipForm(forms.Form):
    reason = forms.CharField(
        max_length=MAX_REASON_CHARS,
        error_messages={"required": "Say briefly why you skip this task."},
    )


class PromptImportForm(forms.Form):
    """The admin's upload: which project, which file; `labeling.importers` checks the lines."""

    project = forms.ModelChoiceField(queryset=Project.objects.order_by("name"))
    file = forms.FileField(help_text="JSONL (one object a line) or CSV with a prompt column; "
                                     "the format follows the file name (.csv or not).")
    demonstrations_needed = forms.IntegerField(
        min_value=0, max_value=20, initial=1,
        help_text="For lines that do not say: how many people should write a demonstration.",
    )
    evaluation_share = forms.FloatField(
        min_value=0, max_value=1, initial=0, required=False,
        help_text="Hold out this random share of the new prompts for evaluation (0 to 1); "
                  "a line can also say \"evaluation\": true.",
    )
