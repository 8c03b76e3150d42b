"""Sampling speed with and without the KV cache, 256 new tokens per completion.

    python bench/bench_sampling.py
    python bench/bench_sampling.py --prompts 4 --num-samples 4   # K samples share one prefill

Without the cache every new token recomputes the whole prefix (quadratic work in the length);
with it, each step feeds one token per row. Nothing stops early (no stop token), so both paths
produce exactly prompts x num_samples x new_tokens tokens, and the two runs give the same ids.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.ml.device import pick_device  # noqa: E402
from training.ml.gpt import GPT, PRESETS, GPTConfig  # noqa: E402
from training.ml.sampling import SampleConfig, generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--vocab-size", type=int, default=2048)  # the demo tokenizer
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    device = pick_device(args.device)
    block_size = args.prompt_len + args.new_tokens
    config = GPTConfig.preset(args.preset, vocab_size=args.vocab_size, block_size=block_size)
    torch.manual_seed(0)
    model = GPT(config).to(device)
    g = torch.Generator().manual_seed(0)
    prompts = [
        torch.randint(0, config.vocab_size, (args.prompt_len - i,), generator=g).tolist()
        for i in range(args.prompts)
    ]  # lengths differ by one: the batch is left-padded as in real use
    sample = SampleConfig(
        max_new_tokens=args.new_tokens, temperature=1.0, num_samples=args.num_samples, seed=0
    )
    generate(model, prompts, SampleConfig(max_new_tokens=4), stop_id=-1, pad_id=0)  # warm up

    results = {}
    for use_cache in (True, False):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = generate(model, prompts, sample, stop_id=-1, pad_id=0, use_cache=use_cache)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        produced = sum(len(r) for r in out.responses)
        results[use_cache] = (produced / seconds, out.responses)
        label = "KV cache" if use_cache else "no cache"
        print(
            f"{label:>9}: {produced / seconds:9,.0f} tokens/s  ({produced} tokens, {seconds:.2f} s)"
        )
    print(
        f"device {device}, preset {args.preset} ({model.num_params() / 1e6:.2f}M params), "
        f"{args.prompts} prompts x {args.num_samples} samples, prompt ~{args.prompt_len} tokens, "
        f"{args.new_tokens} new tokens"
    )
    assert results[True][1] == results[False][1], "cached and uncached samples differ"
    print(f"speed-up KV cache / no cache: {results[True][0] / results[False][0]:.1f}x")


if __name__ == "__main__":
    main()
