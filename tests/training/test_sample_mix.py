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
