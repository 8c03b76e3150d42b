"""Import prompts (and demonstrations) into a project from a JSONL or CSV file.

    python manage.py import_prompts --project python-stdlib prompts.jsonl [--author lena]
"""
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from labeling import selectors
from labeling.errors import ImportFailed, LabelingError
from labeling.importers import MAX_BYTES, format_for, prompts_import


class Command(BaseCommand):
    help = "Import prompts (and optional demonstrations) from JSONL or CSV; all lines or none."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--format", choices=["jsonl", "csv"], help="default: from the suffix")
        parser.add_argument("--author", help="username credited with the demonstrations")
        parser.add_argument("--demonstrations-needed", type=int, default=1)
        parser.add_argument("--evaluation-share", type=float, default=0.0,
                            help="hold out this random share of the new prompts for evaluation")

    def handle(self, *args, path, project, format, author, demonstrations_needed,
               evaluation_share, **options):
        user = None
        if author:
            user = get_user_model().objects.filter(username=author).first()
            if user is None:
                raise CommandError(f"No user {author!r}.")
        try:
            with path.open("rb") as file:
                content = file.read(MAX_BYTES + 1)
            report = prompts_import(
                project=selectors.project_by_slug(slug=project), content=content,
                format=format or format_for(path.name), author=user,
                demonstrations_needed=demonstrations_needed, evaluation_share=evaluation_share,
            )
        except ImportFailed as exc:
            for number, message in exc.errors:
                self.stderr.write(f"{path}:{number}: {message}")
            raise CommandError(exc.message) from None
        except LabelingError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(report.summary())
