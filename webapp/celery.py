"""The Celery app: Redis broker, JSON only, one queue per kind of work.

`training` and `sampling` are served by GPU workers (`--concurrency 1`); `default` by any
worker. Long tasks ack late with prefetch 1, so a worker that dies hands its task back instead
of losing it, and one worker never hoards several multi-hour runs.

Periodic work (`BEAT_SCHEDULE`) needs one `celery beat` process in the deployment, or
`celery worker -B` for a single worker as in `make demo`; cron can run the matching management
commands instead.
"""
import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

QUEUES = ("default", "training", "sampling")

BEAT_SCHEDULE = {
    # Leases last minutes; a sweep a minute keeps the assignment table honest.
    "expire-leases": {"task": "labeling.expire_leases", "schedule": 60.0},
    # A run whose worker vanished (no heartbeat for TRAINING_HEARTBEAT_TIMEOUT) is queued again.
    "recover-stale-runs": {"task": "training.recover_stale_runs", "schedule": 60.0},
    # Chat comparisons whose last alternative's callback could not be queued.
    "collect-chat-comparisons": {"task": "chat.collect_comparisons", "schedule": 60.0},
}

app = Celery("webapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=[Queue(name) for name in QUEUES],
    task_default_queue="default",
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    beat_schedule=BEAT_SCHEDULE,
)
app.autodiscover_tasks()
