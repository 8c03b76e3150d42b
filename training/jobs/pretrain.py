"""Pretraining: `training.ml.pretrain.pretrain` (tokenizer and tiny GPT from the standard
library's docs) in the run's folder -> a base model version. Resumes from its own checkpoint.
A pretraining run belongs to no project and takes no labeled rows."""

from training.jobs.declaration import Outcome, RunKind
from training.ml.configs import PretrainConfig


def run(context) -> Outcome:
    from django.conf import settings

    from training.jobs.common import dataclass_config
    from training.ml.pretrain import pretrain
    from training.ml.progress import json_safe

    config = dataclass_config(PretrainConfig, context.run.config)
    config.device = settings.TRAINING_DEVICE
    context.log(f"pretraining a {config.preset} model for {config.steps} steps")
    result = pretrain(config, out_dir=context.directory / "pretrain", on_step=context.reporter)
    if not result.finished:
        return Outcome(stopped=True)
    metrics = json_safe(result.metrics)
    return Outcome(
        output={"kind": "base", "checkpoint_dir": str(result.model_dir),
                "tokenizer_path": str(result.model_dir / "tokenizer.json"), "parent": None,
                "metrics": metrics},
        metrics=metrics,
    )  # fmt: skip


KIND = RunKind(
    name="pretrain",
    title="Pretrain a base model (standard-library docs)",
    noun="a pretraining run",
    order=10,
    config=PretrainConfig,
    run=run,
    makes="base",
    in_project=False,
    charts={"loss": ("loss", "val_loss")},
)
