"""Training runs, the person's side: create (with its dataset snapshot), cancel, resume, and
mark the runs whose worker vanished. The worker's side is `training.services.lifecycle`.

A run is handed to a worker after its transaction commits (`webapp.queueing.enqueue`), with its
id and key; the task re-reads it and does nothing when it is not queued, so a double enqueue
never trains twice.
"""

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from training import presets
from training.errors import Conflict, Invalid, NotFound
from training.jobs.declaration import RunKind
from training.jobs.kinds import run_kind
from training.models import ModelVersion, TrainingRun
from training.services.snapshots import snapshot_take
from training.services.status import append_log, transition
from webapp.queueing import QueueUnavailable, enqueue_by_name

S = TrainingRun.Status

def run_create(
    *,
    kind: str,
    project=None,
    config: dict | None = None,
    preset: str = "tiny",
    input_model: ModelVersion | None = None,
    reward_model: ModelVersion | None = None,
    created_by=None,
    request_token: str | None = None,
    enqueue_it: bool = True,
) -> TrainingRun:
    """Check the inputs and that there is enough data, record the run with its dataset
    snapshot, and hand it to a worker. The same `request_token` (a double-clicked form) returns
    the first run instead of creating a second. `enqueue_it=False` leaves it queued for the
    caller to execute in its own process (`training.worker.execute`: the headless demo)."""
    if request_token is not None and not _is_token(request_token):
        raise Invalid("The form's request token is malformed; reload the page.")
    if request_token and (
        existing := TrainingRun.objects.filter(request_token=request_token).first()
    ):
        return existing
    config = presets.clean_config(kind, config, preset=preset)
    spec = run_kind(kind)
    if spec.in_project and project is None:
        raise Invalid(f"{spec.noun.capitalize()} belongs to a project.")
    _check_inputs(spec, input_model, reward_model, config)
    if spec.check is not None:
        spec.check(config, project=project, input_model=input_model)
    try:
        with transaction.atomic():
            run = _create(
                kind=spec,
                project=project,
                config=config,
                input_model=input_model,
                reward_model=reward_model,
                created_by=created_by,
                request_token=request_token,
            )
    except IntegrityError:
        if request_token and (
            existing := TrainingRun.objects.filter(request_token=request_token).first()
        ):
            return existing
        raise
    if enqueue_it:
        run_enqueue(run)
    return run


def _is_token(value) -> bool:
    """A token is printable text that fits its column (PostgreSQL refuses a NUL in any text)."""
    return isinstance(value, str) and len(value) <= 64 and value.isprintable()


def _check_inputs(kind: RunKind, input_model, reward_model, config: dict) -> None:
    allowed = kind.takes
    if allowed and input_model is None:
        raise Invalid(
            f"{kind.noun.capitalize()} starts from a model: train one of kind "
            f"{', '.join(allowed)} first."
        )
    if input_model is not None and input_model.kind not in allowed:
        raise Invalid(f"{kind.noun.capitalize()} cannot start from {input_model.name} "
                      f"({input_model.kind}).")
    is_reward = reward_model is not None and reward_model.kind == ModelVersion.Kind.REWARD
    if kind.reward_model == "required" and not is_reward:
        raise Invalid(f"{kind.noun.capitalize()} needs a reward model: train one first.")
    if kind.reward_model == "optional" and reward_model is not None and not is_reward:
        raise Invalid(f"{reward_model.name} is not a reward model.")
    members = (reward_model.metrics or {}).get("ensemble_members", 1) if is_reward else 1
    if config.get("ensemble_penalty") and members < 2:
        raise Invalid(f"ensemble_penalty subtracts a reward-model ensemble's disagreement, and "
                      f"{reward_model.name} is one reward model: train one with ensemble 2 or "
                      f"more, or set ensemble_penalty to 0.")  # fmt: skip


def _create(*, kind: RunKind, project, config, input_model, reward_model, created_by,
            request_token):  # fmt: skip
    now = timezone.now()
    snap = (
        snapshot_take(project=project, kind=kind.name, config=config, as_of=now,
                      input_model=input_model)  # fmt: skip
        if project
        else None
    )
    run = TrainingRun(
        kind=kind.name,
        project=project,
        config=config,
        input_model=input_model,
        reward_model=reward_model if kind.reward_model else None,
        created_by=created_by,
        request_token=request_token or None,
        created_at=now,
        snapshot_id=snap.snapshot_id if snap else "",
    )
    who = created_by.get_username() if created_by else "a command"
    sizes = ", ".join(
        f"{len(getattr(snap, n))} {n}"
        for n in ("demonstrations", "rankings", "prompts")
        if snap and getattr(snap, n)
    )
    append_log(
        run, f"created by {who}" + (f" on snapshot {snap.snapshot_id}: {sizes}" if snap else "")
    )
    run.full_clean(exclude=["project", "input_model", "reward_model", "created_by", "key"])
    run.save()
    if snap:
        for name in ("demonstrations", "rankings", "prompts"):
            through = getattr(TrainingRun, name).through
            column = f"{through._meta.get_field(name[:-1]).attname}"
            through.objects.bulk_create(
                [through(trainingrun_id=run.pk, **{column: pk}) for pk in getattr(snap, name)],
                batch_size=500,
            )
    return run


