"""Create the demo project from labeling/demo/python_stdlib.jsonl. Safe to run again.

    python manage.py load_demo_project [--author demo] [--ranking-tasks 40] [--open-prompts 16] \
        [--evaluation-share 0.05]

Prompts come with their demonstrations, credited to `--author` (created without a usable
password if missing), except the last `--open-prompts N`: those wait for a labeler to write
their ideal reply. `--ranking-tasks N` also pushes N ranking tasks whose K completions are
the prompt's own answer and other prompts' answers (model label "demo-shuffle"), so there is
something to rank before any model has been trained. A random `--evaluation-share` of the new
prompts is held out for human evaluation (never trained on).
"""
import json
import random
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from labeling.importers import prompts_import
from labeling.models import Demonstration, Prompt
from labeling.services.evaluation_prompts import evaluation_share_pick, prompts_mark_evaluation
from labeling.services.projects import project_get_or_create
from labeling.services.ranking_tasks import ranking_tasks_create

DEMO_FILE = Path(__file__).resolve().parents[2] / "demo" / "python_stdlib.jsonl"
GUIDELINES = """Questions a Python programmer asks about the standard library.
- Correct first: an answer that names the wrong function is worse than a vague right one.
- Then clear and short: say what the function does, in a sentence or two.
"""
RANKING_GUIDELINES = """Rank the answers from most to least helpful.
- Flag anything harmful, untrue or private. Mark ties when two answers are equally good.
"""
WRITING_GUIDELINES = """Write the answer you would want to read: the function's name, what it
does, and a two-line example in a fenced block (```python ... ```) when it helps.
"""
DIALOGUE_GUIDELINES = """Play a programmer asking about the standard library and the assistant
answering; follow-up questions may go deeper (edge cases, alternatives). End with the assistant.
"""


class Command(BaseCommand):
    help = "Create the Python stdlib demo project with prompts and demonstrations (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--author", default="demo")
        parser.add_argument("--slug", default="python-stdlib")
        parser.add_argument("--ranking-tasks", type=int, default=0)
        parser.add_argument("--open-prompts", type=int, default=0,
                            help="the last N prompts come without their answer (to be written)")
        parser.add_argument("--file", type=Path, default=DEMO_FILE)
        parser.add_argument("--evaluation-share", type=float, default=0.05)

    def handle(self, *args, author, slug, ranking_tasks, open_prompts, file, evaluation_share,
               **options):
        user, _ = get_user_model().objects.get_or_create(
            username=author, defaults={"password": "!"}  # "!": an unusable password
        )
        project, created = project_get_or_create(
            name="Python standard library (demo)", slug=slug, guidelines=GUIDELINES, k=4,
            overlap=2, ranking_guidelines=RANKING_GUIDELINES,
            writing_guidelines=WRITING_GUIDELINES, dialogue_guidelines=DIALOGUE_GUIDELINES,
        )
        report = prompts_import(
            project=project, content=_without_answers(file, open_prompts), format="jsonl",
            author=user, source=Prompt.Source.DEMO,
        )
        held_out = self._hold_out(project, evaluation_share) if report.created else 0
        pushed = self._ranking_tasks(project, ranking_tasks) if ranking_tasks else 0
        self.stdout.write(
            f"{'Created' if created else 'Updated'} {project.slug}: {report.created} new prompts, "
            f"{report.demonstrations} new demonstrations by {user.username} "
            f"({held_out} prompts held out for evaluation), {pushed} ranking tasks."
        )

    def _hold_out(self, project, share: float) -> int:
        """Evaluation prompts drawn from the answered ones: the prompts left open for people to
        write for all stay in the writing queue."""
        answered = set(Demonstration.objects.filter(prompt__project=project)
                       .values_list("prompt_id", flat=True))  # fmt: skip
        picked = evaluation_share_pick(sorted(answered), share=share, seed=0)
        return prompts_mark_evaluation(project=project, prompt_ids=picked) if picked else 0

    def _ranking_tasks(self, project, n) -> int:
        answers = dict(
            Demonstration.objects.filter(prompt__project=project, prompt__is_evaluation=False)
            .order_by("id").values_list("prompt_id", "turns")
        )
        prompt_ids = sorted(answers)[:n]
        rng = random.Random(0)
        batch = []
        for prompt_id in prompt_ids:
            others = rng.sample([p for p in answers if p != prompt_id], project.k - 1)
            texts = [answers[p][-1]["content"] for p in [prompt_id, *others]]
            batch.append((prompt_id, [
                {"text": t, "model_label": "demo-shuffle", "model_version_id": None,
                 "sampling": {"seed": 0}} for t in texts
            ]))
        return len(ranking_tasks_create(
            project=project, prompt_completions=batch, batch_key="demo"
        ))


def _without_answers(file: Path, n: int) -> bytes:
    """The file's lines, the last `n` without their "response": prompts left to be answered."""
    lines = [line for line in file.read_text().splitlines() if line.strip()]
    if n > 0:
        cut = max(0, len(lines) - n)
        open_rows = [json.loads(line) for line in lines[cut:]]
        lines[cut:] = [json.dumps({k: v for k, v in row.items() if k != "response"})
                       for row in open_rows]
    return ("\n".join(lines) + "\n").encode()
