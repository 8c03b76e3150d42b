"""The run services without a worker: creation with its snapshot, refusals, the status moves
in one place, progress and cancel, stale runs, resume."""

from datetime import timedelta

import pytest
from django.utils import timezone
from training_helpers import add_demonstrations, make_project

from training import presets
from training.errors import Conflict, Invalid
from training.models import ModelVersion, RunMetric, TrainingRun
from training.services import lifecycle
from training.services.runs import run_cancel, run_create, run_resume, runs_mark_stale

S = TrainingRun.Status


@pytest.fixture
def sft_run(project_with_demos, base_version, staff):
    return run_create(
        kind="sft",
        project=project_with_demos,
        input_model=base_version,
        config={"max_steps": 5},
        created_by=staff,
    )


def test_create_records_the_snapshot_config_and_inputs(sft_run, project_with_demos, base_version):
    assert sft_run.status == S.QUEUED
    assert sft_run.demonstrations.count() == 12
    assert sft_run.snapshot_id.startswith(f"{project_with_demos.slug}.{project_with_demos.pk}@")
    assert sft_run.config["max_steps"] == 5 and sft_run.config["batch_size"] == 8  # preset
    assert sft_run.input_model == base_version
    assert "created by sam" in sft_run.log_tail and "12 demonstrations" in sft_run.log_tail


def test_the_snapshot_does_not_grow_with_later_labels(sft_run, project_with_demos, author):
    add_demonstrations(project_with_demos, author, 3)
    assert sft_run.demonstrations.count() == 12


def test_not_enough_data_is_refused_with_a_clear_message(base_version, author, settings):
    settings.TRAINING_MIN_DEMONSTRATIONS = 8
    project = make_project()
    add_demonstrations(project, author, 3)
    with pytest.raises(
        Invalid, match="Not enough data for SFT: the project has 3 demonstrations, at least 8"
    ):
        run_create(kind="sft", project=project, input_model=base_version)
    assert not TrainingRun.objects.exists()


def test_reward_and_ppo_need_their_inputs(project_with_demos, base_version):
    with pytest.raises(Invalid, match="ranked tasks"):
        run_create(kind="reward", project=project_with_demos, input_model=base_version)
    with pytest.raises(Invalid, match="cannot start from"):
        run_create(kind="ppo", project=project_with_demos, input_model=base_version)
    with pytest.raises(Invalid, match="starts from a model"):
        run_create(kind="sft", project=project_with_demos)


def test_config_is_checked_field_by_field(project_with_demos, base_version):
    with pytest.raises(Invalid, match="no setting 'bogus'"):
        run_create(
            kind="sft", project=project_with_demos, input_model=base_version, config={"bogus": 1}
        )
    with pytest.raises(Invalid, match="lr must be a number"):
        presets.clean_config("sft", {"lr": "fast"})
    assert presets.clean_config("sft", {"epochs": "4", "max_steps": ""})["epochs"] == 4
    assert presets.clean_config("sft", {"max_steps": ""})["max_steps"] is None
    assert presets.clean_config("sft", preset="gpu")["lr"] == 2e-5


def test_a_double_submitted_form_makes_one_run(project_with_demos, base_version):
    first = run_create(
        kind="sft", project=project_with_demos, input_model=base_version, request_token="abc"
    )
    again = run_create(
        kind="sft", project=project_with_demos, input_model=base_version, request_token="abc"
    )
    assert first.pk == again.pk and TrainingRun.objects.count() == 1


def test_start_is_idempotent(sft_run):
    run = lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="w1")
    assert run.status == S.RUNNING and run.attempt == 1 and run.worker == "w1"
    assert lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="w2") is None
    assert lifecycle.run_start(run_id=sft_run.pk, key="wrong", worker="w2") is None
    sft_run.refresh_from_db()
    assert (sft_run.attempt, sft_run.worker) == (1, "w1")


def test_a_second_start_of_a_running_run_is_refused(sft_run):
    lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="w1")
    with pytest.raises(Conflict, match="already running"):
        run_resume(run_id=sft_run.pk)


