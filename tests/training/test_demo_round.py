"""`manage.py run_demo_round`: a whole round with simulated labelers, cut to a few prompts."""

import math
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from labeling.agreement import kendall_tau_b
from labeling.management.commands.load_demo_project import DEMO_FILE
from labeling.models import Prompt, Ranking, RankingTask
from training.demo.split import read_demo_rows, split_demo_rows
from training.models import ModelVersion, TrainingRun
from training.selectors import SAMPLE_BATCH_PREFIX

DEMO_ROWS = read_demo_rows(DEMO_FILE)
HELD_OUT = split_demo_rows(DEMO_ROWS, 0.2)[1]


@pytest.mark.django_db(transaction=True)
def test_the_demo_runs_a_round_and_reports_it(tiny_base_dir, artifacts):
    out = StringIO()
    call_command(
        "run_demo_round", preset="tiny", base=str(tiny_base_dir), sample_prompts=10,
        ppo_iterations=2, ppo_prompts=4, eval_prompts=8, set=["sft.max_steps=10"], stdout=out,
        rule="caveat", noise=0.1, bradley_terry=2.0, best_of=3,
    )  # fmt: skip
    report = out.getvalue()
    tasks = RankingTask.objects.filter(project__slug="python-stdlib")
    assert tasks.count() == 10
    rankings = Ranking.objects.filter(task__in=tasks)
    assert rankings.count() == 20  # both simulated labelers
    assert all(len(r.order) == 4 for r in rankings)  # Bradley-Terry: full orders, no ties
    runs = TrainingRun.objects.order_by("pk")
    assert [r.kind for r in runs] == ["sft", "sample", "reward", "ppo"]
    assert all(r.status == TrainingRun.Status.SUCCEEDED for r in runs)
    policy = ModelVersion.objects.get(kind="policy")
    assert "Rule: mentioning a caveat ('but', 'unless', 'raises', 'note', ...) > not." in report
    assert ("Labelers: rankings sampled Bradley-Terry from the scores (scale 2), 10% of "
            "neighbouring places swapped at random") in report  # fmt: skip
    assert "  replies that mention a caveat:\n    SFT " in report
    header, evaluated = report.split("  replies that mention a caveat:")[0].splitlines()[-2:]
    assert header.split() == ["training", "prompts", "held-out", "prompts"]
    assert evaluated.split()[:2] == ["prompts", "evaluated"] and int(evaluated.split()[-1]) > 20
    assert "  best of 3 SFT replies by the RM" in report
    # the held-out fifth of the demo's questions are the project's evaluation prompts, in no
    # run's data; PPO reported its reward on them
    prompts = Prompt.objects.filter(project__slug="python-stdlib")
    assert prompts.count() == len(DEMO_ROWS)
    held_out = {row["prompt"] for row in HELD_OUT}
    assert {p.turns[-1]["content"] for p in prompts.filter(is_evaluation=True)} == held_out
    for run in runs:
        used = [d.prompt for d in run.demonstrations.all()] + list(run.prompts.all()) + [
            r.task.prompt for r in run.rankings.all()]  # fmt: skip
        assert used and held_out.isdisjoint(p.turns[-1]["content"] for p in used)
    assert "(longer-reply baseline " in report and "; the weights of step " in report
    assert "  win rate over SFT (ties count half):\n    policy " in report
    kl_row = next(line for line in report.splitlines() if "KL to SFT per policy reply" in line)
    assert all(math.isfinite(float(kl)) for kl in kl_row.split()[-2:])  # a sampled estimate
    first = Prompt.objects.filter(project__slug="python-stdlib").order_by("id").first()
    assert f"  Q: {first.turns[-1]['content']}\n    SFT:    " in report  # an example of each
    assert f"lineage: {policy.name} <- PPO #{runs[3].pk}" in report
    assert "PPO reward on held-out prompts:" in report and "heldout_score" in runs[3].metrics
    usable = len({r.task_id for r in rankings if len(r.order) > 1})
    assert f"ranked tasks that prefer a reply:  {usable} of 10 (the rest tie" in report
    orders = [[r.order for r in rankings.filter(task=t)] for t in tasks]
    taus = [tau for a, b in orders if (tau := kendall_tau_b(a, b)) is not None]
    assert (f"labelers' agreement (tau-b):       {sum(taus) / len(taus):.2f} on the {len(taus)} "
            "tasks both ordered") in report  # fmt: skip


