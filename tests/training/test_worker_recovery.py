"""A run whose process dies recovers by itself: no `mark_stale_runs`, no person.

What the out-of-memory killer does: SIGKILL the worker's pool process in the middle of a run.
Celery hands the message back at once while the run's heartbeat still looks fresh; the
redelivered task waits until the heartbeat is stale, takes the run over and finishes it from
its last checkpoint. The beat schedule's periodic check covers a run whose message is gone.
"""
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from test_worker_sft import FAST, checkpoint_step, status_is
from waiting import wait_for

from training.models import TrainingRun
from training.services import lifecycle
from training.services.runs import run_create, runs_recover_stale

S = TrainingRun.Status
HEARTBEAT = {"TRAINING_HEARTBEAT_SECONDS": "1", "TRAINING_HEARTBEAT_TIMEOUT": "6"}


@pytest.fixture
def sft_run(project_with_demos, base_version):
    return run_create(kind="sft", project=project_with_demos, input_model=base_version,
                      config={"max_steps": 5}, enqueue_it=False)


def pool_children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (the prefork pool of a Celery worker)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


@pytest.mark.worker
def test_a_killed_pool_process_leaves_a_run_that_finishes_by_itself(
    worker_factory, artifacts, project_with_demos, base_version
):
    worker = worker_factory(queues=("training",), env={
        "ARTIFACTS_DIR": str(artifacts), "OMP_NUM_THREADS": "1", **HEARTBEAT})
    run = run_create(kind="sft", project=project_with_demos, input_model=base_version,
                     config={**FAST, "max_steps": 300, "checkpoint_every": 20})
    assert wait_for(lambda: checkpoint_step(artifacts, run) >= 40, timeout=90), worker.output()
    (child,) = pool_children(worker.process.pid)
    os.kill(child, signal.SIGKILL)
    run.refresh_from_db()
    assert run.status == S.RUNNING and run.step < 300 and run.attempt == 1

    assert wait_for(status_is(run, *TrainingRun.FINISHED), timeout=180), worker.output()[-3000:]
    assert run.status == S.SUCCEEDED, run.error + run.log_tail
    assert (run.step, run.attempt) == (300, 2)
    assert "whose heartbeat stopped" in run.log_tail and "resuming from checkpoint" in run.log_tail
    assert run.output_model.kind == "sft"


def test_a_redelivered_task_waits_until_the_heartbeat_is_stale(db, settings, sft_run):
    settings.TRAINING_HEARTBEAT_TIMEOUT = 120
    key = str(sft_run.key)
    lifecycle.run_start(run_id=sft_run.pk, key=key, worker="w1")
    wait = lifecycle.run_takeover_wait(run_id=sft_run.pk, key=key)
    assert 120 <= wait <= 123
    TrainingRun.objects.filter(pk=sft_run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=100))
    assert 20 <= lifecycle.run_takeover_wait(run_id=sft_run.pk, key=key) <= 23
    assert lifecycle.run_takeover_wait(run_id=sft_run.pk, key="another") is None
    lifecycle.run_fail(run_id=sft_run.pk, error="boom")
    assert lifecycle.run_takeover_wait(run_id=sft_run.pk, key=key) is None  # nothing to wait for


def test_the_beat_schedule_requeues_runs_whose_heartbeat_is_stale(db, sft_run):
    from webapp.celery import app

    assert {e["task"] for e in app.conf.beat_schedule.values()} >= {
        "training.recover_stale_runs", "labeling.expire_leases"}
    assert "training.recover_stale_runs" in app.tasks
    lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="w1")
    assert runs_recover_stale() == []  # its heartbeat is fresh
    TrainingRun.objects.filter(pk=sft_run.pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1))
    assert runs_recover_stale() == [sft_run.pk]
    sft_run.refresh_from_db()
    assert sft_run.status == S.QUEUED and "vanished" in sft_run.log_tail
