"""The run kinds: one module per kind (pretrain, sft, sample, reward, ppo) declaring its
`KIND = RunKind(...)` (`training.jobs.declaration`): what it takes and makes, its queue, its
minimum data and snapshot rule, its settings and charts, and its job, `run(context)`, which
builds the `training.ml` records from the run's dataset snapshot, calls the matching train loop
with a progress callback and returns an `Outcome`. `training.jobs.kinds` is the registry everyone
reads; `training.worker` runs a job in a Celery worker and writes its result through the
services. Nothing here imports a service."""
