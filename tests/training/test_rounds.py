"""Rounds: the loop chained. The state machine in this process (a stage waits for its run and
for the rankings; each stage's run is made once; one open round per project), the "continue
round" button and command, and a whole round through a real worker: a finished run moves the
round on by itself, and the next round samples from the new policy."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from test_worker_loop import finish, rank_everything
from waiting import wait_for

from labeling.services.ranking_tasks import ranking_tasks_create
from training.errors import Conflict, Invalid
from training.models import Round, TrainingRun
from training.services import lifecycle
from training.services.model_versions import model_version_register
from training.services.rounds import (
    round_advance,
    round_continue,
    round_start,
    rounds_advance_waiting,
)

St, S = Round.Stage, TrainingRun.Status
TINY_ROUND = {
    "sample": {"num_prompts": 6, "max_new_tokens": 10},
    "reward": {"max_steps": 3, "batch_size": 4, "val_fraction": 0.25},
    "ppo": {"iterations": 1, "prompts_per_iteration": 4, "max_new_tokens": 10, "ppo_epochs": 1,
            "minibatch_size": 4},
}  # fmt: skip


@pytest.fixture
def sft_version(project_with_demos, tiny_base_dir):
    """The tiny base registered as the project's SFT model (a round needs one to sample from)."""
    return model_version_register(checkpoint_dir=str(tiny_base_dir), kind="sft",
                                  name="tiny-sft", project=project_with_demos)  # fmt: skip


def succeed(run, tiny_base_dir, output_kind=None):
    """What a worker does, without the ML: take the run and finish it (a sample run pushes one
    ranking task of K placeholder replies per prompt; a training run records a model)."""
    run = lifecycle.run_start(run_id=run.pk, key=str(run.key), worker="test")
    if run.kind == "sample":
        replies = [{"text": f"reply {i}", "model_version_id": run.input_model_id}
                   for i in range(run.project.k)]  # fmt: skip
        prompts = run.prompts.values_list("pk", flat=True)
        ranking_tasks_create(project=run.project, batch_key=f"training-run-{run.pk}",
                             prompt_completions=[(p, replies) for p in prompts])  # fmt: skip
    output = output_kind and {
        "kind": output_kind, "checkpoint_dir": str(tiny_base_dir), "parent": run.input_model,
        "tokenizer_path": str(tiny_base_dir.parent / "tokenizer.json"),
    }  # fmt: skip
    lifecycle.run_succeed(run_id=run.pk, attempt=run.attempt, output=output or None)


def reaches(round_, stage, *, timeout) -> bool:
    """Whether the round, moved on by a real worker, gets to `stage` within `timeout` s."""

    def there():
        round_.refresh_from_db()
        return round_.stage == stage

    return wait_for(there, timeout=timeout)


def test_a_round_waits_for_its_run_and_rankings_and_makes_each_run_once(
    project_with_demos, sft_version, tiny_base_dir, settings, django_capture_on_commit_callbacks
):
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    round_ = round_start(project=project, config=TINY_ROUND, enqueue_it=False)
    assert (round_.number, round_.stage, round_.policy) == (1, St.SAMPLING, sft_version)
    with pytest.raises(Conflict):
        round_start(project=project, enqueue_it=False)  # one open round per project

    assert round_advance(round_id=round_.pk, enqueue_it=False).stage == St.SAMPLING  # queued
    succeed(round_.sample_run, tiny_base_dir)
    round_ = round_advance(round_id=round_.pk, enqueue_it=False)
    assert round_.stage == St.RANKING and round_.reward_run is None  # nobody ranked yet

    labeler = get_user_model().objects.create_user("ranker")
    assert rank_everything(project, labeler) == 6
    # Nobody presses a button: the periodic sweep of waiting rounds moves it on.
    [round_] = rounds_advance_waiting(enqueue_it=False)
    assert round_.stage == St.REWARD
    reward = round_.reward_run
    assert (reward.kind, reward.input_model) == ("reward", sft_version)
    assert reward.rankings.count() == 6
    assert round_advance(round_id=round_.pk, enqueue_it=False).reward_run == reward  # not twice
    assert TrainingRun.objects.filter(kind="reward").count() == 1

    succeed(reward, tiny_base_dir, "reward")
    round_ = round_advance(round_id=round_.pk, enqueue_it=False)
    ppo = round_.ppo_run
    assert (round_.stage, ppo.input_model, ppo.reward_model) == (
        St.PPO, sft_version, round_.reward_run.output_model)  # fmt: skip
    succeed(ppo, tiny_base_dir, "policy")
    ppo.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):  # the next round opens after commit
        round_ = round_advance(round_id=round_.pk, enqueue_it=False)
    assert round_.stage == St.DONE and round_.finished_at
    second = Round.objects.get(project=project, number=2)  # chained: the next round samples
    assert second.policy == ppo.output_model and second.stage == St.SAMPLING
    assert second.sample_run.input_model == ppo.output_model
    assert second.config == round_.config


