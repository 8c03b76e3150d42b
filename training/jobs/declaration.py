"""What a run kind declares (`RunKind`), and what its job hands back (`Outcome`).

Apart from the registry (`training.jobs.kinds`), which imports the kinds' modules to find them:
a kind's module imports this one, so nothing imports in a circle.
"""

from collections.abc import Callable
from dataclasses import dataclass, field


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
    # Checks of its settings against the project and its inputs, when a run is created:
    # check(config, project=..., input_model=...) raises Invalid with the reason.
    check: Callable | None = None
    # Its run page's charts: title -> the metric names drawn on it
    charts: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def task_name(self) -> str:
        """The Celery task that runs it (`training.tasks`), enqueued by this name."""
        return f"training.{self.name}"
