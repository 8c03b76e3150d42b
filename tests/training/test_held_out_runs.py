"""Real reward and PPO runs on a project with evaluation prompts: neither trains on them, and each
reports its figures on them (the reward model's accuracy on their rankings beside the
longer-reply baseline, PPO's reward on them, with keep_best the iteration whose weights it kept).
"""

import socket

import pytest
from django.contrib.auth import get_user_model
from test_worker_loop import rank_everything

from labeling.services.evaluation_prompts import prompts_mark_evaluation
from labeling.services.ranking_tasks import ranking_tasks_create
from training import worker
from training.models import TrainingRun
from training.services.model_versions import model_version_register
from training.services.runs import run_create

pytestmark = pytest.mark.django_db(transaction=True)  # the runner's heartbeat: own connection


def execute(run) -> TrainingRun:
    worker.execute(run_id=run.pk, key=str(run.key), worker=f"test@{socket.gethostname()}")
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    return run


def ranked_with_held_out(project, tiny_base_dir):
    """(the tiny SFT version, the prompts, the ids of the 3 held out): every prompt of the project
    ranked "longer wins", then its first 3 marked evaluation prompts (ranked before being held
    out)."""
    sft = model_version_register(checkpoint_dir=str(tiny_base_dir), kind="sft", name="tiny-sft",
                                 project=project)  # fmt: skip
    prompts = list(project.prompts.order_by("id"))
    ranking_tasks_create(project=project, batch_key="b", prompt_completions=[
        (p.pk, [{"text": "x" * (i + 1) * 3} for i in range(project.k)]) for p in prompts
    ])  # fmt: skip
    rank_everything(project, get_user_model().objects.create_user("ranker"))  # longer wins
    held = [p.pk for p in prompts[:3]]
    prompts_mark_evaluation(project=project, prompt_ids=held)
    return sft, prompts, held


def test_reward_and_ppo_report_figures_on_evaluation_prompts_they_never_train_on(
    project_with_demos, tiny_base_dir, artifacts, settings
):
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    sft, prompts, held = ranked_with_held_out(project, tiny_base_dir)

    reward = execute(run_create(kind="reward", project=project, input_model=sft,
                                config={"max_steps": 2, "batch_size": 4, "val_fraction": 0.25},
                                enqueue_it=False))  # fmt: skip
    assert reward.rankings.count() == len(prompts) - 3
    assert not reward.rankings.filter(task__prompt_id__in=held).exists()
    m = reward.metrics
    assert m["heldout_prompts"] == 3 and m["heldout_pairs"] == 3 * 6
    assert m["heldout_length_baseline_accuracy"] == 1.0  # the labeler put longer replies first
    assert 0.0 <= m["heldout_accuracy"] <= 1.0

    ppo = execute(run_create(
        kind="ppo", project=project, input_model=sft, reward_model=reward.output_model,
        config={"iterations": 2, "prompts_per_iteration": 4, "max_new_tokens": 8,
                "ppo_epochs": 1, "minibatch_size": 4, "eval_every": 1, "keep_best": True},
        enqueue_it=False,
    ))  # fmt: skip
    assert not ppo.prompts.filter(pk__in=held).exists()
    assert "3 held-out prompts" in ppo.log_tail
    m = ppo.metrics
    # keep_best chose on a slice of the run's own prompts; the evaluation prompts only report
    assert m["val_prompts"] >= 1
    assert {"heldout_score", "heldout_kl", "val_score", "best_val_score",
            "best_heldout_score"} <= set(m)  # fmt: skip
    assert m["best_iteration"] in (1, 2)
