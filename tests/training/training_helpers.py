"""Helpers for the training tests (import as `from training_helpers import ...`): labeled rows
made through the labeling services, and waiting for a worker."""

import itertools
import json
from pathlib import Path

from labeling.services.demonstrations import dialogue_create
from labeling.services.projects import project_create

DEMO_FILE = Path(__file__).resolve().parents[2] / "labeling" / "demo" / "python_stdlib.jsonl"
TINY = dict(block_size=128, n_layer=2, n_head=2, n_embd=32)
_seq = itertools.count(1)


def demo_rows(n=None):
    rows = [json.loads(line) for line in DEMO_FILE.read_text().splitlines() if line.strip()]
    return rows[:n] if n else rows


def make_project(**fields):
    n = next(_seq)
    return project_create(name=fields.pop("name", f"Training {n}"), slug=f"training-{n}", **fields)


def add_demonstrations(project, author, n):
    """`n` demonstrations (each with its prompt), from the demo file."""
    return [
        dialogue_create(
            project=project,
            labeler=author,
            client_token=f"t{next(_seq)}",
            turns=[
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["response"]},
            ],
        )
        for r in demo_rows(n)
    ]
