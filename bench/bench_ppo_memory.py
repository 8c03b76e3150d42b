"""Peak resident memory of one PPO iteration (`train_ppo`, policy = SmolLM2, reward
model = SmolLM2 with a scalar head) with LoRA (one frozen base for policy and reference,
the reward model's for the value model) against full fine-tuning (separate reference and
value copies, AdamW moments for two whole models). Each setup runs in a fresh process; the
peak is taken over the iteration (the high-water mark is reset after loading, whose
dequantization briefly holds more than the model), and again once `train_ppo` has returned:
with LoRA it merges the adapters then, which gives the value model its own weights (a third
trunk) and so costs memory the iteration itself does not. Also the size on disk of the
checkpoint the run writes after its iteration (what a killed run resumes from): with LoRA the
adapters and heads alone, the frozen bases being the run's inputs.

    python bench/bench_ppo_memory.py                    # LoRA r=16 against full, 4 prompts x 32
    python bench/bench_ppo_memory.py --prompts 8 --new-tokens 64
"""

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_real_model import DEMO_DATA, load_average


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def ppo_child(args) -> None:
    """One PPO iteration in this (fresh) process; prints its memory figures as JSON."""
    import resource

    from training.ml.architectures import with_scalar_head
    from training.ml.model_import import import_checkpoint
    from training.ml.ppo import PPOConfig, train_ppo
    from training.ml.shipped import shipped_model_path

    imported = import_checkpoint(shipped_model_path())
    policy, tokenizer = imported.model, imported.tokenizer
    reward = with_scalar_head(policy)
    with DEMO_DATA.open() as f:
        questions = [json.loads(line)["prompt"] for line, _ in zip(f, range(64), strict=False)]
    prompts = [[{"role": "user", "content": q}] for q in questions[: args.prompts]]
    config = PPOConfig(
        iterations=1, prompts_per_iteration=args.prompts, max_new_tokens=args.new_tokens,
        minibatch_size=args.prompts, ppo_epochs=args.epochs, checkpoint_every=10**9,
        lora_rank=args.child_rank,
    )  # fmt: skip
    gc.collect()
    loaded = status_kib("VmRSS")
    load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark: the peak from here on is the iteration's
    marks = {}

    def on_step(progress):  # after the iteration, before train_ppo merges the adapters
        marks["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        marks["s"] = time.perf_counter() - start

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as checkpoints:
        train_ppo(policy, tokenizer, prompts, config, reward=reward, on_step=on_step,
                  checkpoint_dir=checkpoints)  # fmt: skip
        marks["returned"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        marks["checkpoint"] = sum(f.stat().st_size for f in Path(checkpoints).rglob("*")
                                  if f.is_file())  # fmt: skip
    print(json.dumps({"loaded": loaded, "load_peak": load_peak, **marks}))


def bench_ppo_memory(args) -> None:
    print(
        f"PPO memory: one iteration of {args.prompts} prompts x {args.new_tokens} new "
        f"tokens, {args.epochs} PPO epoch(s), policy SmolLM2 + reward model SmolLM2 with a "
        f"scalar head, each setup in a fresh process (peak RSS, GB)"
    )
    results = {}
    for label, rank in ((f"LoRA r={args.lora_rank}", args.lora_rank), ("full", 0)):
        command = [sys.executable, __file__, "--child-rank", str(rank),
                   "--prompts", str(args.prompts),
                   "--new-tokens", str(args.new_tokens),
                   "--epochs", str(args.epochs)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            print(done.stderr[-3000:])
            raise SystemExit(f"the {label} PPO process failed ({done.returncode})")
        results[label] = r = json.loads(done.stdout.strip().splitlines()[-1])
        models = (
            "policy + reward trunks; reference = policy with adapters off, value = reward's "
            "base + adapters"
            if rank
            else "policy, reference copy, reward, value copy; AdamW on policy and value"
        )
        print(
            f"  {label:<9} loaded {r['loaded'] / 2**20:5.2f}  peak in the iteration "
            f"{r['peak'] / 2**20:5.2f}  with the final merge {r['returned'] / 2**20:5.2f}  "
            f"(import's own peak {r['load_peak'] / 2**20:4.2f}), {r['s']:5.1f} s, checkpoint "
            f"on disk {r['checkpoint'] / 2**20:6.1f} MB  [{models}]"
        )
    lora, full = results.values()
    print(
        f"  LoRA saves {(full['peak'] - lora['peak']) / 2**20:.2f} GB of the iteration's peak: "
        f"{lora['peak'] / full['peak']:.0%} of full fine-tuning's "
        f"({full['peak'] / lora['peak']:.1f}x less)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--child-rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_rank is not None:
        return ppo_child(args)
    print(f"load average at start {load_average():.2f}")
    bench_ppo_memory(args)


if __name__ == "__main__":
    main()