def test_a_round_whose_rankings_all_tie_waits_and_says_why(
    project_with_demos, sft_version, tiny_base_dir, settings
):
    """Rankings that tie every reply give a reward model no pair to learn from: the round does
    not start one that would fail in the worker, it waits, and the button says why."""
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    round_ = round_start(project=project, config=TINY_ROUND, enqueue_it=False)
    succeed(round_.sample_run, tiny_base_dir)
    round_advance(round_id=round_.pk, enqueue_it=False)
    assert rank_everything(project, get_user_model().objects.create_user("r"), tie=True) == 6

    assert rounds_advance_waiting(enqueue_it=False) == []  # the sweep goes on without it
    round_.refresh_from_db()
    assert round_.stage == St.RANKING and round_.reward_run is None
    assert not TrainingRun.objects.filter(kind="reward").exists()
    with pytest.raises(Invalid, match=r"has 0 ranked tasks that prefer one reply to another "
                                      r"\(6 more tie all their replies\), at least 4"):
        round_continue(project=project, enqueue_it=False)


def test_a_round_needs_a_policy_and_checks_its_settings_at_once(project_with_demos, base_version):
    with pytest.raises(Invalid, match="SFT"):
        round_start(project=project_with_demos, enqueue_it=False)
    with pytest.raises(Invalid, match="iterations"):
        round_start(project=project_with_demos, config={"ppo": {"iterations": 0}},
                    enqueue_it=False)  # fmt: skip
    with pytest.raises(Invalid, match="SFT"):
        round_start(project=project_with_demos, policy=base_version, enqueue_it=False)


def test_continue_resumes_the_failed_run_of_the_round(
    project_with_demos, sft_version, monkeypatch, django_capture_on_commit_callbacks
):
    from training.services import runs

    monkeypatch.setattr(runs, "run_enqueue", lambda run: None)  # no worker in this test
    round_ = round_start(project=project_with_demos, config=TINY_ROUND, enqueue_it=False)
    run = round_.sample_run
    TrainingRun.objects.filter(pk=run.pk).update(status=S.FAILED, error="worker vanished")
    with django_capture_on_commit_callbacks(execute=True):
        round_continue(project=project_with_demos, enqueue_it=False)
    run.refresh_from_db()
    assert run.status == S.QUEUED and run.error == ""


@pytest.mark.urls("training_urls")
def test_continue_round_button_is_for_staff(client, staff, labeler, project_with_demos,
                                            sft_version, monkeypatch):  # fmt: skip
    from training.services import rounds

    monkeypatch.setattr(rounds, "run_enqueue", lambda run: None)  # no worker in this test
    url = f"/training/projects/{project_with_demos.slug}/rounds/continue/"
    client.force_login(labeler)
    assert client.post(url).status_code == 403 and not Round.objects.exists()
    client.force_login(staff)
    assert client.post(url).status_code == 302
    page = client.get(f"/training/projects/{project_with_demos.slug}/").content.decode()
    assert "Round 1" in page and "Continue round 1" in page and "tiny-sft" in page


@pytest.mark.worker
def test_a_round_runs_itself_through_a_real_worker(
    training_worker, project_with_demos, sft_version, settings
):
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    worker = training_worker()
    round_ = round_start(project=project, config=TINY_ROUND)
    finish(round_.sample_run, worker)

    assert reaches(round_, St.RANKING, timeout=30), worker.output()[-2000:]
    rank_everything(project, get_user_model().objects.create_user("ranker"))
    call_command("continue_round", "--waiting")  # the rankings are in: the reward model starts
    # From here the worker chains by itself: reward model -> PPO -> round done -> next round.
    assert reaches(round_, St.DONE, timeout=120), worker.output()[-3000:]
    reward, ppo = finish(round_.reward_run, worker), finish(round_.ppo_run, worker)
    assert (ppo.input_model, ppo.reward_model) == (sft_version, reward.output_model)
    second = wait_for(lambda: Round.objects.filter(project=project, number=2).first(), 30)
    assert second.policy == round_.ppo_run.output_model
    finish(second.sample_run, worker)  # the next round samples from the new policy


