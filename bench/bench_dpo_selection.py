"""Which held-out figure should pick a DPO run's weights? Replays a finished demo's DPO runs
evaluation by evaluation and sets each candidate figure beside the win rate it would have kept.

    python manage.py run_demo_round --preset tiny --rule example --method dpo --rounds 2 ...
    python bench/bench_dpo_selection.py --data data --rule example [--runs 7 12] [--every 10]

`keep_best` ends a DPO run on the weights of its best held-out evaluation (`training.ml.dpo`,
"Early stopping"), judged on pairs of the run's own held-out prompts. This bench retrains each
DPO run of the demo database under `--data` (the rankings, input model and settings the run
had, `eval_every` set to `--every`, no early stopping: the whole curve) and, at each held-out
evaluation, also samples the weights on the project's evaluation questions, which no run trains
on and which choose nothing in the product, for their win rate over the SFT model under the
demo's rule (`training.demo.headless.evaluate_models`, as the demo's report). It prints the
curve and, per candidate figure, the step it would keep and that step's win rate, beside the
last step's and the best any step reached.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The candidate figures of `training.ml.dpo.evaluate_preferences`: (name, higher is better)
CANDIDATES = (
    ("accuracy", True),  # keep_best's figure (ties to the lower loss, as `BestEvaluation`)
    ("loss", False),
    ("margin", True),
    ("chosen_nll", False),  # does the policy learn to write the preferred replies?
    ("same_writer_accuracy", True),  # pairs of one model's replies (with a round's sample_mix)
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="the demo's DATA_DIR (its SQLite database)")
    parser.add_argument("--rule", required=True, help="the demo's --rule")
    parser.add_argument("--runs", type=int, nargs="*", help="DPO run ids (default: every one)")
    parser.add_argument("--every", type=int, default=10, help="steps between evaluations")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=4,
                        help="replies per question and weights: the win rate is their mean "
                        "(one reply per question, 64 questions, varies by ~6 points)")
    args = parser.parse_args()
    if args.data:
        if not (args.data / "db.sqlite3").exists():
            sys.exit(f"error: no demo database (db.sqlite3) under {args.data}")
        os.environ["DATA_DIR"] = str(args.data)
        os.environ.pop("DATABASE_URL", None)  # the demo's SQLite under DATA_DIR
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    django.setup()
    from training.demo.rules import PREFERENCES
    from training.models import TrainingRun

    if args.rule not in PREFERENCES:
        sys.exit(f"error: unknown rule {args.rule!r}; known: {', '.join(PREFERENCES)}")
    runs = TrainingRun.objects.filter(kind="dpo", status="succeeded").order_by("pk")
    if args.runs:
        runs = runs.filter(pk__in=args.runs)
    if not runs:
        sys.exit("error: no finished DPO run in that database")
    for run in runs:
        replay(run, PREFERENCES[args.rule], every=args.every, max_new_tokens=args.max_new_tokens,
               seeds=args.seeds)


def replay(run, rule, *, every: int, max_new_tokens: int, seeds: int) -> None:
    from labeling.models import Ranking
    from training.demo.headless import evaluate_models, function_names, questions
    from training.jobs.common import dataclass_config, load_version
    from training.jobs.reward import ranking_records
    from training.ml.configs import DPOConfig
    from training.ml.dpo import train_dpo
    from training.ml.train_loop import due
    from training.selectors import sft_ancestor

    sft_model, tokenizer = load_version(sft_ancestor(run.input_model))
    model, _ = load_version(run.input_model)
    records = ranking_records(Ranking.objects.filter(pk__in=run.rankings.values("pk")))
    config = dataclass_config(DPOConfig, {**run.config, "eval_every": every, "keep_best": False,
                                          "patience": 0})  # fmt: skip
    held_out = questions(run.project, evaluation=True)
    names = function_names(run.project)
    rows = []

    def on_step(progress):
        if not due(progress.step, config.eval_every, progress.total):
            return False
        results = [evaluate_models(sft_model, model, tokenizer, scorer=None, prompts=held_out,
                                   rule=rule, names=names, max_new_tokens=max_new_tokens,
                                   seed=1234 + seed) for seed in range(seeds)]  # fmt: skip
        win, kl = (sum(getattr(r, name) for r in results) / seeds for name in ("win_rate", "kl"))
        figures = {name: progress.metrics[f"val_{name}"] for name, _ in CANDIDATES
                   if f"val_{name}" in progress.metrics}  # fmt: skip
        rows.append((progress.step, figures, win, kl))
        print(f"  step {progress.step:4d}  "
              + "  ".join(f"{name} {value:.3f}" for name, value in figures.items())
              + f"  | held out: win {win:.1%}  KL {kl:.1f}", flush=True)  # fmt: skip
        return False

    print(f"DPO run {run.pk} ({run.input_model.name} -> {run.output_model.name}): "
          f"{len(records)} ranked prompts, {config.epochs} epochs, lr {config.lr:g}",
          flush=True)  # fmt: skip
    started = time.perf_counter()
    train_dpo(model, tokenizer, records, config, on_step=on_step)
    print(f"  ({time.perf_counter() - started:.0f} s)")
    best = max(rows, key=lambda row: row[2])
    print(f"  last step {rows[-1][0]}: win {rows[-1][2]:.1%};  best: step {best[0]}, "
          f"win {best[2]:.1%}")  # fmt: skip
    for name, higher in CANDIDATES:
        if name not in rows[0][1]:
            continue
        sign = 1 if higher else -1
        pick = max(rows, key=lambda row: (sign * row[1][name],
                                          -row[1]["loss"] if name == "accuracy" else 0))
        print(f"  keep on {name:<15} -> step {pick[0]:4d}: win {pick[2]:.1%}, KL {pick[3]:.1f}")


if __name__ == "__main__":
    main()