@pytest.mark.django_db
def test_a_noise_level_out_of_range_stops_the_demo_before_any_run():
    with pytest.raises(CommandError, match="noise is a share of swaps"):
        call_command("run_demo_round", preset="tiny", noise=1.5, stdout=StringIO())
    assert not TrainingRun.objects.exists()
    with pytest.raises(CommandError, match="ties in sampled rankings need a Bradley-Terry"):
        call_command("run_demo_round", preset="tiny", bt_ties=True, stdout=StringIO())
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_demo_runs_a_dpo_round_on_two_models_replies_then_a_ppo_round_on_the_new_policy(
    tiny_base_dir, artifacts
):
    out = StringIO()
    call_command(
        "run_demo_round", preset="tiny", base=str(tiny_base_dir), sample_prompts=10,
        eval_prompts=8, rounds=2, method=["dpo", "ppo"], sample_mix="base", bradley_terry=2.0,
        ppo_iterations=2, ppo_prompts=4, stdout=out,
        set=["sft.max_steps=10", "dpo.max_steps=4", "sample.mix_replies=2"],
    )  # fmt: skip
    report = out.getvalue()
    runs = TrainingRun.objects.order_by("pk")
    assert [r.kind for r in runs] == ["sft", "sample", "dpo", "sample", "reward", "ppo"]
    assert all(r.status == TrainingRun.Status.SUCCEEDED for r in runs)
    base, sft = runs[0].input_model, runs[0].output_model
    first = runs[2].output_model
    for task in RankingTask.objects.filter(batch_key=f"{SAMPLE_BATCH_PREFIX}{runs[1].pk}"):
        authors = sorted(c.model_version_id for c in task.completions.all())
        assert authors == sorted([base.pk] * 2 + [sft.pk] * 2)  # the base model wrote two
    assert f"{base.name}'s replies over {sft.name}'s: " in report and "pairs (above " in report
    assert runs[2].config["max_steps"] == 4 and runs[2].rankings.count() == 20
    assert first.parent == sft  # round 1: no reward model, no PPO
    assert "DPO held-out preference accuracy:" in report
    dpo = runs[2].metrics  # beside it, what "the longer reply wins" gets on the same pairs and,
    # each task ranking two models' replies, the accuracy on the pairs of one model's replies
    same = (f"; {dpo['val_same_writer_accuracy']:.3f} on the "
            f"{dpo['val_same_writer_pairs']:.0f} pairs of one model's replies")  # fmt: skip
    assert 0 < dpo["val_same_writer_pairs"] < dpo["val_pairs"]
    assert (f"(longer-reply baseline {dpo['val_length_baseline_accuracy']:.3f}, implicit-reward "
            f"margin {dpo['val_margin']:+.3f}, {dpo['val_pairs']:.0f} pairs{same}"
            ) in report  # fmt: skip
    assert f"lineage: {first.name} <- DPO #{runs[2].pk} <- " in report
    # round 2 ranks the new policy's replies (and the base model's), and its reward model
    # learns from every ranking of the project, round 1's too; PPO goes on from that policy
    assert runs[3].input_model == first
    for task in RankingTask.objects.filter(batch_key=f"{SAMPLE_BATCH_PREFIX}{runs[3].pk}"):
        authors = sorted(c.model_version_id for c in task.completions.all())
        assert authors == sorted([base.pk] * 2 + [first.pk] * 2)
    assert runs[4].rankings.count() == 40
    rm = runs[4].metrics
    assert (f"(longer-reply baseline {rm['val_length_baseline_accuracy']:.3f}; "
            f"{rm['val_same_writer_accuracy']:.3f} on the {rm['val_same_writer_pairs']:.0f} "
            "pairs of one model's replies") in report  # fmt: skip
    assert runs[5].input_model == first and runs[5].output_model.parent == first
    assert report.count("  win rate over SFT (ties count half):\n    policy ") == 2
    assert f"Round 1: {sft.name} -> {first.name}" in report
    assert f"Round 2: {first.name} -> {runs[5].output_model.name}" in report
    assert "  ppo (round 2) " in report  # the timings tell the rounds apart
