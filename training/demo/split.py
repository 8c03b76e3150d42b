"""The demo's held-out questions: a seeded share of the demo file's questions whose prompts the
demo marks as evaluation prompts (`training.demo.headless.hold_out`), so no SFT, reward-model or PPO
snapshot can hold them.

The round's win rate on its own training prompts says the policy learned them; only the win
rate on questions it never saw says the loop improved the model. The split is by question text
and seeded (`training.ml.records.split_by_prompt`), so every run of the demo holds out the same
questions. A project loaded before (an older demo, `make demo`) has the same questions marked
when the demo runs; its older models may have trained on them, the new runs do not.

    kept, held_out = split_demo_rows(rows, 0.2)        # rows of labeling/demo/python_stdlib.jsonl
"""

import json
from pathlib import Path

from training.ml.records import split_by_prompt

SPLIT_SEED = 0  # one split per project: the same questions are held out on every run


def read_demo_rows(path: Path) -> list[dict]:
    """The demo file's rows: {"prompt": question, "response": reference answer}."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def split_demo_rows(rows: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """(rows to train on, rows held out), about `fraction` of the questions held
    out; 0 holds out none."""
    if fraction <= 0:
        return list(rows), []
    kept, held_out = split_by_prompt([r["prompt"] for r in rows], fraction, seed=SPLIT_SEED)
    return [rows[i] for i in kept], [rows[i] for i in held_out]
