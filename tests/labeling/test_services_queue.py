"""The queue services: claim, lease expiry and renewal, overlap, skip, who may rank what."""
from datetime import timedelta

import pytest
from django.utils import timezone
from labeling_factories import make_project, make_prompt, make_tasks, make_user, order_of

from labeling.errors import Conflict, Forbidden, Invalid, NotFound
from labeling.models import Assignment, Skip
from labeling.services.demonstrations import demonstration_submit
from labeling.services.queue import (
    assignment_renew,
    assignment_skip,
    assignments_expire,
    assignments_release,
    demonstration_claim_next,
    ranking_claim_next,
)
from labeling.services.rankings import ranking_submit

pytestmark = pytest.mark.django_db


def expire(assignment):
    Assignment.objects.filter(pk=assignment.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_claim_hands_out_the_highest_priority_then_oldest_task():
    project = make_project()
    old, new = make_tasks(project, 2)
    (urgent,) = make_tasks(project, priority=5)
    a, b, c = make_user(), make_user(), make_user()
    assert ranking_claim_next(labeler=a).task == urgent
    assert ranking_claim_next(labeler=b).task == old
    assert ranking_claim_next(labeler=c).task == new
    assert ranking_claim_next(labeler=make_user()) is None


def test_claim_returns_the_live_lease_again_and_never_a_second_one():
    project = make_project()
    make_tasks(project, 3)
    labeler = make_user()
    first = ranking_claim_next(labeler=labeler, project=project)
    assert first.expires_at > timezone.now() + timedelta(seconds=project.lease_seconds - 5)
    assert ranking_claim_next(labeler=labeler, project=project) == first
    assert Assignment.objects.filter(labeler=labeler, status="active").count() == 1


def test_overlap_hands_a_task_to_that_many_different_labelers_then_it_leaves_the_queue():
    project = make_project(overlap=2)
    (task,) = make_tasks(project)
    a, b, c = make_user(), make_user(), make_user()
    la, lb = ranking_claim_next(labeler=a), ranking_claim_next(labeler=b)
    assert la.task == lb.task == task
    assert ranking_claim_next(labeler=c) is None  # both slots leased
    ranking_submit(assignment_id=la.pk, labeler=a, order=order_of(task))
    assert ranking_claim_next(labeler=a) is None  # never the same task twice
    ranking_submit(assignment_id=lb.pk, labeler=b, order=order_of(task, reverse=True))
    task.refresh_from_db()
    assert (task.status, task.rankings_count) == ("complete", 2)
    assert ranking_claim_next(labeler=c) is None


def test_an_expired_lease_frees_the_slot_and_the_old_holder_cannot_submit():
    project = make_project()
    (task,) = make_tasks(project)
    a, b = make_user(), make_user()
    lease = ranking_claim_next(labeler=a)
    expire(lease)
    taken = ranking_claim_next(labeler=b)
    assert taken.task == task
    with pytest.raises(Conflict, match="ran out"):
        ranking_submit(assignment_id=lease.pk, labeler=a, order=order_of(task))
    with pytest.raises(Conflict, match="someone else"):
        assignment_renew(assignment_id=lease.pk, labeler=a)
    assert not task.rankings.exists()


def test_renew_extends_a_live_lease_and_revives_an_expired_one_whose_slot_is_free():
    project = make_project(lease_seconds=60)
    make_tasks(project)
    labeler = make_user()
    lease = ranking_claim_next(labeler=labeler)
    expire(lease)
    renewed = assignment_renew(assignment_id=lease.pk, labeler=labeler)
    assert renewed.status == "active" and renewed.expires_at > timezone.now()
    assignments_expire(now=timezone.now() + timedelta(seconds=61))
    lease.refresh_from_db()
    assert lease.status == "expired"
    assert assignment_renew(assignment_id=lease.pk, labeler=labeler).status == "active"


def test_the_sweep_expires_stale_leases_only_and_a_second_sweep_changes_nothing():
    project = make_project()
    make_tasks(project, 3)
    stale, live, done = make_user(), make_user(), make_user()
    old = ranking_claim_next(labeler=stale)
    expire(old)
    current = ranking_claim_next(labeler=live)
    submitted = ranking_claim_next(labeler=done)
    ranking_submit(assignment_id=submitted.pk, labeler=done, order=order_of(submitted.task))
    assert assignments_expire() == 1
    statuses = dict(Assignment.objects.values_list("pk", "status"))
    assert statuses == {old.pk: "expired", current.pk: "active", submitted.pk: "submitted"}
    assert assignments_expire() == 0
    assert dict(Assignment.objects.values_list("pk", "status")) == statuses


def test_a_stale_lease_of_the_labeler_is_replaced_by_a_fresh_claim():
    project = make_project()
    make_tasks(project, 2)
    labeler = make_user()
    lease = ranking_claim_next(labeler=labeler)
    expire(lease)
    again = ranking_claim_next(labeler=labeler)
    assert again.pk != lease.pk  # the stale one became expired, its task may come back
    lease.refresh_from_db()
    assert lease.status == "expired"


def test_asking_in_another_project_releases_the_lease_held_elsewhere():
    p1, p2 = make_project(), make_project()
    make_tasks(p1)
    make_tasks(p2)
    labeler = make_user()
    first = ranking_claim_next(labeler=labeler, project=p1)
    assert ranking_claim_next(labeler=labeler) == first  # no project: the one they hold
    second = ranking_claim_next(labeler=labeler, project=p2)
    first.refresh_from_db()
    assert second.task.project == p2 and first.status == "expired"


def test_nobody_ranks_replies_to_their_own_prompt_or_demonstration():
    project = make_project()
    author, demonstrator, other = make_user(), make_user(), make_user()
    prompt = make_prompt(project, author=author)
    lease = demonstration_claim_next(labeler=demonstrator)
    assert lease.prompt == prompt
    demonstration_submit(assignment_id=lease.pk, labeler=demonstrator, reply="Mine.",
                         client_token="t1")
    make_tasks(project, prompts=[prompt])
    assert ranking_claim_next(labeler=author) is None
    assert ranking_claim_next(labeler=demonstrator) is None
    assert ranking_claim_next(labeler=other) is not None


def test_skip_records_the_reason_frees_the_slot_and_never_serves_the_task_again():
    project = make_project()
    (task,) = make_tasks(project)
    a, b = make_user(), make_user()
    lease = ranking_claim_next(labeler=a)
    skip = assignment_skip(assignment_id=lease.pk, labeler=a, reason="I can't judge Rust code")
    assert assignment_skip(assignment_id=lease.pk, labeler=a, reason="again") == skip
    assert Skip.objects.get().reason == "I can't judge Rust code"
    assert ranking_claim_next(labeler=a) is None
    assert ranking_claim_next(labeler=b).task == task
    with pytest.raises(Conflict):
        ranking_submit(assignment_id=lease.pk, labeler=a, order=order_of(task))
    with pytest.raises(Invalid):
        assignment_skip(assignment_id=ranking_claim_next(labeler=b).pk, labeler=b, reason=" ")


def test_leases_belong_to_their_labeler():
    project = make_project()
    make_tasks(project)
    a, b = make_user(), make_user()
    lease = ranking_claim_next(labeler=a)
    for call in (assignment_renew, lambda **kw: assignment_skip(reason="x", **kw)):
        with pytest.raises(NotFound) as someone_elses:
            call(assignment_id=lease.pk, labeler=b)
        with pytest.raises(NotFound) as missing:
            call(assignment_id=lease.pk + 1000, labeler=a)
        assert someone_elses.value.message == missing.value.message  # ids tell nothing
    assert lease.status == "active" and not Skip.objects.exists()


def test_staff_release_puts_the_task_back():
    project = make_project()
    (task,) = make_tasks(project)
    a, b = make_user(), make_user()
    lease = ranking_claim_next(labeler=a)
    assert assignments_release(assignment_ids=[lease.pk]) == 1
    assert ranking_claim_next(labeler=b).task == task


def test_inactive_projects_and_users_get_nothing():
    project = make_project()
    make_tasks(project)
    project.is_active = False
    project.save(update_fields=["is_active"])
    assert ranking_claim_next(labeler=make_user()) is None
    with pytest.raises(Conflict):
        ranking_claim_next(labeler=make_user(), project=project)
    with pytest.raises(Forbidden):
        ranking_claim_next(labeler=make_user(is_active=False))


def test_demonstration_queue_serves_each_prompt_until_it_has_enough():
    project = make_project()
    prompt = make_prompt(project, demonstrations_needed=2)
    make_prompt(project, demonstrations_needed=0)
    a, b, c = make_user(), make_user(), make_user()
    la, lb = demonstration_claim_next(labeler=a), demonstration_claim_next(labeler=b)
    assert la.prompt == lb.prompt == prompt
    assert demonstration_claim_next(labeler=c) is None
    demonstration_submit(assignment_id=la.pk, labeler=a, reply="One.", client_token="ta")
    assert demonstration_claim_next(labeler=a) is None
    prompt.refresh_from_db()
    assert prompt.demonstrations_count == 1
