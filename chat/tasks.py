"""Celery tasks of the chat app: the inference worker's callbacks, run on the default queue."""
from celery import shared_task

from chat.services.comparisons import comparison_collect


@shared_task(name="chat.comparison_collect")
def collect(generation_id: int) -> None:
    comparison_collect(generation_id)
