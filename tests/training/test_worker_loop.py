"""The whole loop through one real worker: demonstrations -> SFT -> a sample run pushes ranking
tasks with K completions -> rankings through the labeling service -> reward model -> PPO -> a
policy whose lineage names every run and dataset snapshot."""

import pytest
from django.contrib.auth import get_user_model
from waiting import wait_for

from labeling.models import RankingTask
from labeling.services.queue import ranking_claim_next
from labeling.services.rankings import ranking_submit
from training.models import ModelVersion, TrainingRun
from training.selectors import lineage, lineage_runs
from training.services.runs import run_create

pytestmark = pytest.mark.worker
S = TrainingRun.Status


def finish(run, worker, timeout=120):
    def done():
        run.refresh_from_db()
        return run.is_finished

    assert wait_for(done, timeout=timeout), worker.output()[-3000:]
    assert run.status == S.SUCCEEDED, f"{run.error}\n{run.log_tail}"
    return run


def rank_everything(project, labeler, *, tie: bool = False) -> int:
    """A simulated labeler: claims each task and puts longer replies first (with `tie`, ranks
    every reply of a task equal)."""
    ranked = 0
    while (assignment := ranking_claim_next(labeler=labeler, project=project)) is not None:
        items = assignment.task.items.select_related("completion").order_by("position")
        order = [[i.completion_id] for i in sorted(items, key=lambda i: -len(i.completion.text))]
        if tie:
            order = [[i for [i] in order]]
        ranking_submit(assignment_id=assignment.pk, labeler=labeler, order=order)
        ranked += 1
    return ranked


def test_the_loop_end_to_end_through_a_real_worker(
    training_worker, project_with_demos, base_version, staff, settings
):
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    worker = training_worker()

    sft = finish(
        run_create(
            kind="sft",
            project=project,
            input_model=base_version,
            created_by=staff,
            config={"max_steps": 6, "batch_size": 4, "eval_every": 0},
        ),
        worker,
    )
    sft_version = sft.output_model

    sample = finish(
        run_create(
            kind="sample",
            project=project,
            input_model=sft_version,
            config={"num_prompts": 8, "max_new_tokens": 12},
        ),
        worker,
    )
    tasks = RankingTask.objects.filter(project=project, batch_key=f"training-run-{sample.pk}")
    assert tasks.count() == 8 and sample.metrics["ranking_tasks"] == 8
    for task in tasks:
        completions = list(task.completions.all())
        assert len(completions) == project.k == 4
        assert {c.model_version_id for c in completions} == {sft_version.pk}
        assert {c.model_label for c in completions} == {sft_version.name}

    labeler = get_user_model().objects.create_user("ranker")
    assert rank_everything(project, labeler) == 8

    # Rankings are usable at once: no export step between submitting and training.
    reward = run_create(
        kind="reward",
        project=project,
        input_model=sft_version,
        config={"max_steps": 4, "batch_size": 4, "val_fraction": 0.25},
    )
    assert reward.rankings.count() == 8
    reward = finish(reward, worker)
    rm = reward.output_model
    assert rm.kind == "reward" and "val_accuracy" in rm.metrics

    ppo = finish(run_create(kind="ppo", project=project, input_model=sft_version, reward_model=rm,
                            config={"iterations": 2, "prompts_per_iteration": 4,
                                    "max_new_tokens": 12,
                                    "ppo_epochs": 1, "minibatch_size": 4}), worker)  # fmt: skip
    policy = ppo.output_model
    assert (policy.kind, policy.parent, policy.run) == ("policy", sft_version, ppo)
    assert {"score", "kl", "entropy"} <= set(policy.metrics)
    assert ppo.metric_points.count() == 2

    tree = lineage(version=ModelVersion.objects.get(pk=policy.pk))
    runs = lineage_runs(tree)
    assert {r.pk for r in runs} == {ppo.pk, reward.pk, sample.pk, sft.pk}
    assert all(r.snapshot_id.startswith(f"{project.slug}.{project.pk}@") for r in runs)
    names = []

    def walk(node):
        names.append(node.version.name)
        for child in node.inputs:
            walk(child)

    walk(tree)
    assert names[0] == policy.name and rm.name in names and sft_version.name in names
    assert "tiny-base" in names  # down to the base model
