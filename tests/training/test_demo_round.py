"""`manage.py run_demo_round`: a whole round with simulated labelers, cut to a few prompts."""

from io import StringIO

import pytest
from django.core.management import call_command

from labeling.models import Prompt, Ranking, RankingTask
from training.models import ModelVersion, TrainingRun


@pytest.mark.django_db(transaction=True)
def test_the_demo_runs_a_round_and_reports_it(tiny_base_dir, artifacts):
    out = StringIO()
    call_command(
        "run_demo_round", preset="tiny", base=str(tiny_base_dir), sample_prompts=10,
        ppo_iterations=2, ppo_prompts=4, eval_prompts=8, set=["sft.max_steps=10"], stdout=out,
    )  # fmt: skip
    report = out.getvalue()
    tasks = RankingTask.objects.filter(project__slug="python-stdlib")
    assert tasks.count() == 10
    assert Ranking.objects.filter(task__in=tasks).count() == 20  # both simulated labelers
    runs = TrainingRun.objects.order_by("pk")
    assert [r.kind for r in runs] == ["sft", "sample", "reward", "ppo"]
    assert all(r.status == TrainingRun.Status.SUCCEEDED for r in runs)
    policy = ModelVersion.objects.get(kind="policy")
    assert "Rule: saying what the function returns > not saying it." in report
    assert "replies that say what it returns: SFT " in report
    assert "win rate of the policy over SFT:" in report
    first = Prompt.objects.filter(project__slug="python-stdlib").order_by("id").first()
    assert f"  Q: {first.turns[-1]['content']}\n    SFT:    " in report  # an example of each
    assert f"lineage: {policy.name} <- PPO #{runs[3].pk}" in report
