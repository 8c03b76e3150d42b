"""The staff pages of human evaluation: starting a comparison from the page (bad input is a 4xx
with its message and nothing created), the batches' progress, the leaderboard before any vote;
labelers can reach none of it."""

import pytest
from training_helpers import make_project

from labeling.models import ComparisonBatch, Prompt
from labeling.services.evaluation_prompts import prompts_mark_evaluation
from training.models import TrainingRun
from training.services.model_versions import model_version_register

pytestmark = pytest.mark.urls("training_urls")


@pytest.fixture
def evaluated(project_with_demos):
    ids = list(Prompt.objects.filter(project=project_with_demos).values_list("id", flat=True))
    prompts_mark_evaluation(project=project_with_demos, prompt_ids=ids[:3])
    return project_with_demos


@pytest.fixture
def versions(base_version, tiny_base_dir, evaluated):
    return [base_version, model_version_register(checkpoint_dir=str(tiny_base_dir),
                                                 name="tiny-<b>other</b>", project=evaluated)]


def test_labelers_cannot_see_or_start_anything(client, labeler, evaluated, versions):
    client.force_login(labeler)
    base = f"/training/projects/{evaluated.slug}"
    for url in (f"{base}/evaluation/", f"{base}/leaderboard/", f"{base}/leaderboard.csv",
                f"{base}/leaderboard.json"):
        assert client.get(url).status_code == 403, url
    response = client.post(f"{base}/evaluation/compare/",
                           {"versions": [v.pk for v in versions]})
    assert response.status_code == 403 and not ComparisonBatch.objects.exists()


def test_staff_start_a_comparison_from_the_page(client, staff, evaluated, versions):
    client.force_login(staff)
    page = client.get(f"/training/projects/{evaluated.slug}/evaluation/").content.decode()
    assert "3 evaluation prompts held out" in page
    assert "tiny-&lt;b&gt;other&lt;/b&gt;" in page  # a version name is escaped
    data = {"versions": [v.pk for v in versions], "votes_needed": "2", "max_new_tokens": "6",
            "request_token": "tok"}
    response = client.post(f"/training/projects/{evaluated.slug}/evaluation/compare/", data)
    assert response.status_code == 302
    client.post(f"/training/projects/{evaluated.slug}/evaluation/compare/", data)  # again
    batch = ComparisonBatch.objects.get()
    assert batch.votes_needed == 2 and TrainingRun.objects.filter(kind="sample").count() == 2
    page = client.get(response.url).content.decode()
    assert f"Comparison #{batch.pk} started" in page and "0 / 6" in page  # replies so far


@pytest.mark.parametrize(("chosen", "extra", "message"), [
    ("same", {}, "with itself"), ("one", {}, "at least two"),
    ("bogus", {}, "Choose model versions"), ("missing", {}, "does not exist"),
    ("two", {"votes_needed": "21"}, "from 1 to 20"), ("two", {"votes_needed": "-1"}, "whole"),
    ("two", {"temperature": "hot"}, "temperature must be a number"),
])  # fmt: skip
def test_bad_choices_are_a_400_with_the_message(client, staff, evaluated, versions, chosen,
                                                extra, message):  # fmt: skip
    ids = {"same": [versions[0].pk] * 2, "one": [versions[0].pk], "bogus": ["x"],
           "missing": [versions[0].pk, 99999], "two": [v.pk for v in versions]}[chosen]
    client.force_login(staff)
    response = client.post(f"/training/projects/{evaluated.slug}/evaluation/compare/",
                           {"versions": ids, **extra})
    assert response.status_code == 400 and message in response.content.decode()
    assert not ComparisonBatch.objects.exists() and not TrainingRun.objects.exists()


def test_no_evaluation_prompts_is_a_400(client, staff, base_version, tiny_base_dir):
    project = make_project()
    other = model_version_register(checkpoint_dir=str(tiny_base_dir), name="another-base")
    client.force_login(staff)
    response = client.post(f"/training/projects/{project.slug}/evaluation/compare/",
                           {"versions": [base_version.pk, other.pk]})
    assert response.status_code == 400
    assert "no evaluation prompts" in response.content.decode()
    assert not ComparisonBatch.objects.exists()


def test_the_leaderboard_before_any_vote(client, staff, evaluated):
    client.force_login(staff)
    page = client.get(f"/training/projects/{evaluated.slug}/leaderboard/").content.decode()
    assert "No votes yet" in page
    assert client.get(f"/training/projects/{evaluated.slug}/leaderboard.json").json() == {
        "project": evaluated.slug, "votes": 0}
