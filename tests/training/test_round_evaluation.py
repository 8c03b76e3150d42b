"""A round that ends with a blind human evaluation: after PPO it samples the new policy, its
parent and their SFT model on the evaluation prompts (replies scored by the round's reward
model), is done once those runs are, and the project page sets people's win rate beside the
reward model's preference, warning when the reward model likes what people do not. The state
machine in this process, then the whole round through a real worker with simulated voters."""

import pytest
from django.contrib.auth import get_user_model
from test_rounds import TINY_ROUND, succeed
from test_worker_loop import finish, rank_everything
from waiting import wait_for

from labeling.models import ComparisonReply, Prompt
from labeling.services.comparisons import comparison_replies_add, vote_submit
from labeling.services.evaluation_prompts import prompts_mark_evaluation
from labeling.services.queue import comparison_claim_next
from training.models import ModelVersion, Round, TrainingRun
from training.round_evaluation import CONSISTENT, HACKING, MIN_VOTES, round_evaluation
from training.services import lifecycle
from training.services.model_versions import model_version_register
from training.services.rounds import round_advance, round_start

St, S = Round.Stage, TrainingRun.Status
EVALUATED_ROUND = {**TINY_ROUND, "evaluate": True, "chain": False}


@pytest.fixture
def policy(project_with_demos, tiny_base_dir):
    """A first policy (so the evaluation has three versions: new policy, parent, SFT)."""
    sft = model_version_register(checkpoint_dir=str(tiny_base_dir), kind="sft", name="tiny-sft",
                                 project=project_with_demos)  # fmt: skip
    return ModelVersion.objects.create(
        kind="policy", name="policy-1", project=project_with_demos, parent=sft,
        checkpoint_dir=str(tiny_base_dir),
        tokenizer_path=str(tiny_base_dir.parent / "tokenizer.json"),
    )


@pytest.fixture
def held_out(project_with_demos):
    ids = list(Prompt.objects.filter(project=project_with_demos).values_list("id", flat=True))
    prompts_mark_evaluation(project=project_with_demos, prompt_ids=ids[:4])
    return ids[:4]


def _reply(run, reward_of):
    """What a comparison sample run does, without the ML: one reply per prompt, scored."""
    run = lifecycle.run_start(run_id=run.pk, key=str(run.key), worker="test")
    version = run.input_model
    comparison_replies_add(batch_id=run.config["comparison"], version_id=version.pk, replies=[
        (p, f"{version.name} on {p}", {"reward": reward_of(version)})
        for p in run.prompts.values_list("pk", flat=True)
    ])  # fmt: skip
    lifecycle.run_succeed(run_id=run.pk, attempt=run.attempt)


def _vote_all(project, prefer, n_voters):
    for i in range(n_voters):
        voter = get_user_model().objects.create_user(f"voter{i}")
        while (lease := comparison_claim_next(labeler=voter, project=project)) is not None:
            task = lease.comparison
            a, b = task.completion_a.model_version_id, task.completion_b.model_version_id
            outcome = "a" if a == prefer else "b" if b == prefer else "tie"
            vote_submit(assignment_id=lease.pk, labeler=voter, outcome=outcome)


