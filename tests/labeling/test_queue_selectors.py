"""The read side of the queue: the labeler's home, their own assignment, shuffled completions."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from labeling_factories import make_project, make_prompt, make_tasks, make_user, order_of

from labeling import selectors
from labeling.errors import NotFound
from labeling.services.demonstrations import demonstration_submit
from labeling.services.queue import demonstration_claim_next, ranking_claim_next
from labeling.services.rankings import ranking_submit

pytestmark = pytest.mark.django_db


def test_home_counts_work_waiting_for_this_labeler_and_what_they_did_today():
    p1, p2 = make_project(name="Alpha"), make_project(name="Beta")
    make_tasks(p1, 3)
    make_prompt(p1)
    make_prompt(p2)
    labeler = make_user()
    lease = ranking_claim_next(labeler=labeler, project=p1)
    ranking_submit(assignment_id=lease.pk, labeler=labeler, order=order_of(lease.task))
    demo = demonstration_claim_next(labeler=labeler, project=p2)
    demonstration_submit(assignment_id=demo.pk, labeler=labeler, reply="ok", client_token="x")
    home = {q.project.name: q for q in selectors.labeler_home(labeler=labeler)}
    assert (home["Alpha"].rankings_waiting, home["Alpha"].rankings_today) == (2, 1)
    assert (home["Alpha"].demonstrations_waiting, home["Alpha"].demonstrations_today) == (4, 0)
    assert (home["Beta"].demonstrations_waiting, home["Beta"].demonstrations_today) == (0, 1)


def test_home_is_one_query_however_many_projects_and_tasks():
    labeler = make_user()
    make_tasks(make_project(), 2)

    def queries():
        with CaptureQueriesContext(connection) as ctx:
            selectors.labeler_home(labeler=labeler)
        return len(ctx.captured_queries)

    few = queries()
    for _ in range(4):
        make_tasks(make_project(), 5)
    assert queries() == few == 1


def test_assignment_for_finds_only_the_labelers_own():
    project = make_project()
    make_tasks(project)
    a, b = make_user(), make_user()
    lease = ranking_claim_next(labeler=a)
    assert selectors.assignment_for(assignment_id=lease.pk, labeler=a) == lease
    for labeler, assignment_id in ((b, lease.pk), (a, lease.pk + 99), (a, "1 or 1=1")):
        with pytest.raises(NotFound):
            selectors.assignment_for(assignment_id=assignment_id, labeler=labeler)


def test_completions_are_shuffled_per_assignment_and_stable_across_reloads():
    project = make_project(k=9, overlap=8)
    (task,) = make_tasks(project)
    stored = [g[0] for g in order_of(task)]
    orders = []
    for _ in range(8):
        lease = ranking_claim_next(labeler=make_user())
        shown = [c.pk for c in selectors.completions_for(assignment=lease)]
        assert shown == [c.pk for c in selectors.completions_for(assignment=lease)]
        assert sorted(shown) == sorted(stored)
        orders.append(tuple(shown))
    assert len(set(orders)) > 1 and any(list(o) != stored for o in orders)


def test_labeler_stats_count_per_labeler():
    project = make_project()
    make_tasks(project, 2)
    a = make_user()
    for _ in range(2):
        lease = ranking_claim_next(labeler=a)
        ranking_submit(assignment_id=lease.pk, labeler=a, order=order_of(lease.task),
                       time_spent_ms=1000)
    (stats,) = selectors.labeler_stats(project=project)
    assert (stats.rankings, stats.demonstrations, stats.median_ranking_ms) == (2, 0, 1000)
