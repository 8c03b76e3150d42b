"""The leaderboard's fit: Bradley-Terry by maximum likelihood plus bootstrap 95% intervals.

    python bench/bench_leaderboard.py                        # 50 versions, 1M votes, 200 rounds
    python bench/bench_leaderboard.py --versions 20 --votes 100000 --rounds 500

Simulated votes between versions of known strength (ties where they are close, Likert scores
on a third of them), then `labeling.leaderboard.leaderboard` timed end to end: summing the votes
into win counts, the fit, and the bootstrap (one multinomial draw per round over the (pair, outcome)
cells, all rounds fitted together). Prints each part's time (best of `--repeat`), the largest
error of the fitted strengths and how many true strengths fall inside their intervals.
Target: under 2 s for 50 versions, a million votes and 200 rounds on this CPU.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labeling.leaderboard import (  # noqa: E402
    VoteArrays,
    bootstrap_strengths,
    fit_bradley_terry,
    leaderboard,
    pair_counts,
)


def simulate(versions: int, votes: int, seed: int):
    rng = np.random.default_rng(seed)
    true = rng.normal(0, 1, versions)
    true -= true.mean()
    a = rng.integers(0, versions, votes)
    b = (a + rng.integers(1, versions, votes)) % versions
    p = 1 / (1 + np.exp(-(true[a] - true[b])))
    # Ties where the two are close, drawn so that a's expected score (a tie: half) stays p.
    tie = 0.4 * np.minimum(p, 1 - p)
    u = rng.random(votes)
    outcome = np.where(u < tie, 2, np.where(u < tie + (p - tie / 2), 0, 1))
    likert = np.where(rng.random(votes) < 1 / 3, rng.integers(1, 8, votes), np.nan)
    return true, VoteArrays(a, b, outcome, task=np.arange(votes), likert_a=likert,
                            likert_b=likert)  # fmt: skip


def best_of(repeat: int, fn):
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    true, votes = simulate(args.versions, args.votes, args.seed)
    t_count, pairs = best_of(args.repeat, lambda: pair_counts(votes))
    t_fit, strength = best_of(args.repeat, lambda: fit_bradley_terry(pairs.win_matrix()))
    t_boot, _ = best_of(args.repeat, lambda: bootstrap_strengths(pairs, rounds=args.rounds))
    t_all, board = best_of(args.repeat, lambda: leaderboard(votes, bootstrap=args.rounds))
    inside = int(((board.low <= true) & (true <= board.high)).sum())
    print(f"{args.versions} versions, {args.votes:,} votes, {args.rounds} bootstrap rounds "
          f"(best of {args.repeat})")
    print(f"  sum votes into win counts {t_count * 1000:8.1f} ms")
    print(f"  Bradley-Terry fit         {t_fit * 1000:8.1f} ms")
    print(f"  {args.rounds} bootstrap fits       {t_boot * 1000:8.1f} ms")
    print(f"  whole leaderboard         {t_all * 1000:8.1f} ms   (target < 2000 ms)")
    print(f"  max |fitted - true| strength {np.abs(strength - true).max():.4f}; "
          f"{inside}/{args.versions} true strengths inside their 95% interval")


if __name__ == "__main__":
    main()
