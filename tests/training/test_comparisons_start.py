"""Starting a blind comparison (the training side): bad input is refused with nothing created;
a good one records the batch and one sample run per version on the evaluation prompts; a real
worker samples the replies through the ordinary sample task, the tasks come out blind, and the
staff pages show the leaderboard of the votes (table, chart, CSV, JSON)."""

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from training_helpers import make_project
from waiting import wait_for

from labeling.models import ComparisonBatch, ComparisonTask, Prompt, Vote
from labeling.services.comparisons import vote_submit
from labeling.services.evaluation_prompts import prompts_mark_evaluation
from labeling.services.queue import comparison_claim_next
from training.errors import Invalid
from training.models import ModelVersion, TrainingRun
from training.services.evaluation import comparison_start
from training.services.model_versions import model_version_register

S = TrainingRun.Status


@pytest.fixture
def evaluated(project_with_demos):
    """The project of 12 demonstrations, 4 of its prompts held out."""
    ids = list(Prompt.objects.filter(project=project_with_demos).values_list("id", flat=True))
    prompts_mark_evaluation(project=project_with_demos, prompt_ids=ids[:4])
    return project_with_demos


@pytest.fixture
def two_versions(base_version, tiny_base_dir, evaluated):
    other = model_version_register(checkpoint_dir=str(tiny_base_dir), name="tiny-other",
                                   project=evaluated)  # fmt: skip
    return [base_version, other]


def _nothing_created():
    assert not ComparisonBatch.objects.exists()
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_a_version_against_itself_is_refused(evaluated, base_version):
    with pytest.raises(Invalid, match="with itself"):
        comparison_start(project=evaluated, versions=[base_version, base_version],
                         enqueue_it=False)  # fmt: skip
    _nothing_created()


@pytest.mark.django_db
def test_fewer_than_two_versions_are_refused(evaluated, base_version):
    for versions in ([], [base_version]):
        with pytest.raises(Invalid, match="at least two"):
            comparison_start(project=evaluated, versions=versions, enqueue_it=False)
    _nothing_created()


@pytest.mark.django_db
def test_a_version_of_another_project_is_refused(evaluated, base_version, tiny_base_dir):
    elsewhere = model_version_register(checkpoint_dir=str(tiny_base_dir), name="theirs",
                                       project=make_project())  # fmt: skip
    with pytest.raises(Invalid, match="another project"):
        comparison_start(project=evaluated, versions=[base_version, elsewhere], enqueue_it=False)
    _nothing_created()


@pytest.mark.django_db
def test_a_reward_model_is_refused(evaluated, base_version, tiny_base_dir):
    rm = ModelVersion.objects.create(kind="reward", name="rm-1", project=evaluated,
                                     checkpoint_dir=str(tiny_base_dir), tokenizer_path="x")
    with pytest.raises(Invalid, match="writes no replies"):
        comparison_start(project=evaluated, versions=[base_version, rm], enqueue_it=False)
    _nothing_created()


@pytest.mark.django_db
def test_a_project_without_evaluation_prompts_is_refused(project_with_demos, base_version,
                                                        tiny_base_dir):  # fmt: skip
    other = model_version_register(checkpoint_dir=str(tiny_base_dir), name="tiny-other")
    with pytest.raises(Invalid, match="no evaluation prompts"):
        comparison_start(project=project_with_demos, versions=[base_version, other],
                         enqueue_it=False)  # fmt: skip
    _nothing_created()


@pytest.mark.django_db
def test_a_comparison_is_a_batch_and_one_sample_run_per_version(evaluated, two_versions, staff):
    batch = comparison_start(project=evaluated, versions=two_versions, created_by=staff,
                             config={"max_new_tokens": 8}, request_token="once",
                             enqueue_it=False)  # fmt: skip
    again = comparison_start(project=evaluated, versions=two_versions, request_token="once",
                             enqueue_it=False)  # fmt: skip
    assert again == batch and TrainingRun.objects.count() == 2
    held = set(Prompt.objects.filter(is_evaluation=True).values_list("id", flat=True))
    assert set(batch.prompts.values_list("id", flat=True)) == held
    assert batch.sampling["max_new_tokens"] == 8
    for run in TrainingRun.objects.all():
        assert run.kind == "sample" and run.config["comparison"] == batch.pk
        assert set(run.prompts.values_list("id", flat=True)) == held
        assert batch.run_ids[str(run.input_model_id)] == run.pk


@pytest.mark.worker
@pytest.mark.urls("training_urls")
def test_a_comparison_through_a_real_worker_to_the_leaderboard(
    training_worker, evaluated, two_versions, staff, client
):
    worker = training_worker(queues=("sampling",))
    batch = comparison_start(project=evaluated, versions=two_versions, created_by=staff,
                             config={"max_new_tokens": 8})  # fmt: skip
    runs = TrainingRun.objects.filter(pk__in=batch.run_ids.values())

    def finished():
        return all(r.is_finished for r in runs.all())

    assert wait_for(finished, timeout=120), worker.output()[-3000:]
    assert {r.status for r in runs.all()} == {S.SUCCEEDED}, [r.error for r in runs.all()]
    tasks = ComparisonTask.objects.filter(batch=batch)
    assert tasks.count() == 4  # one pair of versions on each of 4 evaluation prompts
    for task in tasks.select_related("completion_a", "completion_b"):
        assert {task.completion_a.model_version_id, task.completion_b.model_version_id} == {
            v.pk for v in two_versions}
        assert task.completion_a.sampling["comparison"] == batch.pk
    # Two simulated labelers prefer the version "tiny-other" whichever side it is on.
    favourite = two_versions[1].pk
    for name in ("voter1", "voter2"):
        voter = get_user_model().objects.create_user(name)
        while (lease := comparison_claim_next(labeler=voter, project=evaluated)) is not None:
            left = lease.comparison.completion_a.model_version_id
            vote_submit(assignment_id=lease.pk, labeler=voter,
                        outcome="a" if left == favourite else "b", likert_a=4)
    assert Vote.objects.count() == 4  # overlap 1: each task voted once

    client.force_login(staff)
    url = f"/training/projects/{evaluated.slug}/leaderboard"
    page = client.get(f"{url}/").content.decode()
    rows = list(csv.DictReader(io.StringIO(client.get(f"{url}.csv").content.decode())))
    data = client.get(f"{url}.json").json()
    assert "<svg" in page and "tiny-other" in page and "Win rate" in page
    assert [r["name"] for r in rows] == ["tiny-other", "tiny-base"]
    assert rows[0]["share_harmful"] == "0.0" and "Replies labeled by the voters" in page
    assert data["votes"] == 4 and data["rows"][0]["version_id"] == favourite
    assert data["win_rate"]["matrix"][0][1] == 1.0
