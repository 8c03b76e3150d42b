"""A sampling run can take part of each ranking task's replies from a second model (the base, the
SFT model, an earlier policy), so labelers rank replies the run's model would never write."""

import pytest
from test_held_out_runs import execute
from training_helpers import make_project

from labeling.models import RankingTask
from training.errors import Invalid
from training.models import TrainingRun
from training.services.model_versions import model_version_register
from training.services.runs import run_create


@pytest.fixture
def sft_version(project_with_demos, chat_model_dir):
    return model_version_register(checkpoint_dir=str(chat_model_dir), kind="sft",
                                  name="chatty-sft", project=project_with_demos)  # fmt: skip


@pytest.mark.django_db(transaction=True)  # the runner's heartbeat: own connection
def test_a_mixed_sampling_run_takes_mix_replies_of_each_task_from_the_second_model(
    project_with_demos, sft_version, base_version, artifacts
):
    from training.jobs.common import load_version
    from training.ml.sampling import SampleConfig, generate

    project = project_with_demos
    run = run_create(kind="sample", project=project, input_model=sft_version, enqueue_it=False,
                     config={"num_prompts": 8, "max_new_tokens": 8, "mix_model": base_version.pk,
                             "mix_replies": 1})  # fmt: skip
    run = execute(run)
    assert run.metrics["ranking_tasks"] == 8 and run.metrics["completions"] == 8 * project.k

    model, tokenizer = load_version(base_version)
    tasks = RankingTask.objects.filter(batch_key=f"training-run-{run.pk}").order_by("prompt_id")
    prompts = [tokenizer.render_prompt(task.prompt.turns) for task in tasks]
    config = SampleConfig(num_samples=1, max_new_tokens=8, top_p=0.95, seed=1)
    written = generate(model, prompts, config, stop_id=tokenizer.end_id, pad_id=tokenizer.pad_id)
    for task, response in zip(tasks, written.responses, strict=True):
        replies = list(task.completions.all())
        assert len(replies) == project.k
        by_model = sorted((c.model_version_id, c.model_label) for c in replies)
        assert by_model == sorted([(sft_version.pk, "chatty-sft")] * (project.k - 1)
                                  + [(base_version.pk, "tiny-base")])  # fmt: skip
        [mixed] = [c.text for c in replies if c.model_version_id == base_version.pk]
        assert mixed == (tokenizer.decode(response).strip() or "(empty reply)")


@pytest.mark.parametrize("mix, replies, reason", [
    ("own", 1, "the run's own model"),
    ("reward", 1, "no base, SFT or policy model"),
    ("other project", 1, "no base, SFT or policy model"),
    ("base", 4, "give 1 to 3"),
])  # fmt: skip
def test_a_mix_model_that_cannot_write_part_of_the_tasks_is_refused_with_nothing_written(
    project_with_demos, sft_version, base_version, tiny_base_dir, mix, replies, reason
):
    project = project_with_demos
    models = {
        "own": sft_version,
        "base": base_version,
        "reward": model_version_register(checkpoint_dir=str(tiny_base_dir), kind="reward",
                                         name="rm", project=project),  # fmt: skip
        "other project": model_version_register(checkpoint_dir=str(tiny_base_dir), kind="sft",
                                                name="theirs", project=make_project()),
    }  # fmt: skip
    with pytest.raises(Invalid, match=reason):
        run_create(kind="sample", project=project, input_model=sft_version, enqueue_it=False,
                   config={"mix_model": models[mix].pk, "mix_replies": replies})  # fmt: skip
    assert not TrainingRun.objects.exists()