def test_the_reward_model_starts_from_the_base_model_when_the_round_says_so(
    project_with_demos, base_version, tiny_base_dir, settings
):
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    sft = model_version_register(checkpoint_dir=str(tiny_base_dir), kind="sft", name="tiny-sft",
                                 project=project)  # fmt: skip
    sft.parent = base_version  # as an SFT run records it
    sft.save(update_fields=["parent"])
    with pytest.raises(Invalid, match="reward_init must be one of sft, base"):
        round_start(project=project, config={"reward_init": "policy"}, enqueue_it=False)
    round_ = round_start(project=project, config={**TINY_ROUND, "reward_init": "base"},
                         enqueue_it=False)  # fmt: skip
    succeed(round_.sample_run, tiny_base_dir)
    round_advance(round_id=round_.pk, enqueue_it=False)
    rank_everything(project, get_user_model().objects.create_user("ranker"))
    round_ = round_advance(round_id=round_.pk, enqueue_it=False)
    assert round_.reward_run.input_model == base_version  # not the SFT model it samples from
    assert round_.ppo_run is None and round_.policy == sft


def test_a_round_mixes_the_base_models_replies_into_its_ranking_tasks_when_asked(
    project_with_demos, base_version, tiny_base_dir
):
    project = project_with_demos
    sft = model_version_register(checkpoint_dir=str(tiny_base_dir), kind="sft", name="tiny-sft",
                                 project=project)  # fmt: skip
    with pytest.raises(Invalid, match="descends from no base model"):
        round_start(project=project, config={"sample_mix": "base"}, enqueue_it=False)
    sft.parent = base_version  # as an SFT run records it
    sft.save(update_fields=["parent"])
    with pytest.raises(Invalid, match="sample_mix must be one of base, sft or empty"):
        round_start(project=project, config={"sample_mix": "gpt-4"}, enqueue_it=False)
    with pytest.raises(Invalid, match="that model itself"):  # round 1 samples from SFT
        round_start(project=project, config={"sample_mix": "sft"}, enqueue_it=False)
    with pytest.raises(Invalid, match="give 1 to 3"):  # checked at once, not when it samples
        round_start(project=project, config={"sample_mix": "base", "sample": {"mix_replies": 4}},
                    enqueue_it=False)  # fmt: skip
    assert not Round.objects.exists()

    round_ = round_start(project=project, enqueue_it=False,
                         config={**TINY_ROUND, "sample_mix": "base",
                                 "sample": {**TINY_ROUND["sample"], "mix_replies": 2}})  # fmt: skip
    run = round_.sample_run
    assert (run.input_model, run.config["mix_model"], run.config["mix_replies"]) == (
        sft, base_version.pk, 2)  # fmt: skip
    assert round_.config["sample_mix"] == "base"  # the next round mixes the base model too


def test_a_round_whose_policy_has_no_base_cannot_start_its_reward_model_from_one(
    project_with_demos, sft_version
):
    with pytest.raises(Invalid, match="descends from no base model"):
        round_start(project=project_with_demos, config={"reward_init": "base"}, enqueue_it=False)


def test_a_dpo_round_trains_its_policy_from_the_rankings_without_a_reward_model(
    project_with_demos, sft_version, tiny_base_dir, settings, django_capture_on_commit_callbacks
):
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    with pytest.raises(Invalid, match="method must be one of ppo, dpo"):
        round_start(project=project, config={"method": "sppo"}, enqueue_it=False)
    with pytest.raises(Invalid, match="beta"):  # its settings are checked when the round starts
        round_start(project=project, config={"method": "dpo", "dpo": {"beta": -1}},
                    enqueue_it=False)  # fmt: skip
    round_ = round_start(project=project, config={**TINY_ROUND, "method": "dpo"},
                         enqueue_it=False)  # fmt: skip
    succeed(round_.sample_run, tiny_base_dir)
    round_advance(round_id=round_.pk, enqueue_it=False)
    rank_everything(project, get_user_model().objects.create_user("ranker"))
    round_ = round_advance(round_id=round_.pk, enqueue_it=False)
    dpo = round_.dpo_run
    assert round_.stage == St.DPO and round_.reward_run is None and round_.ppo_run is None
    assert (dpo.kind, dpo.input_model, dpo.rankings.count()) == ("dpo", sft_version, 6)
    assert round_.current_run == dpo
    succeed(dpo, tiny_base_dir, "policy")
    dpo.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        round_ = round_advance(round_id=round_.pk, enqueue_it=False)
    assert round_.stage == St.DONE and round_.policy_run == dpo
    second = Round.objects.get(project=project, number=2)
    assert second.policy == dpo.output_model and second.config["method"] == "dpo"


