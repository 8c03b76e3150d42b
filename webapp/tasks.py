"""Worker-side proof of life: the status page's test task."""
from celery import shared_task

from webapp.services import heartbeat_answer


@shared_task(bind=True)
def heartbeat(self, token: str) -> None:
    heartbeat_answer(token=token, worker=self.request.hostname or "")