def test_progress_writes_curves_and_answers_cancel(sft_run):
    run = lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="w1")
    stop = lifecycle.run_progress(
        run_id=run.pk,
        attempt=1,
        step=2,
        total=5,
        metrics={"loss": 2.0},
        points=[(1, {"loss": 3.0, "bad": float("nan")}), (2, {"loss": 2.0})],
    )
    assert stop is False
    assert list(RunMetric.objects.filter(run=run).values_list("step", flat=True)) == [1, 2]
    assert RunMetric.objects.get(run=run, step=1).values == {"loss": 3.0, "bad": None}
    run_cancel(run_id=run.pk)
    assert lifecycle.run_progress(run_id=run.pk, attempt=1, step=3, total=5, metrics={}) is True
    lifecycle.run_stopped(run_id=run.pk, attempt=1)
    run.refresh_from_db()
    assert run.status == S.CANCELLED and run.step == 3 and "checkpoint kept" in run.log_tail


def test_cancel_before_start_and_after_the_end(sft_run):
    assert run_cancel(run_id=sft_run.pk).status == S.CANCELLED
    assert lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="w") is None
    with pytest.raises(Conflict, match="already finished"):
        run_cancel(run_id=sft_run.pk)


def test_succeed_records_one_model_version(sft_run, base_version, tmp_path):
    lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="w1")
    output = {
        "kind": "sft",
        "checkpoint_dir": str(tmp_path),
        "tokenizer_path": str(tmp_path / "t.json"),
        "parent": base_version,
        "metrics": {"loss": 1.0},
    }
    run = lifecycle.run_succeed(run_id=sft_run.pk, attempt=1, output=output)
    again = lifecycle.run_succeed(run_id=sft_run.pk, attempt=1, output=output)
    assert run.status == S.SUCCEEDED and again.output_model == run.output_model
    version = ModelVersion.objects.get(run=run)
    assert (version.kind, version.parent, version.name) == (
        "sft",
        base_version,
        f"sft-{version.pk}",
    )


def test_fail_keeps_the_message(sft_run):
    lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="w1")
    run = lifecycle.run_fail(
        run_id=sft_run.pk, attempt=1, error="ValueError: no usable demonstration"
    )
    assert run.status == S.FAILED and run.error == "ValueError: no usable demonstration"
    assert "failed: ValueError" in run.log_tail


def test_a_vanished_worker_is_marked_and_the_run_resumes_and_can_be_taken_over(sft_run, settings):
    settings.TRAINING_HEARTBEAT_TIMEOUT = 60
    lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="w1")
    assert runs_mark_stale() == []  # fresh heartbeat
    later = timezone.now() + timedelta(seconds=61)
    assert runs_mark_stale(now=later) == [sft_run.pk]
    sft_run.refresh_from_db()
    assert sft_run.status == S.FAILED and "w1 vanished" in sft_run.error
    run = run_resume(run_id=sft_run.pk)
    assert run.status == S.QUEUED and run.error == ""
    run = lifecycle.run_start(run_id=run.pk, key=str(run.key), worker="w2")
    assert run.attempt == 2
    # The first worker, only slow after all, is told to stop and its writes are ignored.
    assert lifecycle.run_progress(run_id=run.pk, attempt=1, step=9, total=9, metrics={}) is True
    run.refresh_from_db()
    assert run.step == 0


def test_a_redelivered_task_takes_over_a_run_whose_worker_died(sft_run, settings):
    settings.TRAINING_HEARTBEAT_TIMEOUT = 60
    lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="w1")
    TrainingRun.objects.filter(pk=sft_run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=61)
    )
    run = lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="w2")
    assert run.attempt == 2 and "taken over by w2 from w1" in run.log_tail


def test_a_restarted_worker_resumes_its_own_runs(sft_run):
    from training.services.runs import runs_recover_for_worker

    lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="gpu@box")
    assert runs_recover_for_worker(worker="other@box") == []
    assert runs_recover_for_worker(worker="gpu@box") == [sft_run.pk]
    sft_run.refresh_from_db()
    assert sft_run.status == S.QUEUED and "restarted" in sft_run.log_tail


def test_mark_stale_runs_command(sft_run, capsys):
    from django.core.management import call_command

    lifecycle.run_start(run_id=sft_run.pk, key=str(sft_run.key), worker="w1")
    TrainingRun.objects.filter(pk=sft_run.pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    call_command("mark_stale_runs", "--resume")
    sft_run.refresh_from_db()
    assert sft_run.status == S.QUEUED and "worker vanished; resumed" in capsys.readouterr().out