def run_enqueue(run: TrainingRun) -> None:
    """Hand a queued run to a worker (after the caller's transaction committed); a run that
    cannot be queued becomes failed, resumable, and `QueueUnavailable` is raised."""
    kind = run_kind(run.kind)
    try:
        enqueue_by_name(kind.task_name, args=(run.pk, str(run.key)), queue=kind.queue)
    except QueueUnavailable as exc:
        # Not left "queued" with nothing in the queue: failed, and resumable once Redis is back.
        with transaction.atomic():
            locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
            if locked.status == S.QUEUED:
                transition(
                    locked,
                    S.FAILED,
                    error=str(exc),
                    log="could not be queued: Redis is unreachable",
                )
        raise


@transaction.atomic
def run_cancel(*, run_id: int, by=None) -> TrainingRun:
    """A queued run is cancelled at once; a running one at its next step (its worker stops after
    saving a checkpoint, so it can be resumed)."""
    run = _locked(run_id)
    who = by.get_username() if by else "a command"
    if run.status == S.QUEUED:
        return transition(run, S.CANCELLED, log=f"cancelled by {who} before it started")
    if run.status == S.RUNNING:
        if not run.cancel_requested:
            run.cancel_requested = True
            append_log(run, f"cancel requested by {who}; stopping at the next step")
            run.save(update_fields=["cancel_requested", "log_tail"])
        return run
    raise Conflict(f"Run #{run.pk} already finished ({run.status}); there is nothing to cancel.")


def run_resume(*, run_id: int, by=None) -> TrainingRun:
    """Queue a failed or cancelled run again; its job continues from its last checkpoint.
    A queued or running run is refused: starting it twice would train twice."""
    with transaction.atomic():
        run = _locked(run_id)
        if run.status in (S.QUEUED, S.RUNNING):
            raise Conflict(f"Run #{run.pk} is already {run.status}; it is not started twice.")
        if run.status == S.SUCCEEDED:
            raise Conflict(f"Run #{run.pk} already succeeded; start a new run to train again.")
        who = by.get_username() if by else "a command"
        transition(
            run, S.QUEUED, error="", log=f"resumed by {who}; continues from its last checkpoint"
        )
    run_enqueue(run)
    return run


def heartbeat_timeout() -> timedelta:
    return timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT)


@transaction.atomic
def runs_mark_stale(*, timeout: timedelta | None = None, now=None) -> list[int]:
    """Running runs whose worker stopped sending heartbeats: failed, with the reason, and
    resumable from their last checkpoint. Never "running" forever."""
    timeout = timeout if timeout is not None else heartbeat_timeout()
    now = now or timezone.now()
    stale = TrainingRun.objects.select_for_update().filter(
        status=S.RUNNING, heartbeat_at__lt=now - timeout
    )
    marked = []
    for run in stale:
        last = timezone.localtime(run.heartbeat_at).strftime("%Y-%m-%d %H:%M:%S")
        error = (
            f"The worker {run.worker or '(unknown)'} vanished: no heartbeat since {last} "
            f"(timeout {int(timeout.total_seconds())} s), last at step {run.step} of {run.total}. "
            "Resume the run to continue from its last checkpoint."
        )
        transition(run, S.FAILED, error=error, log="marked failed: its worker vanished")
        marked.append(run.pk)
    return marked


def runs_recover_stale(*, timeout: timedelta | None = None) -> list[int]:
    """Runs whose worker vanished: marked failed (with the reason), then queued again. A run
    that cannot be queued (Redis down) stays failed, resumable by hand."""
    return _resume_all(runs_mark_stale(timeout=timeout))


def _resume_all(run_ids) -> list[int]:
    resumed = []
    for run_id in run_ids:
        try:
            run_resume(run_id=run_id)
            resumed.append(run_id)
        except QueueUnavailable:
            pass  # stays failed, resumable by hand
    return resumed


def runs_recover_for_worker(*, worker: str) -> list[int]:
    """Called when a worker (re)starts: runs still "running" under its name were left by its
    previous life (killed, crashed). They are marked so and resumed."""
    with transaction.atomic():
        runs = list(TrainingRun.objects.select_for_update().filter(status=S.RUNNING, worker=worker))
        for run in runs:
            transition(
                run,
                S.FAILED,
                error=f"The worker {worker} restarted during this run.",
                log=f"worker {worker} restarted while running it",
            )
    return _resume_all(run.pk for run in runs)


def _locked(run_id) -> TrainingRun:
    try:
        return TrainingRun.objects.select_for_update().get(pk=run_id)
    except (TrainingRun.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"There is no training run #{run_id}.") from None
