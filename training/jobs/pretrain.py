"""Pretrain job: `training.ml.pretrain.pretrain` (tokenizer and tiny GPT from the standard
library's docs) in the run's folder -> a base model version. Resumes from its own checkpoint."""

from django.conf import settings

from training.jobs.common import dataclass_config
from training.jobs.runner import Outcome
from training.ml.pretrain import PretrainConfig, pretrain
from training.services.lifecycle import json_safe


def run(context) -> Outcome:
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
