"""`manage.py demo_setup` (what `make demo` runs): the demo users and project, the shipped
SmolLM2-135M-Instruct as the project's base model, and a first sampling run queued, so a new
user's ranking queue fills with a real model's replies. Run twice, it changes nothing."""

import socket

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from chat.services.conversations import chat_models
from labeling.models import RankingTask
from labeling.selectors import labeler_home
from training import worker
from training.models import ModelVersion, TrainingRun
from training.services.runs import run_create


@pytest.mark.django_db(transaction=True)  # the runner's heartbeat thread has its own connection
def test_demo_setup_registers_the_real_model_and_queues_its_replies(settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    call_command("demo_setup")
    version = ModelVersion.objects.get(name="SmolLM2-135M-Instruct")
    assert version.kind == "base" and version.project.slug == "python-stdlib"
    assert version.metrics["parameters"] > 130e6
    queued = TrainingRun.objects.get(kind="sample", input_model=version)
    assert queued.status == "queued" and queued.prompts.count() == 32
    assert queued.config["max_new_tokens"] == 128
    assert list(chat_models(version.project)) == [version]  # labelers can talk to it

    # A labeler has work from the first minute: ranking tasks and prompts to answer.
    [queue] = labeler_home(labeler=get_user_model().objects.get(username="labeler"))
    assert queue.rankings_waiting == 12 and queue.demonstrations_waiting == 16

    call_command("demo_setup")  # again: nothing new
    assert ModelVersion.objects.count() == 1 and TrainingRun.objects.count() == 1
    assert get_user_model().objects.filter(username__in=["admin", "labeler"]).count() == 2

    # What the worker does with such a run, kept small: real replies become ranking tasks.
    small = run_create(kind="sample", project=version.project, input_model=version,
                       config={"num_prompts": 2, "max_new_tokens": 24},
                       enqueue_it=False)  # fmt: skip
    worker.execute(run_id=small.pk, key=str(small.key), worker=f"test@{socket.gethostname()}")
    small.refresh_from_db()
    assert small.status == "succeeded", small.error
    tasks = RankingTask.objects.filter(batch_key=f"training-run-{small.pk}")
    assert tasks.count() == 2
    for task in tasks:
        texts = [item.completion.text for item in task.items.select_related("completion")]
        assert len(texts) == version.project.k
        assert all(text.strip() and "<|im_end|>" not in text for text in texts)
        sampling = task.items.first().completion.sampling
        assert sampling["dtype"] in ("float32", "bfloat16") and sampling["max_new_tokens"] == 24
