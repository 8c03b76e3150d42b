"""The one place a run's status changes: the allowed moves and the timestamps that go with them.

queued  -> running (a worker took it) | cancelled (before any worker did) | failed (no queue)
running -> succeeded | failed | cancelled | running (a worker takes over a vanished one's run)
failed, cancelled -> queued (resume: the job continues from its last checkpoint)
"""

from django.utils import timezone

from training.errors import Conflict
from training.models import TrainingRun

S = TrainingRun.Status
ALLOWED = {
    S.QUEUED: {S.RUNNING, S.CANCELLED, S.FAILED},
    S.RUNNING: {S.RUNNING, S.SUCCEEDED, S.FAILED, S.CANCELLED},
    S.FAILED: {S.QUEUED},
    S.CANCELLED: {S.QUEUED},
    S.SUCCEEDED: set(),
}
MAX_LOG_CHARS = 20_000


def transition(run: TrainingRun, to: str, *, log: str = "", **fields) -> TrainingRun:
    """Move a run (locked by the caller with select_for_update) to `to`, set `fields`, append
    `log` to its log tail and save only what changed. An illegal move is a `Conflict`."""
    if to not in ALLOWED[run.status]:
        raise Conflict(f"Run #{run.pk} is {run.status}; it cannot become {to}.")
    now = timezone.now()
    changed = {"status", *fields}
    run.status = to
    for name, value in fields.items():
        setattr(run, name, value)
    if to == S.RUNNING:
        run.started_at = run.started_at or now
        run.heartbeat_at = now
        changed |= {"started_at", "heartbeat_at"}
    if to in TrainingRun.FINISHED:
        run.finished_at = now
        changed.add("finished_at")
    if to == S.QUEUED:
        run.finished_at = None
        run.cancel_requested = False
        changed |= {"finished_at", "cancel_requested"}
    if log:
        append_log(run, log, now=now)
        changed.add("log_tail")
    run.full_clean(
        exclude=[
            "project",
            "input_model",
            "reward_model",
            "output_model",
            "created_by",
            "request_token",
            "key",
        ]
    )
    run.save(update_fields=sorted(changed))
    return run


def append_log(run: TrainingRun, line: str, *, now=None) -> None:
    """Add a timestamped line to the log tail, keeping its last MAX_LOG_CHARS characters."""
    stamp = (now or timezone.now()).strftime("%H:%M:%S")
    text = f"{run.log_tail}{stamp} {line.rstrip()}\n"
    run.log_tail = text[-MAX_LOG_CHARS:]