@pytest.mark.urls("training_urls")
def test_the_round_button_starts_a_dpo_round_when_asked(client, staff, project_with_demos,
                                                        sft_version, monkeypatch):  # fmt: skip
    from training.services import rounds

    staff_client = client
    staff_client.force_login(staff)
    monkeypatch.setattr(rounds, "run_enqueue", lambda run: None)  # no worker in this test
    page = f"/training/projects/{project_with_demos.slug}/"
    assert 'name="method"' in staff_client.get(page).content.decode()
    url = f"{page}rounds/continue/"
    assert 'name="chat_comparisons"' in staff_client.get(page).content.decode()
    bad = staff_client.post(url, {"chat_comparisons": "many"})
    assert bad.status_code == 400 and "chat_comparisons must be" in bad.content.decode()
    assert not Round.objects.exists()
    assert 'name="sample_mix"' in staff_client.get(page).content.decode()
    bad = staff_client.post(url, {"sample_mix": "sft"})  # round 1 samples from SFT itself
    assert bad.status_code == 400 and "that model itself" in bad.content.decode()
    assert staff_client.post(url, {"method": "dpo", "chat_comparisons": "0",
                                   "sample_mix": ""}).status_code == 302  # fmt: skip
    assert Round.objects.get(project=project_with_demos).config["method"] == "dpo"


@pytest.mark.worker
def test_a_dpo_round_runs_through_a_real_worker(
    training_worker, project_with_demos, sft_version, settings
):
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    worker = training_worker()
    round_ = round_start(project=project, config={
        **TINY_ROUND, "method": "dpo", "chain": False,
        "dpo": {"max_steps": 3, "batch_size": 4, "val_fraction": 0.25}})  # fmt: skip
    finish(round_.sample_run, worker)
    assert reaches(round_, St.RANKING, timeout=30), worker.output()[-2000:]
    rank_everything(project, get_user_model().objects.create_user("ranker"))
    call_command("continue_round", "--waiting")
    assert reaches(round_, St.DONE, timeout=120), worker.output()[-3000:]
    dpo = finish(round_.dpo_run, worker)
    policy = dpo.output_model
    assert (policy.kind, policy.parent) == ("policy", sft_version)
    assert dpo.metrics["train_prompts"] > 0 and "val_accuracy" in dpo.metrics
    assert dpo.metric_points.filter(values__has_key="loss").exists()  # its curve


def test_a_round_can_start_chatgpts_comparison_data_from_the_projects_chats(
    project_with_demos, sft_version, labeler
):
    from chat.models import ChatComparison
    from chat.services.conversations import chat_models_allow, conversation_start
    from training.models import Generation

    project = project_with_demos
    with pytest.raises(Invalid, match="chat_comparisons must be a whole number from 0 to 100"):
        round_start(project=project, config={"chat_comparisons": "many"}, enqueue_it=False)
    chat_models_allow(project=project, versions=[sft_version])
    for question in ("What does len return?", "What is a dict?"):
        conversation = conversation_start(labeler=labeler, project=project,
                                          model_version=sft_version, text=question)  # fmt: skip
        Generation.objects.filter(pk=conversation.current.generation_id).update(
            status=Generation.Status.DONE, text="A reply written by the model.")  # fmt: skip
    round_ = round_start(project=project, config={**TINY_ROUND, "chat_comparisons": 1},
                         enqueue_it=False)  # fmt: skip
    [comparison] = ChatComparison.objects.all()  # one of the two messages, picked at random
    assert comparison.message.conversation.project == project
    assert comparison.alternatives.count() == project.k - 1  # written by the inference worker
    assert round_.config["chat_comparisons"] == 1
    round_advance(round_id=round_.pk, enqueue_it=False)  # moving on makes no more of them
    assert ChatComparison.objects.count() == 1
