"""Create the demo project from labeling/demo/python_stdlib.jsonl. Safe to run again.

    python manage.py load_demo_project [--author demo] [--ranking-tasks 40]

Prompts come with their demonstrations, credited to `--author` (created without a usable
password if missing). `--ranking-tasks N` also pushes N ranking tasks whose K completions are
the prompt's own answer and other prompts' answers (model label "demo-shuffle"), so there is
something to rank before any model has been trained.
"""
import random
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from labeling.importers import prompts_import
from labeling.models import Demonstration, Prompt
from labeling.services.projects import project_get_or_create
from labeling.services.tasks import ranking_tasks_create

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
        parser.add_argument("--file", type=Path, default=DEMO_FILE)

    def handle(self, *args, author, slug, ranking_tasks, file, **options):
        user, _ = get_user_model().objects.get_or_create(
            username=author, defaults={"password": "!"}  # "!": an unusable password
        )
        project, created = project_get_or_create(
            name="Python standard library (demo)", slug=slug, guidelines=GUIDELINES, k=4,
            overlap=2, ranking_guidelines=RANKING_GUIDELINES,
            writing_guidelines=WRITING_GUIDELINES, dialogue_guidelines=DIALOGUE_GUIDELINES,
        )
        report = prompts_import(
            project=project, content=file.read_bytes(), format="jsonl", author=user,
            source=Prompt.Source.DEMO,
        )
        pushed = self._ranking_tasks(project, ranking_tasks) if ranking_tasks else 0
        self.stdout.write(
            f"{'Created' if created else 'Updated'} {project.slug}: {report.created} new prompts, "
            f"{report.demonstrations} new demonstrations by {user.username}, "
            f"{pushed} ranking tasks."
        )

    def _ranking_tasks(self, project, n) -> int:
        answers = dict(
            Demonstration.objects.filter(prompt__project=project)
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
