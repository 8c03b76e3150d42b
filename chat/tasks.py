"""Celery tasks of the chat app: the inference worker's callbacks, run on the default queue."""
from celery import shared_task

from chat.services.comparisons import comparison_collect, comparisons_collect_finished


@shared_task(name="chat.comparison_collect")
def collect(generation_id: int) -> None:
    comparison_collect(generation_id)


@shared_task(name="chat.collect_comparisons")
def collect_finished() -> int:
    """The periodic sweep (see `webapp.celery.BEAT_SCHEDULE`)."""
    return comparisons_collect_finished()
