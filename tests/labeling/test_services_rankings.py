"""ranking_submit: exactly the task's completions, idempotent, bad input writes nothing."""
import pytest
from labeling_factories import make_project, make_tasks, make_user, order_of

from labeling.errors import Conflict, Invalid, NotFound
from labeling.models import Assignment, Ranking
from labeling.services.queue import demonstration_claim_next, ranking_claim_next
from labeling.services.rankings import ranking_submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def leased():
    project = make_project(k=4)
    (task,) = make_tasks(project)
    labeler = make_user()
    return task, labeler, ranking_claim_next(labeler=labeler)


def test_submit_stores_order_with_ties_flags_and_completes_the_task(leased):
    task, labeler, lease = leased
    a, b, c, d = (g[0] for g in order_of(task))
    ranking = ranking_submit(
        assignment_id=lease.pk, labeler=labeler, order=[[c], [a, b], [d]],
        flags={str(d): ["untrue", "harmful"], a: []}, comment="  d is wrong ",
        time_spent_ms=12_345,
    )
    ranking.refresh_from_db()
    assert ranking.order == [[c], [a, b], [d]]
    assert ranking.flags == {str(d): ["harmful", "untrue"]}
    assert (ranking.comment, ranking.time_spent_ms) == ("d is wrong", 12_345)
    task.refresh_from_db()
    lease.refresh_from_db()
    assert (task.status, task.rankings_count, lease.status) == ("complete", 1, "submitted")


def test_a_second_submit_returns_the_first_ranking_and_writes_nothing(leased):
    task, labeler, lease = leased
    first = ranking_submit(assignment_id=lease.pk, labeler=labeler, order=order_of(task))
    again = ranking_submit(assignment_id=str(lease.pk), labeler=labeler, order=order_of(task))
    assert again == first and Ranking.objects.count() == 1
    task.refresh_from_db()
    assert task.rankings_count == 1


def test_resubmitting_another_order_is_refused_and_the_first_one_stays(leased):
    task, labeler, lease = leased
    first = ranking_submit(assignment_id=lease.pk, labeler=labeler, order=order_of(task))
    with pytest.raises(Conflict, match="already submitted with a different order"):
        ranking_submit(assignment_id=lease.pk, labeler=labeler,
                       order=order_of(task, reverse=True))
    first.refresh_from_db()
    assert first.order == order_of(task) and Ranking.objects.count() == 1


def test_flat_order_and_string_ids_are_accepted(leased):
    task, labeler, lease = leased
    flat = [str(g[0]) for g in order_of(task)]
    ranking = ranking_submit(assignment_id=lease.pk, labeler=labeler, order=flat)
    assert ranking.order == order_of(task)


@pytest.mark.parametrize(
    "make_order, message",
    [
        (lambda ids: ids[:-1], "not ranked"),
        (lambda ids: ids + [[999_999]], "not in this task"),
        (lambda ids: ids[:-1] + [ids[0]], "twice"),
        (lambda ids: [[ids[0][0], ids[1][0]], [], ids[2], ids[3]], "empty group"),
        (lambda ids: [], "best to worst"),
        (lambda ids: "1,2,3,4", "best to worst"),
        (lambda ids: [[True], ids[1], ids[2], ids[3]], "completion ids"),
    ],
)
def test_an_order_that_is_not_exactly_the_tasks_completions_is_refused(leased, make_order, message):
    task, labeler, lease = leased
    with pytest.raises(Invalid, match=message) as error:
        ranking_submit(assignment_id=lease.pk, labeler=labeler, order=make_order(order_of(task)))
    assert error.value.status == 400
    assert not Ranking.objects.exists()
    lease.refresh_from_db()
    assert lease.status == "active"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"flags": {"999999": ["harmful"]}}, "not in this task"),
        ({"flags": {"FIRST": ["rude"]}}, "Flags are any of"),
        ({"flags": ["harmful"]}, "map completion ids"),
        ({"comment": "x" * 2001}, "too long"),
        ({"time_spent_ms": "soon"}, "milliseconds"),
    ],
)
def test_bad_flags_comments_and_times_are_refused(leased, kwargs, message):
    task, labeler, lease = leased
    if "flags" in kwargs and isinstance(kwargs["flags"], dict) and "FIRST" in kwargs["flags"]:
        kwargs = {"flags": {str(order_of(task)[0][0]): ["rude"]}}
    with pytest.raises(Invalid, match=message):
        ranking_submit(assignment_id=lease.pk, labeler=labeler, order=order_of(task), **kwargs)
    assert not Ranking.objects.exists()


def test_submitting_for_someone_else_or_a_foreign_id_is_refused(leased):
    task, labeler, lease = leased
    with pytest.raises(NotFound) as error:
        ranking_submit(assignment_id=lease.pk, labeler=make_user(), order=order_of(task))
    assert error.value.status == 404 and "No such task" in error.value.message
    for bad_id in (lease.pk + 1000, "abc", None):
        with pytest.raises(NotFound):
            ranking_submit(assignment_id=bad_id, labeler=labeler, order=order_of(task))
    assert not Ranking.objects.exists()


def test_a_demonstration_lease_cannot_take_a_ranking(leased):
    task, labeler, _ = leased
    from labeling_factories import make_prompt

    make_prompt(task.project)
    demo_lease = demonstration_claim_next(labeler=labeler)
    with pytest.raises(Invalid, match="demonstration"):
        ranking_submit(assignment_id=demo_lease.pk, labeler=labeler, order=order_of(task))


def test_a_cancelled_task_takes_no_more_rankings(leased):
    task, labeler, lease = leased
    from labeling.services.ranking_tasks import ranking_tasks_cancel, ranking_tasks_reopen

    assert ranking_tasks_cancel(task_ids=[task.pk]) == 1
    with pytest.raises(Conflict, match="withdrawn"):
        ranking_submit(assignment_id=lease.pk, labeler=labeler, order=order_of(task))
    assert ranking_tasks_reopen(task_ids=[task.pk]) == 1
    ranking_submit(assignment_id=lease.pk, labeler=labeler, order=order_of(task))
    assert Assignment.objects.get(pk=lease.pk).status == "submitted"
