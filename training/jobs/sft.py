"""SFT: the run's demonstrations -> `training.ml.sft.train_sft` on its input model -> an SFT
model version whose parent is that model."""

from training.jobs.declaration import Outcome, RunKind
from training.ml.configs import SFTConfig


def rows(snapshot, config: dict) -> None:
    snapshot.take_demonstrations(purpose="SFT")


def run(context) -> Outcome:
    from training.jobs.common import (
        dataclass_config,
        demonstration_records,
        load_version,
        output,
        resume_note,
    )
    from training.ml.model_files import save_model
    from training.ml.progress import json_safe
    from training.ml.sft import train_sft

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


KIND = RunKind(
    name="sft",
    title="Fine-tune on the demonstrations (SFT)",
    noun="an SFT run",
    order=20,
    config=SFTConfig,
    run=run,
    takes=("base", "sft"),
    makes="sft",
    needs="demonstrations",
    rows=rows,
    charts={"loss": ("loss", "val_loss")},
)
