"""SFT job: the run's demonstrations -> `training.ml.sft.train_sft` on its input model -> an SFT
model version whose parent is that model."""

from training.jobs.common import (
    dataclass_config,
    demonstration_records,
    load_version,
    output,
    resume_note,
)
from training.jobs.runner import Outcome
from training.ml.checkpoint import save_model
from training.ml.sft import SFTConfig, train_sft
from training.services.lifecycle import json_safe


def run(context) -> Outcome:
    run = context.run
    model, tokenizer = load_version(run.input_model)
    demos = demonstration_records(run.demonstrations.all())
    context.log(
        f"SFT on {len(demos)} demonstrations from {run.input_model.name}" + resume_note(context)
    )
    result = train_sft(
        model,
        tokenizer,
        demos,
        dataclass_config(SFTConfig, run.config),
        on_step=context.reporter,
        checkpoint_dir=context.checkpoint_dir,
    )
    if result.stopped:
        return Outcome(stopped=True)
    metrics = json_safe(result.metrics)
    save_model(
        context.model_dir,
        model,
        tokenizer_path=run.input_model.tokenizer_path,
        meta={"stage": "sft", "run": run.pk, "metrics": metrics},
    )
    return Outcome(
        output=output("sft", context, parent=run.input_model, metrics=metrics), metrics=metrics
    )
