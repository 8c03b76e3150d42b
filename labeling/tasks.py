"""Celery tasks of the labeling app: thin wrappers around services, run by `celery beat`."""
from celery import shared_task

from labeling.services.queue import assignments_expire


@shared_task(name="labeling.expire_leases")
def expire_leases() -> int:
    """The periodic lease sweep (see `webapp.celery.BEAT_SCHEDULE`)."""
    return assignments_expire()
