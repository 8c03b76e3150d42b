"""The database itself refuses what the services never write: a backstop for bugs."""
import pytest
from django.db import IntegrityError, transaction
from django.db.models import RestrictedError
from labeling_factories import make_project, make_tasks, make_user, order_of

from labeling.models import Assignment, Completion, Project, RankingTask
from labeling.services.queue import ranking_claim_next
from labeling.services.rankings import ranking_submit

pytestmark = pytest.mark.django_db


def test_k_must_be_between_4_and_9_and_overlap_positive():
    for fields in ({"k": 3}, {"k": 10}, {"overlap": 0}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Project.objects.create(name=str(fields), slug=f"p{len(str(fields))}", **fields)


def test_one_active_lease_per_labeler_and_kind():
    project = make_project()
    make_tasks(project, 2)
    labeler = make_user()
    lease = ranking_claim_next(labeler=labeler)
    other = RankingTask.objects.exclude(pk=lease.task_id).get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(kind="ranking", task=other, prompt=other.prompt,
                                  labeler=labeler, expires_at=lease.expires_at)


def test_ranked_completions_and_labelers_cannot_be_deleted_from_under_rankings():
    project = make_project()
    (task,) = make_tasks(project)
    labeler = make_user()
    lease = ranking_claim_next(labeler=labeler)
    ranking_submit(assignment_id=lease.pk, labeler=labeler, order=order_of(task))
    with pytest.raises(RestrictedError):
        Completion.objects.filter(ranking_tasks=task).first().delete()
    # Deleting the labeler would take their labels: refused (declared here rather than tried,
    # so this test does not depend on other apps' tables that also point at users).
    from django.db.models import PROTECT

    from labeling.models import Ranking

    assert Ranking._meta.get_field("labeler").remote_field.on_delete is PROTECT
    with pytest.raises(RestrictedError):
        Assignment.objects.get(pk=lease.pk).delete()  # the lease a ranking was stored under
    project.delete()  # the whole project goes, with its tasks, completions and rankings
    assert not Completion.objects.exists() and not RankingTask.objects.exists()
