"""Helpers the jobs share: loading a model version, the device, rows to `training.ml` records.

Its torch-bound imports are inside the functions that need them: the registry imports every
module of `training.jobs` (`training.jobs.kinds.run_kinds`), in the web process too."""

from dataclasses import fields

from django.conf import settings

from training.ml import records
from training.models import ModelVersion


def device():
    """settings.TRAINING_DEVICE ("cpu", "cuda") or the best there is."""
    from training.ml.device import pick_device

    return pick_device(settings.TRAINING_DEVICE)


def load_version(version: ModelVersion, dev=None):
    """(model, tokenizer) of a model version, on `dev`."""
    from training.ml.model_files import load_model
    from training.ml.tokenizer import ChatTokenizer

    model, _ = load_model(version.checkpoint_dir, dev or device())
    return model, ChatTokenizer.load(version.tokenizer_path)


def dataclass_config(cls, config: dict):
    """`cls(**config)` with only the fields `cls` has (a run's config also holds job settings)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in config.items() if k in names})


def demonstration_records(queryset) -> list[records.Demonstration]:
    """The run's demonstrations as SFT records, in id order; prompts keep them on one side of
    the validation split."""
    rows = queryset.order_by("id").values_list("turns", "prompt_id")
    return [records.Demonstration(turns=turns, prompt_id=prompt_id) for turns, prompt_id in rows]


def output(kind: str, context, *, parent: ModelVersion | None, metrics: dict) -> dict:
    """The model version a finished job records: its model directory and tokenizer."""
    return {
        "kind": kind,
        "checkpoint_dir": str(context.model_dir),
        "tokenizer_path": str(context.model_dir / "tokenizer.json"),
        "parent": parent,
        "metrics": metrics,
    }


def resume_note(context) -> str:
    """ "; resuming from checkpoint step-000040" when the run has a checkpoint, else ""."""
    from training.ml.resume import latest_checkpoint

    path = latest_checkpoint(context.checkpoint_dir)
    return f"; resuming from checkpoint {path.name}" if path else ""