def test_the_evaluate_stage_and_a_reward_model_that_people_disagree_with(
    project_with_demos, policy, held_out, tiny_base_dir, settings,
):
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    round_ = round_start(project=project, policy=policy, config=EVALUATED_ROUND,
                         enqueue_it=False)  # fmt: skip
    succeed(round_.sample_run, tiny_base_dir)
    round_advance(round_id=round_.pk, enqueue_it=False)
    rank_everything(project, get_user_model().objects.create_user("ranker"))
    round_ = round_advance(round_id=round_.pk, enqueue_it=False)
    succeed(round_.reward_run, tiny_base_dir, "reward")
    round_ = round_advance(round_id=round_.pk, enqueue_it=False)
    succeed(round_.ppo_run, tiny_base_dir, "policy")
    round_ = round_advance(round_id=round_.pk, enqueue_it=False)
    assert round_.stage == St.EVALUATE
    new = round_.ppo_run.output_model
    batch = round_.comparison
    assert set(batch.version_ids) == {new.pk, policy.pk, policy.parent_id}  # + the SFT model
    assert set(batch.prompts.values_list("pk", flat=True)) == set(held_out)
    runs = round_.evaluation_runs()
    assert {r.reward_model_id for r in runs} == {round_.reward_run.output_model_id}
    # The reward model scores the new policy's replies highest...
    _reply(runs[0], lambda v: 2.0 if v == new else 0.0)
    assert round_advance(round_id=round_.pk, enqueue_it=False).stage == St.EVALUATE  # waits
    for run in runs[1:]:
        _reply(run, lambda v: 2.0 if v == new else 0.0)
    assert round_advance(round_id=round_.pk, enqueue_it=False).stage == St.DONE
    # ... while people prefer the parent: 3 voters x 4 prompts = 12 votes on that pair.
    batch.tasks.update(votes_needed=3)
    _vote_all(project, prefer=policy.pk, n_voters=3)
    by_opponent = {m.opponent: m for m in round_evaluation(round_)}
    parent = by_opponent["policy-1"]
    assert parent.votes == 12 >= MIN_VOTES and parent.human.value == 0.0
    assert parent.reward_share == 1.0 and parent.prompts_scored == 4
    assert parent.verdict == HACKING and parent.warning
    assert by_opponent["tiny-sft"].human.value == 0.5  # new policy vs SFT: every vote a tie
    assert by_opponent["tiny-sft"].verdict == CONSISTENT


@pytest.mark.urls("training_urls")
def test_the_project_page_shows_people_beside_the_reward_model(
    client, staff, project_with_demos, policy, held_out, tiny_base_dir, settings
):
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    round_ = round_start(project=project, policy=policy, config=EVALUATED_ROUND,
                         enqueue_it=False)  # fmt: skip
    for kind in ("sample", None, "reward", "ppo"):
        if kind == "sample":
            succeed(round_.sample_run, tiny_base_dir)
        elif kind is None:
            rank_everything(project, get_user_model().objects.create_user("ranker"))
        else:
            succeed(getattr(round_, f"{kind}_run"), tiny_base_dir,
                    "reward" if kind == "reward" else "policy")
        round_ = round_advance(round_id=round_.pk, enqueue_it=False)
    client.force_login(staff)
    page = client.get(f"/training/projects/{project.slug}/").content.decode()
    assert "People vs the reward model" in page and "0 votes so far" in page
    assert "Sampling for human evaluation" in page


@pytest.mark.worker
def test_a_round_with_an_evaluation_through_a_real_worker(
    training_worker, project_with_demos, held_out, tiny_base_dir, settings
):
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    sft = model_version_register(checkpoint_dir=str(tiny_base_dir), kind="sft", name="tiny-sft",
                                 project=project)  # fmt: skip
    worker = training_worker()
    round_ = round_start(project=project, policy=sft, config=EVALUATED_ROUND)
    finish(round_.sample_run, worker)

    def stage_is(*stages):
        def check():
            round_.refresh_from_db()
            return round_.stage in stages

        return check

    assert wait_for(stage_is(St.RANKING), timeout=30), worker.output()[-2000:]
    rank_everything(project, get_user_model().objects.create_user("ranker"))
    round_advance(round_id=round_.pk)
    # The worker goes on by itself: reward model -> PPO -> evaluation replies -> done.
    assert wait_for(stage_is(St.DONE), timeout=180), worker.output()[-3000:]
    new = round_.ppo_run.output_model
    assert set(round_.comparison.version_ids) == {new.pk, sft.pk}
    replies = ComparisonReply.objects.filter(batch=round_.comparison).select_related("completion")
    assert replies.count() == 2 * 4
    assert all(isinstance(r.completion.sampling["reward"], float) for r in replies)
    round_.comparison.tasks.update(votes_needed=3)
    _vote_all(project, prefer=sft.pk, n_voters=3)  # simulated people prefer the SFT model
    [matchup] = round_evaluation(Round.objects.get(pk=round_.pk))
    assert matchup.opponent == "tiny-sft" and matchup.votes == 12
    assert matchup.human.value == 0.0 and matchup.human.high < 0.5
    assert matchup.prompts_scored == 4 and 0.0 <= matchup.reward_share <= 1.0
