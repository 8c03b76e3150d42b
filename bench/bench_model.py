"""Training speed: our GPT against Hugging Face transformers' GPT2LMHeadModel, same config.

    python bench/bench_model.py                        # tiny preset, CPU or GPU
    python bench/bench_model.py --preset gpt2 --batch-size 8 --block-size 1024   # on a GPU: MFU

Both models take the same AdamW step on the same batches. The two are timed in alternating
rounds and the best and median round of each are reported, so load from other processes on a
shared machine disturbs both alike and shows up as spread, not as a bias; the load average at
the start (before this run adds its own) says how busy the machine was. transformers is the
`dev` extra (`make install` puts it in); without it only our column is printed.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.ml.device import autocast, pick_device  # noqa: E402
from training.ml.gpt import GPT, PRESETS, GPTConfig  # noqa: E402
from training.ml.optim import make_optimizer  # noqa: E402

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, per GPU


def hf_model(config: GPTConfig):
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return None
    hf_config = GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel._from_config(hf_config, attn_implementation="sdpa")


def ours_step(model, x):
    _, loss = model(x[:, :-1], x[:, 1:])
    return loss


def hf_step(model, x):
    x = x[:, :-1]  # the same T input tokens as ours; it shifts the labels itself
    return model(input_ids=x, labels=x).loss


def timed_round(step_fn, model, optimizer, batches, device) -> float:
    """Seconds per optimizer step over `batches`."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x in batches:
        with autocast(device):
            loss = step_fn(model, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(batches)


def flops_per_token(config: GPTConfig, n_params: int) -> float:
    """Training FLOPs per token (PaLM appendix B, as nanoGPT's estimate_mfu): 6N + 12 L C T."""
    return 6 * n_params + 12 * config.n_layer * config.n_embd * config.block_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--vocab-size", type=int, default=2048)  # the demo tokenizer
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    device = pick_device(args.device)
    config = GPTConfig.preset(args.preset, vocab_size=args.vocab_size, block_size=args.block_size)
    g = torch.Generator().manual_seed(0)
    batches = [
        torch.randint(
            0, config.vocab_size, (args.batch_size, config.block_size + 1), generator=g
        ).to(device)  # fmt: skip
        for _ in range(args.steps)
    ]
    tokens = args.batch_size * config.block_size

    torch.manual_seed(0)
    contenders = {"ours": (GPT(config), ours_step)}
    hf = hf_model(config)
    if hf is None:
        print("transformers is not installed (pip install -e '.[dev]'): skipping its column")
    else:
        contenders["transformers"] = (hf, hf_step)
    runs = {}
    for name, (model, step_fn) in contenders.items():
        model.to(device).train()
        model = torch.compile(model) if args.compile else model
        runs[name] = (model, step_fn, make_optimizer(model, lr=1e-4), [])
        timed_round(step_fn, model, runs[name][2], batches[:2], device)  # warm up (and compile)

    for _ in range(args.rounds):  # alternate, so both see the same machine load
        for model, step_fn, optimizer, times in runs.values():
            times.append(timed_round(step_fn, model, optimizer, batches, device))

    n_params = contenders["ours"][0].num_params()
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
        f", {torch.get_num_threads()} threads), preset {args.preset}: {n_params / 1e6:.2f}M "
        f"params, batch {args.batch_size} x {config.block_size} tokens, compile={args.compile}"
        f", load average at start {load_at_start:.2f}"
    )
    best, median = {}, {}
    for name, (_, _, _, times) in runs.items():
        best[name], median[name] = min(times), statistics.median(times)
        line = (
            f"{name:>13}: {tokens / best[name]:10,.0f} tokens/s best, "
            f"{tokens / median[name]:10,.0f} median  ({best[name] * 1e3:.1f} ms/step)"
        )
        if device.type == "cuda":
            peak = next(
                (v for k, v in PEAK_BF16_FLOPS.items() if k in torch.cuda.get_device_name()), None
            )
            if peak:
                mfu = flops_per_token(config, n_params) * tokens / best[name] / peak
                line += f"  MFU {mfu:.1%}"
        print(line)
    if "transformers" in best:
        print(
            f"speed-up ours / transformers: {best['transformers'] / best['ours']:.2f}x best, "
            f"{median['transformers'] / median['ours']:.2f}x median"
        )


if __name__ == "__main__":
    main()
