"""`manage.py continue_round --project SLUG`: what the "continue round" button does: the open
round moves on (rankings checked again, a failed run resumed) or, with none open, the next round
starts from the newest policy. `--waiting` moves on every round waiting for rankings (safe to run
from cron every minute: rankings that came in are picked up without anyone pressing a button)."""

from django.core.management.base import BaseCommand, CommandError

from labeling.models import Project
from training.errors import TrainingError
from training.services.rounds import round_continue, rounds_advance_waiting


class Command(BaseCommand):
    help = "Continue a project's training round (or every round waiting for rankings)."

    def add_arguments(self, parser):
        parser.add_argument("--project", help="project slug")
        parser.add_argument("--waiting", action="store_true",
                            help="move on every round waiting for rankings")  # fmt: skip

    def handle(self, *args, project, waiting, **options):
        if waiting:
            for round_ in rounds_advance_waiting():
                self.show(round_)
            return
        if not project:
            raise CommandError("Name a --project, or use --waiting.")
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"There is no project {project!r}.")
        try:
            self.show(round_continue(project=found))
        except TrainingError as exc:
            raise CommandError(exc.message) from None

    def show(self, round_):
        run = round_.current_run
        going = f", run #{run.pk} {run.status}" if run else ""
        self.stdout.write(f"{round_.project.slug} round {round_.number}: {round_.stage}{going}")
