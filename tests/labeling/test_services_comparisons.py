"""Blind comparisons, the services: batches refuse bad input and write nothing; replies make one
task per pair of versions, sides at random, idempotently; votes follow the ranking rules (own
live lease, idempotent, never a duplicate) and the queue serves each task to `votes_needed`
different labelers."""
import pytest
from comparison_factories import VERSIONS, evaluation_prompts, make_comparison
from labeler_pages import expire
from labeling_factories import make_project, make_prompt, make_user

from labeling.errors import Conflict, Invalid, NotFound
from labeling.models import ComparisonBatch, ComparisonTask, Completion, Vote
from labeling.services.comparisons import (
    comparison_batch_cancel,
    comparison_batch_create,
    comparison_replies_add,
    vote_submit,
)
from labeling.services.evaluation_prompts import prompts_mark_evaluation
from labeling.services.queue import assignment_skip, comparison_claim_next, ranking_claim_next
from labeling.services.rankings import ranking_submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    return make_project(name="Eval", slug="eval")


def test_a_batch_makes_one_task_per_pair_and_prompt(project):
    batch = make_comparison(project, versions=VERSIONS, prompts=3)
    tasks = ComparisonTask.objects.filter(batch=batch)
    assert tasks.count() == 3 * 3  # C(3, 2) pairs on each of 3 prompts
    for task in tasks.select_related("completion_a", "completion_b"):
        assert task.completion_a.prompt_id == task.completion_b.prompt_id == task.prompt_id
        assert task.completion_a.model_version_id != task.completion_b.model_version_id


def test_pushing_the_same_replies_again_creates_nothing(project):
    batch = make_comparison(project, prompts=2)
    before = (Completion.objects.count(), ComparisonTask.objects.count())
    for version_id in batch.version_ids:
        replies = [(p.pk, "new text", {}) for p in batch.prompts.all()]
        again = comparison_replies_add(batch_id=batch.pk, version_id=version_id, replies=replies)
        assert again == []
    assert (Completion.objects.count(), ComparisonTask.objects.count()) == before


def test_sides_are_drawn_at_random(project):
    batch = make_comparison(project, prompts=40)
    left = set(ComparisonTask.objects.filter(batch=batch)
               .values_list("completion_a__model_version_id", flat=True))  # fmt: skip
    per_version = {v: ComparisonTask.objects.filter(batch=batch,
                                                    completion_a__model_version_id=v).count()
                   for v in batch.version_ids}  # fmt: skip
    assert left == set(batch.version_ids)  # each version is sometimes on the left
    assert all(5 <= n <= 35 for n in per_version.values())  # 40 fair coins: p(outside) < 1e-5


@pytest.mark.parametrize(("versions", "message"), [
    ({101: "a"}, "at least two"),
    ({}, "at least two"),
])  # fmt: skip
def test_too_few_versions_are_refused(project, versions, message):
    evaluation_prompts(project, 2)
    with pytest.raises(Invalid, match=message):
        comparison_batch_create(project=project, versions=versions, request_token="t")
    assert not ComparisonBatch.objects.exists()


def test_a_project_without_evaluation_prompts_is_refused(project):
    make_prompt(project)  # a training prompt only
    with pytest.raises(Invalid, match="no evaluation prompts"):
        comparison_batch_create(project=project, versions=VERSIONS, request_token="t")
    assert not ComparisonBatch.objects.exists()


def test_training_prompts_cannot_be_compared_on(project):
    evaluation_prompts(project, 1)
    training = make_prompt(project)
    with pytest.raises(Invalid, match="not evaluation prompts"):
        comparison_batch_create(project=project, versions=VERSIONS, request_token="t",
                                prompt_ids=[training.pk])
    assert not ComparisonBatch.objects.exists()


def test_a_reply_of_a_version_or_prompt_outside_the_batch_is_refused(project):
    batch = make_comparison(project, prompts=1)
    other = make_prompt(project)
    with pytest.raises(Invalid, match="not compared"):
        comparison_replies_add(batch_id=batch.pk, version_id=999, replies=[])
    with pytest.raises(Invalid, match="not in this comparison"):
        comparison_replies_add(batch_id=batch.pk, version_id=101, replies=[(other.pk, "x", {})])


def test_the_same_request_token_makes_one_batch(project):
    evaluation_prompts(project, 1)
    first = comparison_batch_create(project=project, versions=VERSIONS, request_token="same")
    second = comparison_batch_create(project=project, versions=VERSIONS, request_token="same")
    assert first == second and ComparisonBatch.objects.count() == 1


# ------------------------------------------------------------------------------ votes


def test_a_vote_records_the_sides_versions_likert_and_flags(project):
    make_comparison(project, prompts=1)
    labeler = make_user()
    lease = comparison_claim_next(labeler=labeler, project=project)
    task = lease.comparison
    vote = vote_submit(assignment_id=lease.pk, labeler=labeler, outcome="b", likert_a="2",
                       likert_b=6, flags={"a": ["made_up_facts", "harmful"]}, comment=" no ")
    assert vote.source == Vote.Source.COMPARISON and vote.task == task
    assert vote.version_a_id == task.completion_a.model_version_id
    assert vote.version_b_id == task.completion_b.model_version_id
    assert (vote.outcome, vote.likert_a, vote.likert_b) == ("b", 2, 6)
    assert vote.flags == {"a": ["made_up_facts", "harmful"]} and vote.comment == "no"
    task.refresh_from_db()
    assert task.status == ComparisonTask.Status.COMPLETE and task.votes_count == 1


