"""Writes for the operator tools of the dashboard."""
import uuid

from django.utils import timezone

from webapp.celery import QUEUES
from webapp.models import WorkerHeartbeat
from webapp.queueing import QueueUnavailable, enqueue


def heartbeat_request() -> list[WorkerHeartbeat]:
    """One test task per queue; each row is answered by whichever worker consumes it.

    When Redis is down nothing is kept: rows that no task will ever answer would only mislead.
    """
    from webapp.tasks import heartbeat

    beats = [WorkerHeartbeat.objects.create(token=uuid.uuid4().hex, queue=q) for q in QUEUES]
    try:
        for beat in beats:
            enqueue(heartbeat, args=(beat.token,), queue=beat.queue)
    except QueueUnavailable:
        WorkerHeartbeat.objects.filter(pk__in=[b.pk for b in beats]).delete()
        raise
    return beats


def heartbeat_answer(*, token: str, worker: str) -> None:
    """Idempotent: a second delivery of the same task leaves the first answer in place."""
    WorkerHeartbeat.objects.filter(token=token, answered_at__isnull=True).update(
        worker=worker, answered_at=timezone.now()
    )
