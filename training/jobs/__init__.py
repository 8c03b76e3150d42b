"""The job code: what a worker does with a run. `runner.execute` takes the run (idempotently),
builds the `training.ml` records from its dataset snapshot, calls the matching train loop with a
progress callback, and writes the result back (a model version, ranking tasks) through the
services. One module per kind: pretrain, sft, reward, ppo, sample."""
