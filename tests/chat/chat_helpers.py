"""Helpers for the chat tests (import as `from chat_helpers import ...`)."""

from training.models import ModelVersion


def version(name, kind=ModelVersion.Kind.SFT, project=None) -> ModelVersion:
    """A model version row: enough for the pages and services (no worker loads it here)."""
    return ModelVersion.objects.create(kind=kind, name=name, project=project,
                                       checkpoint_dir=f"/models/{name}",
                                       tokenizer_path=f"/models/{name}/tokenizer.json")  # fmt: skip
