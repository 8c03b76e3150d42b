"""Training runs, the worker's side: take a run, report progress, finish it.

Every call names the run and the `attempt` the worker got from `run_start`. When another worker
has since taken the run over (this one was presumed dead), the run's attempt differs: the
updates are ignored and `run_progress` answers "stop", so two workers never both write a run.
"""

from django.db import transaction
from django.utils import timezone

from training.ml.progress import json_safe
from training.models import RunMetric, TrainingRun
from training.services.model_versions import model_version_create
from training.services.runs import heartbeat_timeout
from training.services.status import append_log, transition

S = TrainingRun.Status
MAX_ERROR_CHARS = 10_000
TAKEOVER_MARGIN_SECONDS = 2.0  # past the timeout, so run_start sees the heartbeat stale


@transaction.atomic
def run_start(*, run_id: int, key: str, worker: str) -> TrainingRun | None:
    """The run, now running on `worker`, or None when this worker must not run it: unknown,
    already running elsewhere, finished or cancelled. A running run whose heartbeat stopped
    (its worker died and the message came back) is taken over."""
    run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or str(run.key) != str(key):
        return None
    now = timezone.now()
    if run.status == S.QUEUED:
        log = f"started on {worker} (attempt {run.attempt + 1})"
    elif (
        run.status == S.RUNNING
        and run.heartbeat_at
        and run.heartbeat_at < now - heartbeat_timeout()
    ):
        log = f"taken over by {worker} from {run.worker}, whose heartbeat stopped"
    else:
        return None
    return transition(run, S.RUNNING, worker=worker, attempt=run.attempt + 1, log=log)


def run_takeover_wait(*, run_id: int, key: str) -> float | None:
    """Seconds until a run that is "running" may be taken over, when its heartbeat will be
    stale; None when it is not running (finished, cancelled, unknown), so nothing to wait for.

    Why: when the pool process running a run is killed (the out-of-memory killer), Celery hands
    its message back at once, while the dead run's heartbeat still looks fresh. The redelivered
    task asks again after this long instead of dropping the run (see `training.tasks`)."""
    run = TrainingRun.objects.filter(pk=run_id).values("key", "status", "heartbeat_at").first()
    if run is None or str(run["key"]) != str(key) or run["status"] != S.RUNNING:
        return None
    now = timezone.now()
    stale_at = (run["heartbeat_at"] or now) + heartbeat_timeout()
    return max(0.0, (stale_at - now).total_seconds()) + TAKEOVER_MARGIN_SECONDS


def _mine(run_id: int, attempt: int):
    return TrainingRun.objects.filter(pk=run_id, attempt=attempt, status=S.RUNNING)


def _should_stop(run_id: int, attempt: int) -> bool:
    row = (
        TrainingRun.objects.filter(pk=run_id)
        .values("status", "attempt", "cancel_requested")
        .first()
    )
    return (
        row is None
        or row["status"] != S.RUNNING
        or row["attempt"] != attempt
        or row["cancel_requested"]
    )


@transaction.atomic
def run_progress(
    *, run_id: int, attempt: int, step: int, total: int, metrics: dict, points=()
) -> bool:
    """Store the step, the latest metrics and the curve `points` [(step, metrics)]; beat the
    heartbeat. Returns True when the loop should stop (cancel requested, or not ours any more)."""
    updated = _mine(run_id, attempt).update(
        step=step, total=total, metrics=json_safe(metrics), heartbeat_at=timezone.now()
    )
    if updated and points:
        RunMetric.objects.bulk_create(
            [RunMetric(run_id=run_id, step=s, values=json_safe(v)) for s, v in points]
        )
    return _should_stop(run_id, attempt)


def run_heartbeat(*, run_id: int, attempt: int) -> bool:
    """Proof of life between steps (a long evaluation, sampling). Returns True to stop."""
    _mine(run_id, attempt).update(heartbeat_at=timezone.now())
    return _should_stop(run_id, attempt)


@transaction.atomic
def run_log(*, run_id: int, attempt: int, line: str) -> None:
    run = _mine(run_id, attempt).select_for_update().first()
    if run is not None:
        append_log(run, line)
        run.save(update_fields=["log_tail"])


@transaction.atomic
def run_succeed(
    *, run_id: int, attempt: int, output: dict | None = None, metrics: dict | None = None
) -> TrainingRun:
    """Finish the run; `output` (kind, checkpoint_dir, tokenizer_path, parent, metrics) becomes
    its model version in the same transaction. A run that is not ours any more is left alone."""
    run = TrainingRun.objects.select_for_update().get(pk=run_id)
    if run.status != S.RUNNING or run.attempt != attempt:
        return run
    version = None
    if output is not None:
        version = model_version_create(run=run, project=run.project, **output)
    metrics = json_safe({**run.metrics, **(metrics or {})})
    made = f"; made {version.name}" if version else ""
    return transition(
        run,
        S.SUCCEEDED,
        output_model=version,
        metrics=metrics,
        cancel_requested=False,
        log=f"succeeded at step {run.step}{made}",
    )


@transaction.atomic
def run_fail(
    *, run_id: int, error: str, attempt: int | None = None, log: str = ""
) -> TrainingRun | None:
    """Record the error text (what a person reads on the run page, never a traceback page)."""
    run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.is_finished or (attempt is not None and run.attempt != attempt):
        return run
    first = error.strip().splitlines()[0] if error.strip() else "unknown error"
    return transition(
        run,
        S.FAILED,
        error=error[:MAX_ERROR_CHARS],
        log=(log.rstrip() + "\n" if log else "") + f"failed: {first[:300]}",
    )


@transaction.atomic
def run_stopped(*, run_id: int, attempt: int) -> TrainingRun:
    """The loop stopped early. Asked by a person: the run is cancelled (its last checkpoint is
    kept, so it can be resumed). Otherwise another worker owns it now: nothing to do."""
    run = TrainingRun.objects.select_for_update().get(pk=run_id)
    if run.status == S.RUNNING and run.attempt == attempt and run.cancel_requested:
        transition(
            run, S.CANCELLED, log=f"cancelled at step {run.step} of {run.total}; checkpoint kept"
        )
    return run
