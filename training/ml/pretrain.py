"""Pretraining: a tiny base model from scratch, so the offline demo has a model to fine-tune.

    python -m training.ml.pretrain --out artifacts/base --preset tiny --steps 800

1. Gather the corpus (`training.ml.corpus`): the standard library's docs, or `--text` files.
2. Train a byte-level BPE tokenizer on it (rustbpe) and save it beside the model.
3. Train a GPT on next-token prediction over random windows of the token stream: AdamW,
   linear warmup then cosine decay, gradients clipped at 1.0, bf16 autocast on CUDA.
4. Every `checkpoint_every` steps save the model with its optimizer and RNG state
   (`training.ml.resume`, as the other stages do), so a run that dies (or is cancelled
   through `on_step`) resumes where it stopped.
5. At the end save the base model (`<out>/model`, a `save_model` directory with its tokenizer)
   and mark the run finished in `<out>/run.json`: the same command with the same config then
   returns at once.

The default (tiny preset, 2048-token vocabulary, 800 steps of 16 x 256 tokens, ~0.3 s a step)
takes under five minutes on two idle CPU cores and reaches a validation loss near 4.2 nats per
token (1.9 bits per byte): samples are English-like text about Python.
"""

import argparse
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from training.ml.configs import PretrainConfig
from training.ml.corpus import TokenStream, corpus_id, load_corpus
from training.ml.device import autocast, pick_device
from training.ml.gpt import GPT, PRESETS, GPTConfig
from training.ml.model_files import load_model, save_model
from training.ml.optim import apply_update, make_optimizer, schedule_lr
from training.ml.progress import OnStep, Progress, report, tqdm_reporter
from training.ml.resume import load_checkpoint, save_checkpoint
from training.ml.sampling import SampleConfig, generate
from training.ml.tokenizer import ChatTokenizer, train_tokenizer

RUN_FILE = "run.json"
MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"
TOKENIZER_FILE = "tokenizer.json"


def run_identity(config: PretrainConfig) -> dict:
    """The fields that decide the trained model: a finished run with the same identity is
    reused. Where and how fast it runs (device, compile, checkpoint and eval cadence) is not
    part of it."""
    skip = {"device", "compile", "checkpoint_every", "eval_every", "eval_batches"}
    values = {k: v for k, v in asdict(config).items() if k not in skip}
    return {**values, "corpus": corpus_id(config.text_paths)}


@dataclass
class PretrainResult:
    model_dir: Path
    tokenizer_path: Path
    step: int
    metrics: dict[str, float]
    finished: bool  # False when on_step asked to stop early
    cached: bool  # True when a finished run was found and nothing was trained


def pretrain(
    config: PretrainConfig,
    *,
    out_dir: str | os.PathLike,
    on_step: OnStep | None = None,
    resume: bool = True,
) -> PretrainResult:
    """Train (or resume, or reuse) the base model in `out_dir`; see the module docstring."""
    out = Path(out_dir)
    identity = run_identity(config)
    run = _read_run(out)
    if run is not None and resume:
        if run["identity"] != identity:
            raise ValueError(
                f"{out} holds a pretraining run with another config; pick another --out "
                "or start over with --fresh"
            )
        if run["status"] == "finished":
            return _result(out, run, cached=True)
    if not resume:
        for name in (RUN_FILE, TOKENIZER_FILE, MODEL_DIR, CHECKPOINT_DIR):
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)

    # 1-2. corpus and tokenizer (trained once per run directory)
    docs = load_corpus(config.text_paths)
    tokenizer_path = out / TOKENIZER_FILE
    if tokenizer_path.exists():
        tokenizer = ChatTokenizer.load(tokenizer_path)
    else:
        tokenizer = train_tokenizer(docs, config.vocab_size, name="pretrain-bpe")
        tokenizer.save(tokenizer_path)
    stream = TokenStream.build(docs, tokenizer, val_fraction=config.val_fraction, seed=config.seed)

    # the model and optimizer as for a fresh run, then the last checkpoint loaded into them
    overrides = {"block_size": config.block_size} if config.block_size else {}
    model_config = GPTConfig.preset(
        config.preset, vocab_size=tokenizer.vocab_size, dropout=config.dropout, **overrides
    )
    model = GPT(model_config).to(device)
    optimizer = make_optimizer(model, lr=config.lr, weight_decay=config.weight_decay)
    checkpoints = out / CHECKPOINT_DIR
    resumed = load_checkpoint(checkpoints, models={"model": model}, optimizers={"model": optimizer})
    step = resumed[0] if resumed else 0
    _write_run(out, identity, "running", step, {})
    block_size = model.config.block_size
    forward = torch.compile(model) if config.compile else model

    def checkpoint(metrics: dict) -> None:
        save_checkpoint(
            checkpoints,
            step=step,
            models={"model": model},
            optimizers={"model": optimizer},
            extra={},
            tokenizer=tokenizer,
            meta={"stage": "pretrain", "metrics": metrics},
        )
        _write_run(out, identity, "running", step, metrics)

    # 3. the loop
    metrics: dict[str, float] = {}
    model.train()
    while step < config.steps:
        lr = schedule_lr(optimizer, step, config.steps, config)
        batch_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + step)  # resumable
        x, y = TokenStream.batch(stream.train, config.batch_size, block_size, batch_rng)
        with autocast(device):
            _, loss = forward(x.to(device), y.to(device))
        grad_norm = apply_update(
            model, optimizer, loss, grad_clip=config.grad_clip, what="pretraining", step=step,
            lr=lr,
        )  # fmt: skip
        step += 1

        metrics = {"loss": loss.item(), "lr": lr, "grad_norm": grad_norm.item()}
        if step % config.eval_every == 0 or step == config.steps:
            val_loss = evaluate(model, stream.val, config, block_size, device)
            if val_loss is not None:
                metrics["val_loss"] = val_loss
        stop = report(on_step, Progress("pretrain", step, config.steps, metrics))
        if step == config.steps:
            break
        # 4. periodic checkpoint, and one before an early stop
        if stop or step % config.checkpoint_every == 0:
            checkpoint(metrics)
        if stop:
            return _result(out, _read_run(out), cached=False)

    # 5. the base model; the resumable checkpoints are no longer needed
    meta = {"stage": "pretrain", "step": step, "metrics": metrics}
    save_model(out / MODEL_DIR, model, tokenizer_path=tokenizer_path, meta=meta)
    _write_run(out, identity, "finished", step, metrics)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return _result(out, _read_run(out), cached=False)


