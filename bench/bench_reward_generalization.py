"""Reward-model regularizers measured on held-out questions: does weight decay, reward centering,
LoRA (fewer trainable parameters, with or without adapter dropout) or an ensemble make the
reward model generalize to preferences other than the one the demo was tuned for?

    python bench/bench_reward_generalization.py --base artifacts/base/model --out /tmp/rm-bench
    python bench/bench_reward_generalization.py ... --prefs returns concise example --seeds 0 1
    python bench/bench_reward_generalization.py ... --variants preset ensemble=3 ensemble=3,all \
        --train-questions 64   # few rankings: bootstrapped members against members on all
    python bench/bench_reward_generalization.py ... --prefs example caveat --mix-base 2
        # two of each question's K replies by the base model, as the demo's --sample-mix base:
        # preferences the SFT model never shows (an example call, a caveat) then give pairs
    python bench/bench_reward_generalization.py ... --bradley-terry 2 [--bt-ties]
        # rankings sampled from the scores (with --bt-ties, alike replies stay tied)

No database: the demo's data as plain records. SFT on the demo file's training questions (the
seeded split of `training.demo.split`, the same one the demo holds out) from `--base`, K replies
per question sampled from the SFT model (both cached in `--out`), then per preference
(`training.demo.rules`) and seed two simulated labelers (`training.demo.labelers`, `--noise` swaps,
`--bradley-terry` sampling) rank every training question's replies as in the demo, and the held-out
questions' replies too: those rankings never train anything and pick nothing. Each variant trains a
reward model from the SFT model with the reward preset's settings (early stopping on its validation
split) plus the variant's change, and reports the validation accuracy (the split that chose the
weights), the held-out accuracy and, on the same held-out pairs, the longer-reply baseline and the
labelers' rule itself (the ceiling their noise leaves: 10% swaps cost ~0.1), and with
`--mix-base` the accuracy on the held-out pairs of one model's replies ("one_writer": what is
left once telling the base model's replies from the SFT model's cannot help).
"""

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from statistics import mean
from types import SimpleNamespace

import django
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The presets read the run-kind registry, whose modules declare rows of the Django models: the
# apps are set up (no database is opened).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django.setup()

from training import presets  # noqa: E402
from training.demo.labelers import SimulatedLabeler  # noqa: E402
from training.demo.rules import PREFERENCES, reference_name  # noqa: E402
from training.demo.split import read_demo_rows, split_demo_rows  # noqa: E402
from training.ml.architectures import with_scalar_head  # noqa: E402
from training.ml.model_files import load_model, load_tokenizer, save_model  # noqa: E402
from training.ml.records import Demonstration, RankingRecord, ranking_pairs  # noqa: E402
from training.ml.reward import RewardConfig  # noqa: E402
from training.ml.reward_ensemble import train_reward_ensemble  # noqa: E402
from training.ml.sampling import SampleConfig, generate  # noqa: E402
from training.ml.sft import SFTConfig, train_sft  # noqa: E402

VARIANTS = {
    "preset": {},
    "weight_decay=0.1": {"weight_decay": 0.1},
    "center_coef=0.01": {"center_coef": 0.01},  # TRL's suggested value
    "center_coef=0.1": {"center_coef": 0.1},
    "lora_rank=8": {"lora_rank": 8, "lora_alpha": 16.0},
    "lora_rank=8+dropout": {"lora_rank": 8, "lora_alpha": 16.0, "lora_dropout": 0.1},
    "ensemble=3": {"ensemble": 3},  # training.ml.reward_ensemble: 3 bootstrapped members
    "ensemble=3,all": {"ensemble": 3, "bootstrap": False},  # 3 members on every prompt
    # longer training: the epochs are a ceiling the held-out pairs stop early
    "epochs=12": {"epochs": 12},
    "epochs=12,patience=10": {"epochs": 12, "patience": 10},
    "lr=1e-3": {"lr": 1e-3},
}
HELD_OUT = 0.2  # the demo's --held-out default
DEMO_FILE = ROOT / "labeling" / "demo" / "python_stdlib.jsonl"  # load_demo_project's


def sft_model(base: Path, out: Path, kept: list[dict], *, epochs: int, lr: float):
    """The SFT model (the demo's tiny settings), trained once and cached in `out`/sft."""
    directory = out / "sft"
    if (directory / "config.json").exists():
        return load_model(directory)[0], load_tokenizer(directory)
    model, tokenizer = load_model(base)[0], load_tokenizer(base)
    demos = [Demonstration([{"role": "user", "content": r["prompt"]},
                            {"role": "assistant", "content": r["response"]}]) for r in kept]
    train_sft(model, tokenizer, demos, SFTConfig(epochs=epochs, lr=lr, eval_every=0))
    tokenizer.save(out / "tokenizer.json")
    save_model(directory, model, tokenizer_path=out / "tokenizer.json", meta={"stage": "sft"})
    return model, tokenizer


