"""Celery tasks: thin. One task per run kind, named `training.<kind>` (`RunKind.task_name`, made
here from the registry; the services enqueue it by that name). Each takes a run id and key and
hands them to `training.worker`,
which re-reads the run and returns at once when it is not queued for this worker (so a task
delivered twice trains once). Long work: acks late, so a worker killed mid-run gives the message
back; no automatic retries of a failed run (it is resumed by a person, from its checkpoint).

A run nobody runs any more recovers by itself, twice over:
- the message a killed pool process gives back finds the run "running" with a heartbeat that
  still looks fresh; instead of dropping it, the task asks again once the heartbeat is stale
  (`retry` with that countdown) and then takes the run over from its last checkpoint;
- `recover_stale_runs`, in the beat schedule, fails and re-queues any run whose heartbeat is
  stale (its whole machine died, and with it the message until Redis's visibility timeout).

Queues: each kind's `RunKind.queue` (`training` for pretrain / SFT / reward / PPO, `sampling`
for samples). A run that succeeds moves its round on
(`training.services.rounds`): the next stage's run is queued.
"""

import logging

from celery import shared_task
from celery.signals import worker_ready

from training import worker
from training.jobs.declaration import RunKind
from training.jobs.kinds import run_kinds
from training.services import lifecycle
from training.services.rounds import rounds_advance_waiting, rounds_after_run
from training.services.runs import runs_recover_for_worker, runs_recover_stale

logger = logging.getLogger(__name__)


def _execute(task, run_id: int, key: str) -> str:
    outcome = worker.execute(run_id=run_id, key=key, worker=task.request.hostname or "")
    if outcome == worker.SKIPPED:
        wait = lifecycle.run_takeover_wait(run_id=run_id, key=key)
        if wait is not None:  # running, maybe under a dead process: look again when stale
            raise task.retry(countdown=wait)
    if outcome == "succeeded":
        _advance_round(run_id)
    return outcome


def _advance_round(run_id: int) -> None:
    """A finished run moves its round on (the next stage's run is queued). Never fails the
    task: the round can be moved on by hand ("continue round")."""
    try:
        rounds_after_run(run_id=run_id)
    except Exception:
        logger.exception("could not move on the round of run %s", run_id)


def _run_task(kind: RunKind):
    """The task of one kind: acks late (a killed worker gives the message back), retried only
    by `_execute`'s takeover wait."""

    @shared_task(bind=True, name=kind.task_name, acks_late=True, max_retries=None)
    def run(self, run_id: int, key: str) -> str:
        return _execute(self, run_id, key)

    return run


TASKS = {kind.name: _run_task(kind) for kind in run_kinds().values()}


@shared_task(name="training.continue_waiting_rounds")
def continue_waiting_rounds() -> int:
    """Periodic (beat, every minute): rounds whose rankings are in move on by themselves."""
    return len(rounds_advance_waiting())


@shared_task(name="training.recover_stale_runs")
def recover_stale_runs() -> list[int]:
    """The periodic check (see `webapp.celery.BEAT_SCHEDULE`): runs whose heartbeat is stale
    are failed and queued again, continuing from their last checkpoint."""
    return runs_recover_stale()


@worker_ready.connect
def recover_runs(sender=None, **kwargs):
    """A worker that starts again under its old name resumes the runs its previous life left
    "running" (killed, crashed): they continue from their last checkpoint."""
    hostname = getattr(sender, "hostname", "")
    try:
        if resumed := runs_recover_for_worker(worker=hostname):
            logger.warning("resumed runs %s left by an earlier %s", resumed, hostname)
    except Exception:  # never keep a worker from starting
        logger.exception("could not recover the runs of %s", hostname)
