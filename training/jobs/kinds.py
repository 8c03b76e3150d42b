"""The run kinds: one `RunKind` object per kind, declared as `KIND` in its own module of
`training.jobs` (`training/jobs/sft.py`, ...), found here by looking at those modules.

Everything that differs between kinds is on the object: the services read the inputs, queue,
minimum data and snapshot rule; the start form and the run page its title, settings (the
`setting(...)` fields of its config dataclass) and charts; the worker its `run`. Adding a kind is
one module with a `KIND` (and the migration for `TrainingRun.Kind`); nothing else lists kinds.

This module and the kinds' modules import no service and no torch at import time (a job's ML
imports are inside its `run`): the services import the registry, the worker (`training.worker`)
calls the jobs, and the web process reads a declaration without loading the ML stack.

    run_kind("sft").takes   -> ("base", "sft")
"""

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from training.errors import Invalid


@dataclass
class Outcome:
    """What a job hands back: stopped early, or finished with an optional model to record."""

    stopped: bool = False
    output: dict | None = None  # model_version_create kwargs: kind, checkpoint_dir, ...
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunKind:
    name: str  # TrainingRun.kind
    title: str  # the start form's heading
    noun: str  # with its article, for messages: "an SFT run"
    order: int  # place on the training page, in the loop's order
    config: type  # the training.ml config dataclass; its setting() fields are the run's settings
    run: Callable  # run(context: training.worker.Context) -> Outcome
    takes: tuple[str, ...] = ()  # ModelVersion kinds it may start from; empty: no input model
    makes: str | None = None  # the ModelVersion kind it records, if any
    reward_model: str | None = None  # "required" or "optional": a reward model as second input
    queue: str = "training"  # the Celery queue of its task
    in_project: bool = True  # False: a run of no project (pretraining)
    # The minimum data shown on its start form: settings.TRAINING_MIN_<NEEDS>
    needs: str | None = None
    # The snapshot rule: rows(snapshot, config) takes the labeled rows it trains on into a
    # `training.services.snapshots.DatasetSnapshot`, or raises Invalid when too few.
    rows: Callable | None = None
    # Its run page's charts: title -> the metric names drawn on it
    charts: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def task_name(self) -> str:
        """The Celery task that runs it (`training.tasks`), enqueued by this name."""
        return f"training.{self.name}"


@cache
def run_kinds() -> dict[str, RunKind]:
    """Every declared kind by name, in page order (each module of training.jobs with a KIND)."""
    import training.jobs

    found = []
    for module in pkgutil.iter_modules(training.jobs.__path__):
        kind = getattr(importlib.import_module(f"training.jobs.{module.name}"), "KIND", None)
        if isinstance(kind, RunKind):
            found.append(kind)
    return {kind.name: kind for kind in sorted(found, key=lambda k: k.order)}


def run_kind(name: str) -> RunKind:
    """The kind called `name`, or `Invalid` naming it."""
    try:
        return run_kinds()[name]
    except (KeyError, TypeError):
        raise Invalid(f"Unknown run kind {name!r}.") from None