def replies(model, tokenizer, rows: list[dict], out: Path, *, k: int, name: str) -> list[list]:
    """K sampled replies per question (the sample preset's settings), cached in `out`."""
    path = out / f"replies-{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    sample = presets.defaults("sample")
    config = SampleConfig(max_new_tokens=sample["max_new_tokens"], temperature=1.0,
                          top_p=sample["top_p"], num_samples=k, seed=0)  # fmt: skip
    prompts = [tokenizer.render_prompt([{"role": "user", "content": r["prompt"]}]) for r in rows]
    texts = []
    for start in range(0, len(prompts), 32):
        got = generate(model, prompts[start:start + 32], config, stop_id=tokenizer.end_id,
                       pad_id=tokenizer.pad_id)  # fmt: skip
        texts += [tokenizer.decode(r) for r in got.responses]
    grouped = [texts[i * k:(i + 1) * k] for i in range(len(rows))]
    path.write_text(json.dumps(grouped))
    return grouped


def ranked(rows, grouped, preference, *, seed: int, habits: dict,
           writers: list[str] | None = None) -> list[RankingRecord]:  # fmt: skip
    """Each question's replies ranked by two simulated labelers (as the demo's two), with the
    habits (`noise`, `bt_scale`, `bt_ties`) of `SimulatedLabeler`; `writers`: who wrote each of
    a question's replies."""
    labelers = [SimulatedLabeler(preference, seed=2 * seed + i, **habits) for i in range(2)]
    records = []
    for i, (row, texts) in enumerate(zip(rows, grouped, strict=True)):
        completions = [SimpleNamespace(pk=j, text=t) for j, t in enumerate(texts)]
        name = reference_name(row["response"])
        records.append(RankingRecord(
            prompt=[{"role": "user", "content": row["prompt"]}], completions=texts,
            rankings=[lab.rank(completions, name) for lab in labelers], prompt_id=i,
            writers=writers,
        ))  # fmt: skip
    return records


