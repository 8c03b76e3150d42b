"""The machine side: model versions, training runs, the Celery tasks, rows <-> datasets."""
