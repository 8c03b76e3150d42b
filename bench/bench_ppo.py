"""PPO iteration throughput: responses per second, split into sampling, scoring and training.

    python bench/bench_ppo.py                                     # tiny preset, CPU
    python bench/bench_ppo.py --preset gpt2 --device cuda --prompts 64 --samples 4 \
        --max-new-tokens 128                                      # on a GPU: + peak memory

Runs `train_ppo` as the loop runs it: a policy (random weights of the preset: replies always
run to `--max-new-tokens`, the worst case), its frozen reference, a reward model of the same
size (the policy's trunk with a scalar head) that also initialises the value model. Per
iteration the loop's own timers split the wall time into
  sampling  generation with the KV cache (step 1),
  scoring   the full forward passes of policy, reference and value model, the reward model,
            rewards and GAE (steps 1-4),
  training  the PPO epochs of minibatch updates (steps 5-6).
The first iteration is a warm-up and is left out; the median of the others is printed.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.ml.device import pick_device  # noqa: E402
from training.ml.gpt import GPT, PRESETS, GPTConfig  # noqa: E402
from training.ml.ppo import PPOConfig, train_ppo  # noqa: E402
from training.ml.tokenizer import ChatTokenizer, train_tokenizer  # noqa: E402


def bench_tokenizer(preset: str) -> ChatTokenizer:
    """GPT-2's encoding for the GPT-2 presets when tiktoken has it locally, else a small BPE
    trained here on the standard library's docstrings."""
    if "vocab_size" in PRESETS[preset]:
        try:
            return ChatTokenizer.from_tiktoken("gpt2")
        except RuntimeError as exc:
            print(f"({exc.args[0].split(':')[0]}; using a small trained tokenizer)")
    import argparse as a, collections, functools, json, re, textwrap  # noqa: E401, I001

    texts = [m.__doc__ for m in (a, collections, functools, json, re, textwrap)]
    return train_tokenizer(texts, vocab_size=4096)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--prompts", type=int, default=16, help="prompts per iteration")
    parser.add_argument("--samples", type=int, default=4, help="responses per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--minibatch-size", type=int, default=16)
    parser.add_argument("--ppo-epochs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=4, help="timed ones, after a warm-up")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    device = pick_device(args.device)
    tokenizer = bench_tokenizer(args.preset)
    config = GPTConfig.preset(args.preset, vocab_size=tokenizer.vocab_size)
    torch.manual_seed(0)
    policy = GPT(config).to(device)
    reward_model = GPT.with_scalar_head(policy)
    words = "the quick brown fox jumps over the lazy dog while five wizards box".split()
    prompts = [
        [
            {
                "role": "user",
                "content": " ".join(words[(i + j) % len(words)] for j in range(8 + i % 8)),
            }
        ]
        for i in range(args.prompts * 4)
    ]
    ppo = PPOConfig(
        iterations=args.iterations + 1,
        prompts_per_iteration=args.prompts,
        samples_per_prompt=args.samples,
        max_new_tokens=args.max_new_tokens,
        minibatch_size=args.minibatch_size,
        ppo_epochs=args.ppo_epochs,
        checkpoint_every=10**9,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = train_ppo(policy, tokenizer, prompts, ppo, reward=reward_model)
    wall = time.perf_counter() - start
    timed = result.history[1:] or result.history

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {device} ({name}, {torch.get_num_threads()} threads), preset {args.preset}: "
        f"{policy.num_params() / 1e6:.2f}M params x 4 models (policy, reference, reward, value)"
    )
    print(
        f"{args.prompts} prompts x {args.samples} samples = {args.prompts * args.samples} "
        f"responses per iteration, up to {args.max_new_tokens} new tokens, {args.ppo_epochs} "
        f"PPO epochs of minibatches of {args.minibatch_size}; {len(timed)} timed iterations "
        f"(+1 warm-up), {wall:.1f} s in all"
    )
    median = {
        k: statistics.median(h[k] for h in timed)
        for k in ("time_sampling", "time_scoring", "time_training", "responses", "response_length")
    }
    total = median["time_sampling"] + median["time_scoring"] + median["time_training"]
    n = median["responses"]
    print(f"  response length (median) {median['response_length']:.0f} tokens")
    for label, key in (
        ("sampling", "time_sampling"),
        ("scoring", "time_scoring"),
        ("training", "time_training"),
    ):
        print(
            f"  {label:<9} {median[key]:8.3f} s/iteration  {n / median[key]:8.1f} responses/s  "
            f"({median[key] / total:.0%})"
        )
    print(f"  {'total':<9} {total:8.3f} s/iteration  {n / total:8.1f} responses/s")
    if device.type == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
