"""The periodic lease sweep: scheduled in Celery beat, run by a real worker, and by cron."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from labeling_factories import make_project, make_tasks, make_user
from waiting import wait_for

from labeling.models import Assignment
from labeling.services.queue import ranking_claim_next
from labeling.tasks import expire_leases
from webapp.celery import app


def stale_lease():
    make_tasks(make_project())
    lease = ranking_claim_next(labeler=make_user())
    Assignment.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(1))
    return lease


def test_beat_schedules_the_sweep_every_minute_and_the_task_exists():
    (entry,) = [e for e in app.conf.beat_schedule.values() if e["task"] == "labeling.expire_leases"]
    assert entry["schedule"] <= 60
    app.loader.import_default_modules()
    assert "labeling.expire_leases" in app.tasks


@pytest.mark.django_db
def test_the_cron_command_expires_stale_leases(capsys):
    lease = stale_lease()
    call_command("expire_leases")
    assert "1 lease(s) expired" in capsys.readouterr().out
    lease.refresh_from_db()
    assert lease.status == "expired"


@pytest.mark.worker
def test_a_real_worker_runs_the_sweep(worker_factory):
    lease = stale_lease()
    worker = worker_factory(queues=("default",))
    expire_leases.delay()
    assert wait_for(lambda: Assignment.objects.get(pk=lease.pk).status == "expired"), (
        worker.output()
    )
