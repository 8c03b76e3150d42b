"""The language model core in plain PyTorch: tokenizer, GPT, sampling, checkpoints, pretraining.

Nothing here imports Django: every module can be used and tested alone, from a command line on a
GPU box or inside a Celery worker. Training loops report through an `on_step` callback
(`training.ml.progress`), never by writing to a database.
"""
