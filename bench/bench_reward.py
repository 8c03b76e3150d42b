"""Reward-model step: all pairs of a prompt as one batch element vs the pairs expanded.

    python bench/bench_reward.py                                  # tiny preset, K = 4 and 9
    python bench/bench_reward.py --preset gpt2 --device cuda      # on a GPU: + peak memory

Both arms train on exactly the same comparisons: `--prompts` prompts, each with K completions
fully ranked, so C(K, 2) pairs each. "grouped" is what `train_reward_model` does: each
completion goes through the model once and the pairs are differences of the K scores (K rows
per prompt). "pairs" expands every comparison into its own (better, worse) element, as a
pairwise trainer without grouping would (2 * C(K, 2) rows per prompt). The step is the whole
training step: forward, pairwise loss, backward, AdamW. The arms are timed in alternating
rounds and the best round of each is reported, so other load on the machine hits both alike.
Target: grouped at least 2x faster at K = 4 (ideal: K - 1 times fewer rows).
"""

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.ml.device import pick_device  # noqa: E402
from training.ml.gpt import GPT, PRESETS, GPTConfig  # noqa: E402
from training.ml.optim import make_optimizer  # noqa: E402
from training.ml.reward import pairwise_loss, sequence_scores  # noqa: E402
from training.ml.reward_data import RankingExample, reward_batch  # noqa: E402

PAD = 0


def grouped_examples(n_prompts, k, *, prompt_len, reply_len, vocab_size, seed=0):
    """Random token sequences: per prompt, K replies ranked 0 > 1 > ... > K-1."""
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n_prompts):
        prompt = torch.randint(1, vocab_size, (prompt_len,), generator=g).tolist()
        replies = [
            torch.randint(
                1,
                vocab_size,
                (int(torch.randint(reply_len // 2, reply_len + 1, (1,), generator=g)),),
                generator=g,
            ).tolist()
            for _ in range(k)
        ]
        pairs = list(itertools.combinations(range(k), 2))
        examples.append(
            RankingExample([prompt + r for r in replies], pairs, [len(r) for r in replies])
        )
    return examples


def expanded_pairs(examples):
    """The same comparisons, one (better, worse) element per pair."""
    return [
        RankingExample(
            [ex.sequences[w], ex.sequences[l]], [(0, 1)], [ex.reply_lengths[w], ex.reply_lengths[l]]
        )
        for ex in examples
        for w, l in ex.pairs  # noqa: E741
    ]


def train_step(model, optimizer, examples, device) -> None:
    batch = reward_batch(examples, pad_id=PAD, device=device)
    rewards = sequence_scores(model, batch.idx, batch.last)
    loss = pairwise_loss(rewards, batch.winners, batch.losers, batch.groups, batch.num_groups)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def timed(model, optimizer, examples, device, steps) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, optimizer, examples, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def peak_memory(model, optimizer, examples, device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    train_step(model, optimizer, examples, device)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(device) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--vocab-size", type=int, default=4096, help="for presets without one")
    parser.add_argument("--k", type=int, nargs="+", default=[4, 9])
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--reply-len", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    device = pick_device(args.device)
    overrides = {} if "vocab_size" in PRESETS[args.preset] else {"vocab_size": args.vocab_size}
    config = GPTConfig.preset(args.preset, scalar_head=True, **overrides)
    torch.manual_seed(0)
    model = GPT(config).to(device).train()
    optimizer = make_optimizer(model, lr=1e-5)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {device} ({name}, {torch.get_num_threads()} threads), preset {args.preset}: "
        f"{model.num_params() / 1e6:.2f}M params, {args.prompts} prompts per step, prompt "
        f"{args.prompt_len} tokens, replies {args.reply_len // 2}-{args.reply_len} tokens"
    )
    print(
        f"{'K':>3} {'pairs/step':>10} | {'grouped rows':>12} {'ms/step':>9} {'pairs/s':>9} | "
        f"{'pairs rows':>10} {'ms/step':>9} {'pairs/s':>9} | {'speed-up':>8}"
    )
    for k in args.k:
        grouped = grouped_examples(
            args.prompts,
            k,
            prompt_len=args.prompt_len,
            reply_len=args.reply_len,
            vocab_size=config.vocab_size,
        )
        pairs = expanded_pairs(grouped)
        n_pairs = sum(len(ex.pairs) for ex in grouped)
        arms = {"grouped": (grouped, []), "pairs": (pairs, [])}
        for examples, _ in arms.values():
            timed(model, optimizer, examples, device, 1)  # warm up
        for _ in range(args.rounds):  # alternate, so both see the same machine load
            for examples, times in arms.values():
                times.append(timed(model, optimizer, examples, device, args.steps))
        g_best, p_best = min(arms["grouped"][1]), min(arms["pairs"][1])
        line = (
            f"{k:>3} {n_pairs:>10} | {args.prompts * k:>12} {g_best * 1e3:>9.1f} "
            f"{n_pairs / g_best:>9.0f} | {2 * n_pairs:>10} {p_best * 1e3:>9.1f} "
            f"{n_pairs / p_best:>9.0f} | {p_best / g_best:>7.2f}x"
        )
        spread = max(statistics.pstdev(t) / min(t) for _, t in arms.values())
        line += f"  (round spread {spread:.0%})"
        g_mem, p_mem = (peak_memory(model, optimizer, ex, device) for ex, _ in arms.values())
        if g_mem is not None:
            line += f"  peak memory grouped {g_mem:.2f} GiB, pairs {p_mem:.2f} GiB"
        print(line)


if __name__ == "__main__":
    main()