@pytest.mark.urls("training_urls")
def test_the_run_page_says_how_the_labelers_ranked_the_second_models_replies(
    client, staff, project_with_demos, sft_version, base_version, django_user_model
):
    from labeling.services.queue import ranking_claim_next
    from labeling.services.ranking_tasks import ranking_tasks_create
    from labeling.services.rankings import ranking_submit

    project = project_with_demos  # K = 4: two replies of each model per task
    run = run_create(kind="sample", project=project, input_model=sft_version, enqueue_it=False,
                     config={"num_prompts": 3, "mix_model": base_version.pk, "mix_replies": 2})
    authors = [sft_version, sft_version, base_version, base_version]
    ranking_tasks_create(project=project, batch_key=f"training-run-{run.pk}", prompt_completions=[
        (p, [{"text": f"{v.name} {i} <b>", "model_label": v.name, "model_version_id": v.pk}
             for i, v in enumerate(authors)]) for p in run.prompts.values_list("pk", flat=True)
    ])  # fmt: skip
    orders = iter([
        lambda ids: [[ids[2]], [ids[3]], [ids[0]], [ids[1]]],  # the base model's two on top
        lambda ids: [[ids[0], ids[2]], [ids[1]], [ids[3]]],  # a tie across the models
        lambda ids: [ids],  # every reply tied: nothing to learn
    ])  # fmt: skip
    labeler = django_user_model.objects.create_user("ranker")
    while (assignment := ranking_claim_next(labeler=labeler, project=project)) is not None:
        ids = list(assignment.task.items.order_by("position").values_list("completion_id",
                                                                          flat=True))
        ranking_submit(assignment_id=assignment.pk, labeler=labeler, order=next(orders)(ids))

    client.force_login(staff)
    page = " ".join(client.get(f"/training/runs/{run.pk}/").content.decode().split())
    assert "3 of its 3 ranking tasks; 2 with a ranking that prefers a reply (the rest tie" in page
    # pairs (base, SFT): 4 above in the first; in the second 1 above, 2 below, 1 tied; 4 tied
    assert (f"{base_version.name}</a> wrote 2 of each task's replies: ranked above "
            f"{sft_version.name}'s in 5, below in 2 and tied in 5 of 12 pairs: 62%") in page


@pytest.mark.urls("training_urls")
@pytest.mark.parametrize("second, shown, warned", [
    (lambda ids: [[ids[1]], [ids[0]], [ids[2]], [ids[3]]], "0.83", False),  # tau-b 1 and 2/3
    (lambda ids: [[i] for i in reversed(ids)], "0.00", True),  # 1 and -1: chance on average
])  # fmt: skip
def test_the_run_page_says_how_far_two_labelers_of_a_task_agree_and_warns_near_chance(
    client, staff, project_with_demos, sft_version, django_user_model, second, shown, warned
):
    from labeling.services.queue import ranking_claim_next
    from labeling.services.ranking_tasks import ranking_tasks_create
    from labeling.services.rankings import ranking_submit

    project = project_with_demos
    project.overlap = 2  # every task ranked by two labelers
    project.save()
    run = run_create(kind="sample", project=project, input_model=sft_version, enqueue_it=False,
                     config={"num_prompts": 3})
    ranking_tasks_create(project=project, batch_key=f"training-run-{run.pk}", prompt_completions=[
        (p, [{"text": f"reply {i}", "model_label": "sft", "model_version_id": sft_version.pk}
             for i in range(project.k)]) for p in run.prompts.values_list("pk", flat=True)
    ])  # fmt: skip
    tied, same, differ = RankingTask.objects.filter(project=project).order_by("pk")
    for labeler, name in enumerate(("first", "second")):
        user = django_user_model.objects.create_user(name)
        while (assignment := ranking_claim_next(labeler=user, project=project)) is not None:
            ids = list(assignment.task.items.order_by("position")
                       .values_list("completion_id", flat=True))  # fmt: skip
            order = ([ids] if assignment.task_id == tied.pk  # both tie all: tau-b undefined
                     else second(ids) if labeler and assignment.task_id == differ.pk
                     else [[i] for i in ids])  # fmt: skip
            ranking_submit(assignment_id=assignment.pk, labeler=user, order=order)

    client.force_login(staff)
    page = " ".join(client.get(f"/training/runs/{run.pk}/").content.decode().split())
    assert (f"Kendall tau-b {shown} between two labelers' orders of a task, mean over the 2 "
            "tasks two labelers ordered") in page
    assert ("Close to chance" in page) is warned


@pytest.mark.urls("training_urls")
def test_the_start_form_takes_a_mix_model_and_refuses_the_runs_own(
    client, staff, project_with_demos, sft_version, base_version
):
    client.force_login(staff)
    url = f"/training/projects/{project_with_demos.slug}/start/sample/"
    form = {"request_token": "tok-1", "preset": "tiny", "input_model": sft_version.pk}
    response = client.post(url, {**form, "cfg_mix_model": str(sft_version.pk)})
    assert response.status_code == 400
    assert "mix_model is chatty-sft, the run&#x27;s own model" in response.content.decode()
    assert not TrainingRun.objects.exists()
    response = client.post(url, {**form, "cfg_mix_model": str(base_version.pk),
                                 "cfg_mix_replies": "2"})  # fmt: skip
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/training/runs/{run.pk}/"
    assert (run.config["mix_model"], run.config["mix_replies"]) == (base_version.pk, 2)
