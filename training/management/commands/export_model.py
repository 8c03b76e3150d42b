"""Export a model version for transformers (a Hugging Face directory) or llama.cpp (GGUF).

    python manage.py export_model policy-12 --format hf
    python manage.py export_model policy-12 --format gguf --dtype f32
"""

from django.core.management.base import BaseCommand, CommandError

from training.errors import TrainingError
from training.models import ModelVersion
from training.services.exports import FORMATS, model_version_export


class Command(BaseCommand):
    help = "Write a model version as a Hugging Face directory or a GGUF file under ARTIFACTS_DIR."

    def add_arguments(self, parser):
        parser.add_argument("version", help="the version's name or id")
        parser.add_argument("--format", choices=list(FORMATS), default="hf")
        parser.add_argument("--dtype", choices=["f16", "f32"], default="f16", help="GGUF only")

    def handle(self, *args, version, format, dtype, **options):
        found = ModelVersion.objects.filter(name=version).order_by("-id").first()
        if found is None and version.isdigit():
            found = ModelVersion.objects.filter(pk=int(version)).first()
        if found is None:
            raise CommandError(f"No model version {version!r}.")
        try:
            export = model_version_export(version=found, format=format, dtype=dtype)
        except TrainingError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"{FORMATS[format]} ({export.bytes / 2**20:.1f} MiB): {export.path}")
