"""Enqueue a Celery task after the current transaction commits, or say plainly why not."""
from django.db import transaction
from kombu.exceptions import OperationalError


class QueueUnavailable(Exception):
    """Redis (the broker) cannot be reached: the work can't be handed to a worker now."""


def enqueue(task, *, args=(), queue: str) -> None:
    """Publish `task(*args)` on `queue` once the surrounding transaction commits.

    Outside a transaction the publish happens at once, so a broken broker raises
    QueueUnavailable here and the caller can tell the person.
    """

    def publish():
        try:
            task.apply_async(args=args, queue=queue)
        except OperationalError as exc:
            raise QueueUnavailable(
                "The task queue (Redis) is unreachable, so no worker can take this now; "
                "start Redis and try again."
            ) from exc

    transaction.on_commit(publish, robust=False)


def enqueue_by_name(name: str, *, args=(), queue: str) -> None:
    """`enqueue` for a task named by string: how a service asks for work in an app it must not
    import (the worker side calling back into the labeling side)."""
    from webapp.celery import app

    enqueue(app.signature(name), args=args, queue=queue)
