"""Held-out evaluation prompts never enter a training snapshot: SFT, reward model, PPO (nor
sampling for ranking), whether they were marked before or after their labels came in."""

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from training_helpers import add_demonstrations, make_project

from labeling.models import RankingTask
from labeling.services.evaluation_prompts import prompts_mark_evaluation
from labeling.services.queue import ranking_claim_next
from labeling.services.ranking_tasks import ranking_tasks_create
from labeling.services.rankings import ranking_submit
from training.services.runs import run_create
from training.services.snapshots import snapshot_take

pytestmark = pytest.mark.django_db


def _rank_everything(project, prompts):
    ranking_tasks_create(
        project=project, batch_key="b1",
        prompt_completions=[(p.pk, [{"text": f"{p.pk} reply {i}"} for i in range(4)])
                            for p in prompts],
    )  # fmt: skip
    ranker = get_user_model().objects.create_user("ranker")
    while (lease := ranking_claim_next(labeler=ranker, project=project)) is not None:
        ids = list(lease.task.items.values_list("completion_id", flat=True))
        ranking_submit(assignment_id=lease.pk, labeler=ranker, order=[[i] for i in ids])


@pytest.fixture
def labeled(settings, author):
    """12 prompts, each with a demonstration and a ranked task; 3 of them then held out."""
    settings.TRAINING_MIN_RANKED_TASKS = 2
    project = make_project()
    demos = add_demonstrations(project, author, 12)
    prompts = [d.prompt for d in demos]
    _rank_everything(project, prompts[:10])
    held = [prompts[0].pk, prompts[5].pk, prompts[11].pk]
    ranking_tasks_create(project=project, batch_key="b2",
                         prompt_completions=[(prompts[11].pk, [{"text": "x"}] * 4)])
    assert prompts_mark_evaluation(project=project, prompt_ids=held) == 3
    return project, set(held)


def test_no_snapshot_holds_an_evaluation_prompt(labeled, base_version):
    project, held = labeled
    now = timezone.now()
    sft = snapshot_take(project=project, kind="sft", config={}, as_of=now)
    reward = snapshot_take(project=project, kind="reward", config={}, as_of=now)
    ppo = snapshot_take(project=project, kind="ppo", config={"ptx_coef": 0.1}, as_of=now)
    sample = snapshot_take(project=project, kind="sample", config={"num_prompts": 100},
                           as_of=now, input_model=base_version)  # fmt: skip
    from labeling.models import Demonstration, Ranking

    demo_prompts = set(Demonstration.objects.filter(pk__in=sft.demonstrations + ppo.demonstrations)
                       .values_list("prompt_id", flat=True))  # fmt: skip
    ranked_prompts = set(Ranking.objects.filter(pk__in=reward.rankings)
                         .values_list("task__prompt_id", flat=True))  # fmt: skip
    assert len(demo_prompts) == 9 and not demo_prompts & held
    assert len(ranked_prompts) == 8 and not ranked_prompts & held
    assert len(ppo.prompts) == 9 and not set(ppo.prompts) & held
    assert len(sample.prompts) == 9 and not set(sample.prompts) & held


def test_a_run_records_only_training_prompts(labeled, base_version):
    project, held = labeled
    run = run_create(kind="sft", project=project, input_model=base_version, enqueue_it=False)
    assert run.demonstrations.count() == 9
    assert not set(run.demonstrations.values_list("prompt_id", flat=True)) & held


def test_holding_out_withdraws_open_ranking_tasks_and_can_be_undone(labeled):
    project, held = labeled
    withdrawn = RankingTask.objects.get(batch_key="b2")
    assert withdrawn.status == RankingTask.Status.CANCELLED
    assert prompts_mark_evaluation(project=project, prompt_ids=list(held),
                                   is_evaluation=False) == 3  # fmt: skip
    now = timezone.now()
    assert len(snapshot_take(project=project, kind="sft", config={}, as_of=now)
               .demonstrations) == 12  # fmt: skip