@torch.no_grad()
def evaluate(model: GPT, data: torch.Tensor, config: PretrainConfig, block_size: int, device):
    """Mean loss over fixed validation windows (None when the split is too short)."""
    if data.numel() <= block_size + 1:
        return None
    model.eval()
    rng = torch.Generator().manual_seed(config.seed)
    losses = []
    for _ in range(config.eval_batches):
        x, y = TokenStream.batch(data, config.batch_size, block_size, rng)
        with autocast(device):
            _, loss = model(x.to(device), y.to(device))
        losses.append(loss.item())
    model.train()
    return sum(losses) / len(losses)


def _read_run(out: Path) -> dict | None:
    path = out / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _write_run(out: Path, identity: dict, status: str, step: int, metrics: dict) -> None:
    run = {"identity": identity, "status": status, "step": step, "metrics": metrics}
    tmp = out / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(run, indent=2))
    os.replace(tmp, out / RUN_FILE)


def _result(out: Path, run: dict, *, cached: bool) -> PretrainResult:
    return PretrainResult(
        model_dir=out / MODEL_DIR,
        tokenizer_path=out / TOKENIZER_FILE,
        step=run["step"],
        metrics=run["metrics"],
        finished=run["status"] == "finished",
        cached=cached,
    )


def sample_text(model_dir: Path, prompt: str, *, max_new_tokens: int = 80, seed: int = 0) -> str:
    """Continue `prompt` with the saved model (plain text, not a chat turn)."""
    model, info = load_model(model_dir)
    tokenizer = ChatTokenizer.load(info["tokenizer_path"])
    ids = [tokenizer.eot_id, *tokenizer.encode(prompt)]
    config = SampleConfig(max_new_tokens=max_new_tokens, temperature=0.8, top_k=50, seed=seed)
    samples = generate(model, [ids], config, stop_id=tokenizer.eot_id, pad_id=tokenizer.pad_id)
    return prompt + tokenizer.decode(samples.responses[0])


def main(argv: list[str] | None = None) -> None:
    defaults = PretrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="run directory (model, tokenizer, state)")
    parser.add_argument("--preset", default=defaults.preset, choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--vocab-size", type=int, default=defaults.vocab_size)
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--text", nargs="*", default=[], help="text files or folders to use")
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--fresh", action="store_true", help="discard an earlier run in --out")
    parser.add_argument("--sample", default="The", help="prompt for a sample at the end")
    args = parser.parse_args(argv)
    config = PretrainConfig(
        preset=args.preset,
        vocab_size=args.vocab_size,
        steps=args.steps,
        batch_size=args.batch_size,
        block_size=args.block_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        dropout=args.dropout,
        text_paths=args.text,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        seed=args.seed,
        device=args.device,
        compile=args.compile,
    )
    result = pretrain(
        config, out_dir=args.out, on_step=tqdm_reporter("pretrain"), resume=not args.fresh
    )
    state = "cached" if result.cached else ("finished" if result.finished else "stopped")
    shown = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
    print(f"{state} at step {result.step}: {shown}")
    print(f"model: {result.model_dir}")
    if args.sample:
        print("sample:", sample_text(result.model_dir, args.sample, seed=args.seed))


if __name__ == "__main__":
    main()
