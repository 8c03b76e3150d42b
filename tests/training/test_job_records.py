"""Rows to `training.ml` records: rankings grouped per task with ties kept and who wrote each
reply, demonstrations with their prompt ids; the SFT ancestor PPO keeps its KL to."""

import pytest
from django.contrib.auth import get_user_model
from training_helpers import make_project

from labeling.models import Demonstration, Ranking
from labeling.services.demonstrations import prompt_create
from labeling.services.queue import ranking_claim_next
from labeling.services.ranking_tasks import ranking_tasks_create
from labeling.services.rankings import ranking_submit
from training.jobs.common import demonstration_records
from training.jobs.reward import ranking_records
from training.selectors import sft_ancestor
from training.services.model_versions import model_version_create


def test_rankings_become_one_record_per_task_with_positions_and_ties(db):
    project = make_project(k=4, overlap=2)
    prompt = prompt_create(
        project=project, turns=[{"role": "user", "content": "Which?"}], source="imported"
    )
    writers = [7, 7, 9, None]  # two replies of one model, one of another, one of nobody known
    [task] = ranking_tasks_create(project=project, batch_key="b", prompt_completions=[
        (prompt.pk, [{"text": f"reply {i}", "model_version_id": w}
                     for i, w in enumerate(writers)])])  # fmt: skip
    ids = list(task.items.order_by("position").values_list("completion_id", flat=True))
    for name, order in (("a", [[ids[2]], [ids[0], ids[3]], [ids[1]]]),
                        ("b", [[ids[0]], [ids[1]], [ids[2]], [ids[3]]])):  # fmt: skip
        labeler = get_user_model().objects.create_user(name)
        assignment = ranking_claim_next(labeler=labeler, project=project)
        ranking_submit(assignment_id=assignment.pk, labeler=labeler, order=order)

    [record] = ranking_records(Ranking.objects.all())
    assert record.prompt == [{"role": "user", "content": "Which?"}]
    assert record.completions == ["reply 0", "reply 1", "reply 2", "reply 3"]
    assert record.rankings == [[2, [0, 3], 1], [0, 1, 2, 3]]
    assert record.prompt_id == prompt.pk
    assert record.writers == writers


def test_demonstrations_keep_their_prompt(project_with_demos):
    records = demonstration_records(Demonstration.objects.all())
    assert len(records) == 12
    first = Demonstration.objects.order_by("id").first()
    assert records[0].turns == first.turns and records[0].prompt_id == first.prompt_id


@pytest.mark.django_db
def test_ppo_keeps_its_kl_to_the_sft_model_a_policy_descends_from():
    def version(kind, parent=None):
        return model_version_create(
            kind=kind, parent=parent, checkpoint_dir="/x", tokenizer_path="/x/t"
        )

    base = version("base")
    sft = version("sft", base)
    policy = version("policy", sft)
    policy2 = version("policy", policy)
    assert sft_ancestor(policy2) == sft and sft_ancestor(sft) == sft and sft_ancestor(base) is None
