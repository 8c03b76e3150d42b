"""A submit delayed between its lease check and its row lock, while the lease runs out and the
slot goes to someone else who submits first: the late submit must be refused, never stored
beside the other one (overlap 1 ending with 2 labels).

The interleaving is forced, not hoped for: a second connection holds the task's (or prompt's)
row lock, so the first labeler's submit stops right at that lock; meanwhile the lease expires
and, inside the lock holder's transaction, another labeler claims the freed slot and submits.
PostgreSQL only: on SQLite every write transaction is serialized at BEGIN, so the delayed
submit could not even start its check before the other commits.
"""
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone
from labeling_factories import make_project, make_prompt, make_tasks, make_user, order_of

from labeling.errors import Conflict
from labeling.models import Assignment, Demonstration, Prompt, Ranking, RankingTask
from labeling.services.demonstrations import demonstration_submit
from labeling.services.queue import demonstration_claim_next, ranking_claim_next
from labeling.services.rankings import ranking_submit

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'",
                       reason="row locks between two connections need PostgreSQL"),
]
WAIT_SECONDS = 20
LEASE_LEFT = timedelta(seconds=1)


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


def _someone_waits_for_a_row_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def _in_thread(fn):
    """Run fn on its own connection; the returned join() gives (result, exception)."""
    outcome = {}

    def run():
        try:
            outcome["result"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()

    def join():
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive(), "the thread is stuck"
        return outcome.get("result"), outcome.get("error")

    return join


def _race(*, lock_row, late_submit, lease, other_takes_the_slot):
    """Hold `lock_row`'s lock; start `late_submit` (it stops at that lock); let `lease` run out;
    then, still holding the lock, let `other_takes_the_slot` claim and submit; commit; return
    what the late submit did."""
    Assignment.objects.filter(pk=lease.pk).update(expires_at=timezone.now() + LEASE_LEFT)
    holding, release = threading.Event(), threading.Event()

    def hold_then_take_the_slot():
        with transaction.atomic():
            type(lock_row).objects.select_for_update().get(pk=lock_row.pk)
            holding.set()
            assert release.wait(WAIT_SECONDS)
            _wait_until(lambda: timezone.now() > lease.expires_at, "the lease expired")
            other_takes_the_slot()

    holder = _in_thread(hold_then_take_the_slot)
    assert holding.wait(WAIT_SECONDS)
    late = _in_thread(late_submit)
    _wait_until(_someone_waits_for_a_row_lock, "the late submit waits for the row lock")
    lease.refresh_from_db()
    release.set()
    assert holder() == (None, None)
    return late()


def test_a_ranking_delayed_past_its_lease_is_refused_once_the_slot_was_taken():
    project = make_project(overlap=1)
    (task,) = make_tasks(project)
    late_labeler, other = make_user(), make_user()
    lease = ranking_claim_next(labeler=late_labeler)

    def other_takes_the_slot():
        other_lease = ranking_claim_next(labeler=other)
        assert other_lease is not None and other_lease.task_id == task.pk
        ranking_submit(assignment_id=other_lease.pk, labeler=other, order=order_of(task))

    result, error = _race(
        lock_row=RankingTask.objects.get(pk=task.pk), lease=lease,
        late_submit=lambda: ranking_submit(assignment_id=lease.pk, labeler=late_labeler,
                                           order=order_of(task)),
        other_takes_the_slot=other_takes_the_slot,
    )
    assert result is None and isinstance(error, Conflict), (result, error)
    assert "ran out" in str(error)
    task.refresh_from_db()
    assert (task.rankings_count, task.status) == (1, "complete")
    assert list(Ranking.objects.values_list("labeler", flat=True)) == [other.pk]
    lease.refresh_from_db()
    assert lease.status != Assignment.Status.SUBMITTED


def test_a_demonstration_delayed_past_its_lease_is_refused_once_the_slot_was_taken():
    project = make_project()
    prompt = make_prompt(project, demonstrations_needed=1)
    late_labeler, other = make_user(), make_user()
    lease = demonstration_claim_next(labeler=late_labeler)

    def other_takes_the_slot():
        other_lease = demonstration_claim_next(labeler=other)
        assert other_lease is not None and other_lease.prompt_id == prompt.pk
        demonstration_submit(assignment_id=other_lease.pk, labeler=other, reply="Theirs.",
                             client_token="other-form")

    result, error = _race(
        lock_row=Prompt.objects.get(pk=prompt.pk), lease=lease,
        late_submit=lambda: demonstration_submit(assignment_id=lease.pk, labeler=late_labeler,
                                                 reply="Mine.", client_token="late-form"),
        other_takes_the_slot=other_takes_the_slot,
    )
    assert result is None and isinstance(error, Conflict), (result, error)
    prompt.refresh_from_db()
    assert prompt.demonstrations_count == 1
    assert list(Demonstration.objects.values_list("author", flat=True)) == [other.pk]