def rule_ceiling(rows, records: list[RankingRecord], preference, *,
                 one_writer: bool = False) -> float:  # fmt: skip
    """The share of the records' pairs (with `one_writer`, of those of one model's replies) that
    the labelers' own rule orders right (ties half): the best any reward model can do on
    rankings with noisy swaps, beside the longer-reply baseline."""
    right = []
    for row, record in zip(rows, records, strict=True):
        name = reference_name(row["response"])
        scores = [preference.score(text, name) for text in record.completions]
        writers = record.writers or [None] * len(record.completions)
        for ranking in record.rankings:
            for w, lose in ranking_pairs(ranking, len(record.completions)):
                if one_writer and writers[w] != writers[lose]:
                    continue
                right.append(1.0 if scores[w] > scores[lose] else 0.5 * (scores[w] == scores[lose]))
    return mean(right) if right else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="a model directory (pretrained)")
    parser.add_argument("--out", type=Path, required=True, help="cache: SFT model and replies")
    parser.add_argument("--prefs", nargs="+", default=["returns", "concise", "example"],
                        choices=sorted(PREFERENCES))  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--bradley-terry", type=float, metavar="SCALE",
                        help="sample rankings from the scores instead of sorting by them")
    parser.add_argument("--bt-ties", action="store_true",
                        help="with --bradley-terry: replies alike under the preference stay tied")
    parser.add_argument("--train-questions", type=int,
                        help="rank only this many training questions (default: all 256)")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--mix-base", type=int, default=0, metavar="N",
                        help="N of the K replies sampled from --base instead of the SFT model")
    parser.add_argument("--sft-epochs", type=int, default=12)  # the demo's tiny sizes
    parser.add_argument("--sft-lr", type=float, default=1e-3)
    args = parser.parse_args()
    if not 0 <= args.mix_base < args.k:
        parser.error(f"--mix-base takes 0 to K - 1 = {args.k - 1}; got {args.mix_base}")
    habits = {"noise": args.noise, "bt_scale": args.bradley_terry, "bt_ties": args.bt_ties}
    try:
        SimulatedLabeler(PREFERENCES[args.prefs[0]], **habits)
    except ValueError as exc:
        parser.error(str(exc))
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    kept, held = split_demo_rows(read_demo_rows(DEMO_FILE), HELD_OUT)
    started = time.monotonic()
    sft, tokenizer = sft_model(args.base, args.out, kept, epochs=args.sft_epochs, lr=args.sft_lr)
    train_replies = replies(sft, tokenizer, kept, args.out, k=args.k, name="train")
    held_replies = replies(sft, tokenizer, held, args.out, k=args.k, name="held-out")
    if args.mix_base:  # the demo's sample_mix: the last mix_base replies are the base model's
        base = load_model(args.base)[0]
        own = args.k - args.mix_base
        for grouped, rows, name in ((train_replies, kept, "train"),
                                    (held_replies, held, "held-out")):  # fmt: skip
            mixed = replies(base, tokenizer, rows, args.out, k=args.mix_base,
                            name=f"{name}-base{args.mix_base}")  # fmt: skip
            grouped[:] = [mine[:own] + theirs for mine, theirs in zip(grouped, mixed, strict=True)]
    print(f"SFT and {args.k} replies for {len(kept)} + {len(held)} held-out questions: "
          f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
    base_config = RewardConfig(**{k: v for k, v in presets.defaults("reward").items()
                                  if k in RewardConfig.__dataclass_fields__})  # fmt: skip
    rows, ceilings = [], {}
    # with base-model replies: the accuracy on the held-out pairs of one model's replies too
    # (`training.ml.reward.same_writer_figures`)
    writers = ["sft"] * (args.k - args.mix_base) + ["base"] * args.mix_base
    print("preference  variant            seed  val_acc  heldout_acc  longer_baseline  "
          "one_writer  best_step  seconds", flush=True)  # fmt: skip
    for key in args.prefs:
        for seed in args.seeds:
            train = ranked(kept, train_replies, PREFERENCES[key], seed=seed, habits=habits,
                           writers=writers)[:args.train_questions]  # fmt: skip
            held_out = ranked(held, held_replies, PREFERENCES[key], seed=seed + 100,
                              habits=habits, writers=writers)  # fmt: skip
            usable = sum(any(len(ranking) > 1 for ranking in r.rankings) for r in train)
            if not usable:  # every SFT reply alike under the rule: nothing to learn from
                print(f"{key:<11} all {len(train)} tasks tie: no reward model", flush=True)
                continue
            ceilings[key, seed] = rule_ceiling(held, held_out, PREFERENCES[key])
            ceilings[key, seed, "one"] = rule_ceiling(held, held_out, PREFERENCES[key],
                                                      one_writer=True)  # fmt: skip
            print(f"{key:<11} {'(the rule itself)':<18} {seed:>4}  -        "
                  f"{ceilings[key, seed]:.3f}                         "
                  f"{ceilings[key, seed, 'one']:.3f}", flush=True)  # fmt: skip
            for variant in args.variants:
                config = replace(base_config, seed=seed, **VARIANTS[variant])
                t0 = time.monotonic()
                m = train_reward_ensemble(with_scalar_head(copy.deepcopy(sft)), tokenizer, train,
                                          config, held_out=held_out).metrics  # fmt: skip
                row = (key, variant, seed, m.get("val_accuracy", float("nan")),
                       m.get("heldout_accuracy", float("nan")),
                       m.get("heldout_length_baseline_accuracy", float("nan")),
                       m.get("heldout_same_writer_accuracy", float("nan")),
                       m.get("best_step", float("nan")), time.monotonic() - t0)  # fmt: skip
                rows.append(row)
                print(f"{key:<11} {variant:<18} {seed:>4}  {row[3]:.3f}    {row[4]:.3f}        "
                      f"{row[5]:.3f}            {row[6]:.3f}       {row[7]:>5g}  {row[8]:>7.0f}",
                      flush=True)  # fmt: skip
    print("\nmean over seeds (held-out accuracy; longer-reply baseline on the same pairs; the "
          "labelers' rule itself on them, the ceiling under their noise):")
    for key in args.prefs:
        for variant in args.variants:
            mine = [r for r in rows if r[0] == key and r[1] == variant]
            if not mine:
                continue
            print(f"{key:<11} {variant:<18} val {mean(r[3] for r in mine):.3f}  held-out "
                  f"{mean(r[4] for r in mine):.3f}  baseline {mean(r[5] for r in mine):.3f}  "
                  f"rule {mean(ceilings[key, r[2]] for r in mine):.3f}  "
                  f"one-writer pairs {mean(r[6] for r in mine):.3f} "
                  f"(rule {mean(ceilings[key, r[2], 'one'] for r in mine):.3f})")


if __name__ == "__main__":
    main()
