"""Model versions: written when a run succeeds (`run_succeed`), or registered by hand for a base
model trained elsewhere (`model_version_register`, e.g. `python -m training.ml.pretrain`)."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction

from training.errors import Invalid
from training.models import ModelVersion

NAME_PREFIX = {"base": "base", "sft": "sft", "reward": "rm", "policy": "policy"}


def model_version_create(
    *,
    kind: str,
    checkpoint_dir: str,
    tokenizer_path: str,
    parent: ModelVersion | None = None,
    run=None,
    project=None,
    name: str = "",
    metrics: dict | None = None,
) -> ModelVersion:
    version = ModelVersion(
        kind=kind,
        name=name or "pending",
        project=project,
        parent=parent,
        run=run,
        checkpoint_dir=str(checkpoint_dir),
        tokenizer_path=str(tokenizer_path),
        metrics=metrics or {},
    )
    try:
        version.full_clean(exclude=["project", "parent", "run"])
    except ValidationError as exc:
        raise Invalid("; ".join(exc.messages)) from None
    with transaction.atomic():
        version.save()
        if not name:  # "sft-12": the kind and a number anyone can say aloud
            version.name = f"{NAME_PREFIX[kind]}-{version.pk}"
            version.save(update_fields=["name"])
    return version


def model_version_register(
    *, checkpoint_dir: str, kind: str = "base", name: str = "", project=None
) -> ModelVersion:
    """Record a model directory written by `training.ml.checkpoint.save_model` (its config and
    tokenizer are checked; nothing is unpickled)."""
    from training.ml.checkpoint import read_config

    directory = Path(checkpoint_dir).resolve()
    try:
        info = read_config(directory)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if not info["tokenizer_path"]:
        raise Invalid(f"{directory} was saved without a tokenizer.")
    return model_version_create(
        kind=kind,
        name=name,
        project=project,
        checkpoint_dir=str(directory),
        tokenizer_path=info["tokenizer_path"],
        metrics=info.get("meta", {}).get("metrics", {}),
    )