def test_a_double_submit_stores_one_vote(project):
    make_comparison(project, prompts=1)
    labeler = make_user()
    lease = comparison_claim_next(labeler=labeler, project=project)
    first = vote_submit(assignment_id=lease.pk, labeler=labeler, outcome="a")
    second = vote_submit(assignment_id=lease.pk, labeler=labeler, outcome="b")
    assert first == second and Vote.objects.count() == 1
    assert Vote.objects.get().outcome == "a"


@pytest.mark.parametrize("bad", [
    {"outcome": "left"}, {"outcome": "a", "likert_a": 8}, {"outcome": "a", "likert_b": 0},
    {"outcome": "a", "likert_a": "six"}, {"outcome": "a", "flags": {"c": ["harmful"]}},
    {"outcome": "a", "flags": {"a": ["rude"]}}, {"outcome": "a", "likert_a": True},
])  # fmt: skip
def test_bad_votes_are_refused_and_nothing_is_written(project, bad):
    make_comparison(project, prompts=1)
    labeler = make_user()
    lease = comparison_claim_next(labeler=labeler, project=project)
    with pytest.raises(Invalid):
        vote_submit(assignment_id=lease.pk, labeler=labeler, **bad)
    assert not Vote.objects.exists()
    lease.refresh_from_db()
    assert lease.status == "active"


def test_a_vote_on_someone_elses_or_an_expired_or_skipped_lease_is_refused(project):
    make_comparison(project, prompts=2)
    lena, otto = make_user(), make_user()
    lease = comparison_claim_next(labeler=lena, project=project)
    with pytest.raises(NotFound):  # the same answer as for a lease that does not exist
        vote_submit(assignment_id=lease.pk, labeler=otto, outcome="a")
    expire(lease)
    with pytest.raises(Conflict, match="ran out"):
        vote_submit(assignment_id=lease.pk, labeler=lena, outcome="a")
    lease = comparison_claim_next(labeler=lena, project=project)
    assignment_skip(assignment_id=lease.pk, labeler=lena, reason="unsure")
    with pytest.raises(Conflict, match="skipped"):
        vote_submit(assignment_id=lease.pk, labeler=lena, outcome="a")
    assert not Vote.objects.exists()


def test_overlap_serves_each_task_to_different_labelers_once(project):
    make_comparison(project, prompts=1, votes_needed=2)
    lena, otto, ida = make_user(), make_user(), make_user()
    first = comparison_claim_next(labeler=lena, project=project)
    second = comparison_claim_next(labeler=otto, project=project)
    assert first.comparison_id == second.comparison_id
    assert comparison_claim_next(labeler=ida, project=project) is None  # both slots leased
    vote_submit(assignment_id=first.pk, labeler=lena, outcome="a")
    assert comparison_claim_next(labeler=lena, project=project) is None  # voted already
    vote_submit(assignment_id=second.pk, labeler=otto, outcome="tie")
    assert ComparisonTask.objects.get().status == ComparisonTask.Status.COMPLETE


def test_comparison_and_ranking_leases_are_apart(project):
    make_comparison(project, prompts=1)
    labeler = make_user()
    lease = comparison_claim_next(labeler=labeler, project=project)
    assert ranking_claim_next(labeler=labeler, project=project) is None  # no ranking task
    assert comparison_claim_next(labeler=labeler, project=project) == lease  # the same lease
    with pytest.raises(Invalid):
        ranking_submit(assignment_id=lease.pk, labeler=labeler, order=[[1]])


def test_a_cancelled_batch_serves_nothing_and_refuses_votes(project):
    batch = make_comparison(project, prompts=2)
    labeler = make_user()
    lease = comparison_claim_next(labeler=labeler, project=project)
    assert comparison_batch_cancel(batch_ids=[batch.pk]) == 2
    with pytest.raises(Conflict, match="withdrawn"):
        vote_submit(assignment_id=lease.pk, labeler=labeler, outcome="a")
    assert comparison_claim_next(labeler=make_user(), project=project) is None


def test_nobody_compares_replies_to_a_prompt_they_wrote(project):
    author = make_user()
    prompt = make_prompt(project, author=author)
    prompts_mark_evaluation(project=project, prompt_ids=[prompt.pk])
    batch = comparison_batch_create(project=project, versions=VERSIONS, request_token="t")
    for version_id in VERSIONS:
        comparison_replies_add(batch_id=batch.pk, version_id=version_id,
                               replies=[(prompt.pk, "reply", {})])
    assert comparison_claim_next(labeler=author, project=project) is None
    assert comparison_claim_next(labeler=make_user(), project=project) is not None
