"""Model versions: written when a run succeeds (`run_succeed`), registered by hand for a base
model trained elsewhere (`model_version_register`, e.g. `python -m training.ml.pretrain`), or
imported from a Hugging Face directory or a GGUF file (`model_version_import`)."""

import shutil
import tempfile
import uuid
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

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
    """Record a model directory written by `training.ml.model_files.save_model` (its config and
    tokenizer are checked; nothing is unpickled)."""
    from training.ml.model_files import read_config

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


def model_version_import(*, path: str, name: str = "", project=None) -> ModelVersion:
    """A base model version from `path`: one of our checkpoints is registered where it is; a
    Hugging Face directory or a GGUF file is read and checked whole (nothing is written for a
    bad one), saved as our checkpoint under ARTIFACTS_DIR/models/ with its tokenizer and chat
    format, then recorded."""
    from training.ml.model_files import read_config, save_model
    from training.ml.model_import import import_checkpoint

    field = ModelVersion._meta.get_field("name")
    if len(name) > field.max_length:
        raise Invalid(f"The name is longer than {field.max_length} characters.")
    source = Path(path).expanduser()
    try:
        read_config(source)
    except ValueError:
        pass  # not one of ours: import it below
    else:
        return model_version_register(checkpoint_dir=str(source), name=name, project=project)
    try:
        imported = import_checkpoint(source)
    except (ValueError, OSError) as exc:
        raise Invalid(f"Cannot import {source}: {exc}") from None
    stem = slugify(name or source.stem)[:60] or "model"
    directory = Path(settings.ARTIFACTS_DIR) / "models" / f"{stem}-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_path = Path(tmp) / "tokenizer.json"
        imported.tokenizer.save(tokenizer_path)
        save_model(directory, imported.model, tokenizer_path=tokenizer_path,
                   meta={"stage": "import", "source": imported.source})  # fmt: skip
    try:
        return model_version_create(
            kind="base", name=name, project=project, checkpoint_dir=str(directory),
            tokenizer_path=str(directory / "tokenizer.json"),
            metrics={"parameters": imported.source["parameters"]},
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
