"""The queue under real parallel claims: threads with their own database connections.

On PostgreSQL this exercises SELECT ... FOR UPDATE SKIP LOCKED plus the locked re-count; on
SQLite the BEGIN IMMEDIATE transactions of the settings serialize the same code. Both must hold
the same guarantee: no task is leased beyond its free slots, no labeler holds two leases, and a
double submit stores one ranking.
"""
import threading
from collections import Counter

import pytest
from django.db import connection, connections
from labeling_factories import make_project, make_tasks, make_user, order_of

from labeling.models import Assignment, Ranking, RankingTask
from labeling.services.queue import ranking_claim_next
from labeling.services.rankings import ranking_submit

pytestmark = pytest.mark.django_db(transaction=True)


def run_parallel(functions):
    """Start every function at the same moment on its own thread; return results or raise."""
    barrier = threading.Barrier(len(functions))
    results, errors = [None] * len(functions), []

    def run(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - surfaced to the test below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(functions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.parametrize("overlap", [1, 2])
def test_parallel_claims_never_lease_a_task_beyond_its_overlap(overlap):
    project = make_project(overlap=overlap)
    make_tasks(project, 5)
    labelers = [make_user() for _ in range(16)]  # 16 want 5 * overlap slots
    leases = run_parallel([lambda u=u: ranking_claim_next(labeler=u) for u in labelers])
    granted = [lease for lease in leases if lease is not None]
    assert len(granted) == 5 * overlap
    per_task = Counter(lease.task_id for lease in granted)
    assert set(per_task.values()) == {overlap}
    assert Assignment.objects.filter(status="active").count() == 5 * overlap


def test_parallel_claims_and_submits_rank_every_task_exactly_overlap_times():
    project = make_project(overlap=2)
    make_tasks(project, 6)
    labelers = [make_user() for _ in range(4)]

    def work(labeler):
        done = 0
        while (lease := ranking_claim_next(labeler=labeler)) is not None:
            ranking_submit(assignment_id=lease.pk, labeler=labeler, order=order_of(lease.task))
            done += 1
        return done

    done = run_parallel([lambda u=u: work(u) for u in labelers])
    assert sum(done) == 12 == Ranking.objects.count()
    assert set(RankingTask.objects.values_list("status", "rankings_count")) == {("complete", 2)}
    pairs = Ranking.objects.values_list("task_id", "labeler_id")
    assert len(set(pairs)) == len(pairs)


def test_one_labeler_double_clicking_next_gets_one_lease():
    project = make_project()
    make_tasks(project, 3)
    labeler = make_user()
    leases = run_parallel([lambda: ranking_claim_next(labeler=labeler)] * 6)
    assert len({lease.pk for lease in leases}) == 1
    assert Assignment.objects.count() == 1


def test_a_double_submit_stores_one_ranking():
    project = make_project()
    (task,) = make_tasks(project)
    labeler = make_user()
    lease = ranking_claim_next(labeler=labeler)
    order = order_of(task)
    rankings = run_parallel(
        [lambda: ranking_submit(assignment_id=lease.pk, labeler=labeler, order=order)] * 4
    )
    assert len({r.pk for r in rankings}) == 1 and Ranking.objects.count() == 1
    task.refresh_from_db()
    assert task.rankings_count == 1


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_postgres_claims_skip_locked_rows_instead_of_waiting():
    """A claimer holding a task's row lock does not block the next claimer: it gets another."""
    from django.db import transaction

    project = make_project()
    first, second = make_tasks(project, 2)
    holder_has_lock, release = threading.Event(), threading.Event()

    def hold():
        with transaction.atomic():
            RankingTask.objects.select_for_update().get(pk=first.pk)
            holder_has_lock.set()
            release.wait(10)

    holder = threading.Thread(target=lambda: (hold(), connections.close_all()))
    holder.start()
    assert holder_has_lock.wait(10)
    try:
        (lease,) = run_parallel([lambda: ranking_claim_next(labeler=make_user())])
        assert lease.task_id == second.pk
    finally:
        release.set()
        holder.join()
    assert connection.vendor == "postgresql"


def test_a_double_clicked_dialogue_stores_one_demonstration_and_one_prompt():
    from labeling.models import Demonstration, Prompt
    from labeling.services.demonstrations import dialogue_create

    project = make_project()
    labeler = make_user()
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    demos = run_parallel([
        lambda: dialogue_create(project=project, labeler=labeler, turns=turns,
                                client_token="same-form")
    ] * 4)
    assert len({d.pk for d in demos}) == 1
    assert Demonstration.objects.count() == 1 and Prompt.objects.count() == 1
