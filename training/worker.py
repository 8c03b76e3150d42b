"""Run a training run in this worker process: start it, report while it goes, finish it.

    execute(run_id=7, key="...", worker="celery@gpu1")

- `run_start` decides whether this worker may run it (queued, or running under a dead worker);
  otherwise nothing happens, so a task delivered twice trains once.
- The kind's job (`RunKind.run`, `training.jobs.kinds`) reports each step through a
  `Reporter` (the `on_step` callback of `training.ml`): it buffers the metrics and writes
  progress and curve points at most every `TRAINING_PROGRESS_INTERVAL` seconds; it answers
  True (stop) when a person cancelled.
- A `Heartbeat` thread beats every `TRAINING_HEARTBEAT_SECONDS`, also through long phases with no
  step (loading, evaluating, sampling), so only a dead worker goes quiet.
- Checkpoints live in `ARTIFACTS_DIR/runs/<id>/`; a resumed run continues from the last one.
- An exception fails the run with its message (the traceback goes to the worker log and the
  run's log tail), never a traceback page.
"""

import logging
import shutil
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection

from training.jobs.declaration import Outcome
from training.jobs.kinds import run_kind
from training.ml.progress import Progress
from training.models import TrainingRun
from training.services import lifecycle

logger = logging.getLogger(__name__)
SKIPPED = "skipped: not queued for this worker"


class Reporter:
    """The `on_step` callback: buffered progress writes; True means stop."""

    def __init__(self, run: TrainingRun, *, interval: float | None = None):
        self.run_id, self.attempt = run.pk, run.attempt
        self.interval = interval if interval is not None else settings.TRAINING_PROGRESS_INTERVAL
        self.points: list[tuple[int, dict]] = []
        self.last_write = 0.0
        self.stop = False  # also set by the heartbeat thread when it sees a cancel
        self.latest: Progress | None = None

    def __call__(self, progress: Progress) -> bool:
        self.latest = progress
        self.points.append((progress.step, dict(progress.metrics)))
        if progress.step >= progress.total or time.monotonic() - self.last_write >= self.interval:
            self.flush()
        return self.stop

    def flush(self) -> None:
        if self.latest is None:
            return
        p, points, self.points = self.latest, self.points, []
        self.stop = (
            lifecycle.run_progress(
                run_id=self.run_id,
                attempt=self.attempt,
                step=p.step,
                total=p.total,
                metrics=p.metrics,
                points=points,
            )
            or self.stop
        )
        self.last_write = time.monotonic()

    def log(self, line: str) -> None:
        logger.info("run %s: %s", self.run_id, line)
        lifecycle.run_log(run_id=self.run_id, attempt=self.attempt, line=line)


class Heartbeat(threading.Thread):
    def __init__(self, reporter: Reporter, *, every: float | None = None):
        super().__init__(name=f"heartbeat-run-{reporter.run_id}", daemon=True)
        self.reporter = reporter
        self.every = every if every is not None else settings.TRAINING_HEARTBEAT_SECONDS
        self.done = threading.Event()

    def run(self):
        try:
            while not self.done.wait(self.every):
                try:
                    if lifecycle.run_heartbeat(
                        run_id=self.reporter.run_id, attempt=self.reporter.attempt
                    ):
                        self.reporter.stop = True
                except Exception:  # a database blip must not kill the run; the next beat retries
                    logger.exception("heartbeat of run %s failed", self.reporter.run_id)
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join(timeout=30)


@dataclass
class Context:
    run: TrainingRun
    reporter: Reporter
    directory: Path  # ARTIFACTS_DIR/runs/<id>/

    @property
    def checkpoint_dir(self) -> Path:
        return self.directory / "checkpoint"

    @property
    def model_dir(self) -> Path:
        return self.directory / "model"

    def log(self, line: str) -> None:
        self.reporter.log(line)


def run_directory(run: TrainingRun) -> Path:
    """ARTIFACTS_DIR/runs/<id>/, holding a KEY file: a folder left by another database's run of
    the same id is moved aside, never resumed from."""
    directory = Path(settings.ARTIFACTS_DIR) / "runs" / str(run.pk)
    key_file = directory / "KEY"
    if directory.exists() and (
        not key_file.exists() or key_file.read_text().strip() != str(run.key)
    ):
        shutil.move(directory, directory.with_name(f"{run.pk}.orphan-{int(time.time())}"))
    directory.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        key_file.write_text(str(run.key))
    return directory


def execute(*, run_id: int, key: str, worker: str) -> str:
    """Run the run if this worker may; returns what happened (for the worker log)."""
    close_old_connections()
    run = lifecycle.run_start(run_id=run_id, key=key, worker=worker)
    if run is None:
        return SKIPPED
    reporter = Reporter(run)
    try:
        with Heartbeat(reporter):
            context = Context(run, reporter, run_directory(run))
            outcome: Outcome = run_kind(run.kind).run(context)
            reporter.flush()
    except Exception as exc:
        logger.exception("run %s failed", run_id)
        tail = "".join(traceback.format_exception(exc)[-3:])
        lifecycle.run_fail(
            run_id=run_id, attempt=run.attempt, error=f"{type(exc).__name__}: {exc}", log=tail
        )
        return "failed"
    if outcome.stopped:
        lifecycle.run_stopped(run_id=run_id, attempt=run.attempt)
        return "stopped"
    lifecycle.run_succeed(
        run_id=run_id, attempt=run.attempt, output=outcome.output, metrics=outcome.metrics
    )
    return "succeeded"
