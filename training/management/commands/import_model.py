"""Register a model as a base model version: a Hugging Face directory (llama, qwen2, mistral,
gpt2), a GGUF file of the llama architecture, or one of our own checkpoints.

    python manage.py import_model models/SmolLM2-135M-Instruct --name smollm2 --project demo
    python manage.py import_model --shipped --project python-stdlib   # the SmolLM2 GGUF we ship
"""

from django.core.management.base import BaseCommand, CommandError

from labeling import selectors
from training.ml.shipped import SHIPPED_NAME, shipped_model_path
from training.services.model_versions import model_version_import
from webapp.errors import ServiceError


class Command(BaseCommand):
    help = "Import a Hugging Face directory or a GGUF file as a base model version."

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", help="model directory or .gguf file")
        parser.add_argument("--shipped", action="store_true",
                            help=f"the {SHIPPED_NAME} GGUF installed with the project")  # fmt: skip
        parser.add_argument("--name", default="", help="the version's name (default base-<id>)")
        parser.add_argument("--project", help="project slug (default: no project, any may use it)")

    def handle(self, *args, path, shipped, name, project, **options):
        if bool(path) == shipped:
            raise CommandError("Give a PATH or --shipped (one of them).")
        try:
            project = selectors.project_by_slug(slug=project) if project else None
            if shipped:
                path, name = shipped_model_path(), name or SHIPPED_NAME
            version = model_version_import(path=str(path), name=name, project=project)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        except ValueError as exc:  # the shipped model is not installed
            raise CommandError(str(exc)) from None
        params = version.metrics.get("parameters")
        size = f", {params / 1e6:.1f}M parameters" if params else ""
        self.stdout.write(f"{version.name} (id {version.pk}){size}: {version.checkpoint_dir}")
