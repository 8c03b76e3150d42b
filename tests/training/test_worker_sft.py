"""SFT through a real Celery worker on the real Redis and the test database: a model version
comes out; a task delivered twice trains once; cancel stops a run at its next step; a worker
killed with SIGKILL leaves a run that resumes from its checkpoint on another worker."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from waiting import wait_for

from training import tasks
from training.errors import Conflict
from training.models import ModelVersion, RunMetric, TrainingRun
from training.services.runs import run_cancel, run_create, run_resume, runs_mark_stale

pytestmark = pytest.mark.worker
S = TrainingRun.Status
FAST = {"batch_size": 4, "eval_every": 0, "val_fraction": 0.2}


def status_is(run, *statuses):
    def check():
        run.refresh_from_db()
        return run.status in statuses

    return check


def checkpoint_step(artifacts, run) -> int:
    latest = Path(artifacts) / "runs" / str(run.pk) / "checkpoint" / "LATEST"
    return int(latest.read_text().split("-")[1]) if latest.exists() else 0


def test_sft_run_through_a_real_worker_makes_a_model_version_once(
    training_worker, project_with_demos, base_version, staff, artifacts
):
    run = run_create(
        kind="sft",
        project=project_with_demos,
        input_model=base_version,
        config={**FAST, "max_steps": 8},
        created_by=staff,
    )
    # The same run handed over twice (a double click, a redelivery) is trained once.
    tasks.TASKS["sft"].apply_async(args=(run.pk, str(run.key)), queue="training")
    worker = training_worker()

    assert wait_for(status_is(run, *TrainingRun.FINISHED), timeout=90), worker.output()
    assert run.status == S.SUCCEEDED, run.error + run.log_tail
    assert (run.step, run.total, run.attempt) == (8, 8, 1)
    version = run.output_model
    assert (version.kind, version.parent, version.run, version.project) == (
        "sft",
        base_version,
        run,
        project_with_demos,
    )
    assert Path(version.checkpoint_dir, "model.safetensors").exists()
    assert Path(version.tokenizer_path).exists()
    assert "loss" in version.metrics and "val_loss" in version.metrics
    assert RunMetric.objects.filter(run=run).count() == 8  # every step, written in batches
    assert wait_for(lambda: "skipped" in worker.output(), timeout=20), worker.output()
    assert ModelVersion.objects.filter(run=run).count() == 1


def test_cancel_stops_a_running_run_and_a_second_start_is_refused(
    training_worker, project_with_demos, base_version, artifacts
):
    worker = training_worker()
    run = run_create(
        kind="sft",
        project=project_with_demos,
        input_model=base_version,
        config={**FAST, "max_steps": 100_000, "checkpoint_every": 100_000},
    )
    assert wait_for(lambda: TrainingRun.objects.get(pk=run.pk).step > 0, timeout=60), (
        worker.output()
    )
    with pytest.raises(Conflict, match="already running"):
        run_resume(run_id=run.pk)

    run_cancel(run_id=run.pk)
    assert wait_for(status_is(run, S.CANCELLED), timeout=30), worker.output()
    assert 0 < run.step < run.total
    assert checkpoint_step(artifacts, run) == run.step  # saved on the way out: resumable
    assert run.output_model is None


def test_a_run_killed_mid_way_resumes_from_its_checkpoint(
    training_worker, project_with_demos, base_version, artifacts
):
    first = training_worker()
    run = run_create(
        kind="sft",
        project=project_with_demos,
        input_model=base_version,
        config={**FAST, "max_steps": 300, "checkpoint_every": 20},
    )
    assert wait_for(lambda: checkpoint_step(artifacts, run) >= 40, timeout=90), first.output()
    first.kill()  # SIGKILL: no warm shutdown, nothing written on the way out
    run.refresh_from_db()
    killed_at = checkpoint_step(artifacts, run)
    assert run.status == S.RUNNING and run.step < 300

    assert runs_mark_stale(timeout=timedelta(0)) == [run.pk]
    run.refresh_from_db()
    assert run.status == S.FAILED and "vanished" in run.error
    resumed_at = timezone.now()
    run_resume(run_id=run.pk)
    second = training_worker()

    assert wait_for(status_is(run, *TrainingRun.FINISHED), timeout=120), second.output()
    assert run.status == S.SUCCEEDED, run.error + run.log_tail
    assert (run.step, run.attempt) == (300, 2)
    assert f"resuming from checkpoint step-{killed_at:06d}" in run.log_tail
    # The second worker went on from the checkpoint: no step up to it was trained again.
    after = RunMetric.objects.filter(run=run, created_at__gte=resumed_at)
    assert min(after.values_list("step", flat=True)) == killed_at + 1
    assert run.output_model.kind == "sft"
