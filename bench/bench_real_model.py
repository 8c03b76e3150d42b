"""SmolLM2-135M-Instruct (the shipped GGUF) through our code against transformers: sampling and
training steps (PPO memory: bench_ppo_memory.py).

    python bench/bench_real_model.py                  # both parts: minutes on a 2-core CPU
    python bench/bench_real_model.py --sampling       # + --profile: where each decode's time goes
    python bench/bench_real_model.py --sampling --sampling-dtype bfloat16   # both in bf16
    python bench/bench_real_model.py --training --modes lora --batch-size 4 --block-size 256
    python bench/bench_real_model.py --sampling --training --model random --device cuda  # GPU

--sampling: our KV-cache sampler (`training.ml.sampling.generate`) against transformers'
  `generate` on the same weights (ours imported by `import_checkpoint`, theirs by transformers'
  own GGUF loader), the same chat prompts (real questions from the demo's data, rendered with
  the model's template, left-padded at batch > 1) and the same number of new tokens: nothing
  stops early (our stop id never occurs, their eos is switched off), greedy and T=0.7, batch 1
  and 8. Greedy outputs must be the same tokens. At batch 1 each new token reads every weight
  once (the tied embedding once, as the LM head), so bytes/token x tokens/s is the memory
  bandwidth the decode implies, printed beside what a plain copy and a plain sum reach here.
--training: optimizer steps (AdamW, ours `make_optimizer` for both) on the same batches of
  real text, full fine-tuning and LoRA (peft on the same targets and rank: ours `add_lora`,
  theirs `get_peft_model`). Ours is `model(x[:, :-1], x[:, 1:])`, theirs `labels=`.

Timed parts run ours and theirs in alternating rounds and report the best and median round of
each, so load from other processes on a shared machine shows as spread, not as a bias; the
load average at the start (before this run adds its own) says how busy the machine was.
`--model random` builds SmolLM2-135M's architecture with random weights (theirs from our state
dict): the same speed, for a machine without the shipped wheel (the GPU check).
"""

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_model import hf_step, ours_step, timed_round  # noqa: E402  (the same training step)

from training.ml.device import autocast, pick_device  # noqa: E402
from training.ml.llama import Llama, LlamaConfig  # noqa: E402
from training.ml.sampling import SampleConfig, generate, left_pad  # noqa: E402

# SmolLM2-135M-Instruct's config.json, for --model random.
SMOLLM2_135M = dict(
    vocab_size=49152, block_size=8192, n_layer=30, n_head=9, n_kv_head=3, n_embd=576,
    intermediate_size=1536, rope_theta=100000.0, tie_embeddings=True,
)  # fmt: skip
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEMO_DATA = ROOT / "labeling" / "demo" / "python_stdlib.jsonl"


# -- the two models on the same weights ----------------------------------------------------------


class Pair:
    """Ours and transformers' model on the same weights, the tokenizer (None for --model
    random) and the pad id."""

    def __init__(self, which: str, device: torch.device):
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging

        logging.disable_progress_bar()
        if which == "shipped":
            from training.ml.model_import import import_checkpoint
            from training.ml.shipped import shipped_model_path

            path = shipped_model_path()
            imported = import_checkpoint(path)
            self.ours, self.tokenizer = imported.model, imported.tokenizer
            self.pad_id = self.tokenizer.pad_id
            self.theirs = AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name, dtype=torch.float32
            )
        else:
            from transformers import LlamaConfig as HFLlamaConfig
            from transformers import LlamaForCausalLM

            from training.ml.hf_models import hf_config_for

            torch.manual_seed(0)
            self.ours, self.tokenizer, self.pad_id = Llama(LlamaConfig(**SMOLLM2_135M)), None, 2
            hf_config = hf_config_for(self.ours, bos_id=1, eos_id=2, pad_id=2)
            hf_config.pop("torch_dtype")
            self.theirs = LlamaForCausalLM(HFLlamaConfig(**hf_config))
            self.theirs.load_state_dict(self.ours.state_dict())
        self.theirs.generation_config.eos_token_id = None  # never stop early: N tokens each
        self.ours.to(device)
        self.theirs.to(device)
        self.device = device

    def questions(self, n: int) -> list[str]:
        """The first n distinct questions of the demo's data."""
        with DEMO_DATA.open() as f:
            return [json.loads(line)["prompt"] for line, _ in zip(f, range(n), strict=False)]

    def prompts(self, n: int) -> list[list[int]]:
        """n chat prompts in the model's format (random ids of similar lengths when random)."""
        if self.tokenizer is None:
            g = torch.Generator().manual_seed(0)
            return [torch.randint(3, 49152, (30 + i % 13,), generator=g).tolist() for i in range(n)]
        return [
            self.tokenizer.render_prompt([{"role": "user", "content": q}])
            for q in self.questions(n)
        ]

    def text_batches(self, count: int, batch_size: int, block_size: int) -> list[torch.Tensor]:
        """`count` batches (B, block_size + 1) of the demo's dialogues, one token stream."""
        need = count * batch_size * (block_size + 1)
        if self.tokenizer is None:
            stream = torch.randint(0, 49152, (need,), generator=torch.Generator().manual_seed(0))
        else:
            ids: list[int] = []
            with DEMO_DATA.open() as f:
                for line in f:
                    row = json.loads(line)
                    turns = [{"role": "user", "content": row["prompt"]},
                             {"role": "assistant", "content": row["response"]}]  # fmt: skip
                    ids += self.tokenizer.render_dialogue(turns)[0]
                    if len(ids) >= need:
                        break
            stream = torch.tensor(ids[:need])
        rows = stream.view(count, batch_size, block_size + 1)
        return [b.to(self.device) for b in rows]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def load_average() -> float:
    return os.getloadavg()[0]


def describe(device: torch.device, pair: Pair, which: str) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return (
        f"device {device} ({name}, {torch.get_num_threads()} threads), SmolLM2-135M "
        f"({'shipped Q4_1 GGUF, dequantized' if which == 'shipped' else 'random weights'}): "
        f"{pair.ours.num_params() / 1e6:.1f}M params, torch {torch.__version__}"
    )


# -- 1. sampling ----------------------------------------------------------------------------------


def ours_generate(pair: Pair, prompts, new_tokens: int, temperature: float) -> list[list[int]]:
    config = SampleConfig(max_new_tokens=new_tokens, temperature=temperature, seed=0)
    return generate(pair.ours, prompts, config, stop_id=-1, pad_id=pair.pad_id).responses


def theirs_generate(pair: Pair, prompts, new_tokens: int, temperature: float) -> list[list[int]]:
    ids, mask = left_pad(prompts, pair.pad_id, pair.device)  # (B, P)
    if temperature == 0:
        how = dict(do_sample=False)
    else:  # plain softmax(logits / T): no top-k (transformers' default is 50) nor top-p cut
        how = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    torch.manual_seed(0)
    with torch.no_grad(), autocast(pair.device):
        out = pair.theirs.eval().generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
            pad_token_id=pair.pad_id, **how,
        )  # fmt: skip
    return out[:, ids.size(1) :].tolist()


def memory_bandwidth(device: torch.device, mib: int = 512, repeats: int = 5) -> dict[str, float]:
    """Bytes/s, best of `repeats`, on arrays far larger than any cache: a copy (bytes read +
    written), a sum (read) and the decode's own kernel, a (1, C) x (C, N) product with our
    weights' (N, C) layout (read)."""
    a = torch.ones(mib * 2**20 // 4, device=device)
    b = torch.empty_like(a)
    w = a[: a.numel() // 576 * 576].view(-1, 576)  # (N, C), a Linear weight of SmolLM2's width
    x = torch.ones(1, 576, device=device)
    runs = {
        "copy": (lambda: b.copy_(a), 2 * a.nbytes),
        "sum": (lambda: a.sum(), a.nbytes),
        "1-row product": (lambda: torch.nn.functional.linear(x, w), w.nbytes),
    }
    best = {}
    for name, (fn, nbytes) in runs.items():
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            best[name] = max(best.get(name, 0.0), nbytes / (time.perf_counter() - start))
    return best


def profile_decode(pair: Pair, prompts, new_tokens: int, rows: int) -> None:
    """The ops that take each side's time in one greedy call (prefill and decode)."""
    from torch.profiler import ProfilerActivity, profile

    matmuls = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")
    for name, fn in (("ours", ours_generate), ("transformers", theirs_generate)):
        activities = [ProfilerActivity.CPU]
        if pair.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        with profile(activities=activities) as prof:
            fn(pair, prompts, new_tokens, 0.0)
            sync(pair.device)
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        in_matmul = sum(e.self_cpu_time_total for e in events if e.key in matmuls)
        print(
            f"  {name}: {total / 1e6:.2f} s of op time, matrix products {in_matmul / total:.0%};"
            f" top ops by self CPU time:"
        )
        for e in events[:rows]:
            print(
                f"    {e.key:<42} {e.self_cpu_time_total / 1e3:9.1f} ms "
                f"{e.self_cpu_time_total / total:6.1%}  {e.count:6d} calls"
            )


def bench_sampling(args, pair: Pair) -> None:
    batch_sizes, temperatures = args.batch_sizes, (0.0, 0.7)
    prompts = pair.prompts(max(batch_sizes))
    contenders = {"ours": ours_generate, "transformers": theirs_generate}
    for fn in contenders.values():  # warm up
        fn(pair, prompts[:2], 4, 0.0)
    cases = [(b, t) for b in batch_sizes for t in temperatures]
    # (b, t, name, new tokens) -> seconds per call; 1 new token is the prefill alone
    times = {(*case, name, n): [] for case in cases for name in contenders
             for n in (1, args.new_tokens)}  # fmt: skip
    outputs = {}
    for _ in range(args.rounds):  # alternate, so both see the same machine load
        for b, t in cases:
            for name, fn in contenders.items():
                for n in (1, args.new_tokens):
                    sync(pair.device)
                    start = time.perf_counter()
                    out = fn(pair, prompts[:b], n, t)
                    sync(pair.device)
                    times[(b, t, name, n)].append(time.perf_counter() - start)
                    assert all(len(r) == n for r in out), f"{name} stopped early"
                outputs[(b, t, name)] = out

    lengths = [len(p) for p in prompts]
    n = args.new_tokens
    print(
        f"sampling: {n} new tokens per row, prompts of {min(lengths)}-{max(lengths)} tokens "
        f"(left-padded), {args.rounds} alternating rounds. tokens/s best (median) of the whole "
        f"call; prefill = the best call for 1 token; decode = the other {n - 1} tokens per row, "
        f"from the best calls"
    )
    speed = {}
    for b, t in cases:
        cells, ratios = [], []
        for name in contenders:
            whole, first = times[(b, t, name, n)], times[(b, t, name, 1)]
            speed[(b, t, name)] = b * n / min(whole)
            decode = b * (n - 1) / (min(whole) - min(first))
            cells.append(
                f"{name} {b * n / min(whole):6.1f} ({b * n / statistics.median(whole):6.1f})"
                f" prefill {min(first) * 1e3:5.0f} ms decode {decode:6.1f}"
            )
            ratios.append(min(whole))
        label = "greedy" if t == 0 else f"T={t}"
        line = f"  batch {b:2d} {label:<7} {' | '.join(cells)}"
        line += f" | ours/theirs {ratios[1] / ratios[0]:.2f}x"
        if t == 0:
            same = outputs[(b, t, "ours")] == outputs[(b, t, "transformers")]
            line += f", greedy tokens {'identical' if same else 'DIFFER'}"
        print(line)

    n_params = pair.ours.num_params()  # the tied embedding / LM head counted once
    bytes_per_token = n_params * next(pair.ours.parameters()).element_size()
    print(
        f"batch 1 decode reads every weight once per token: {n_params / 1e6:.1f}M params x "
        f"{bytes_per_token / n_params:.0f} bytes = {bytes_per_token / 1e6:.0f} MB/token"
    )
    for name in contenders:
        if (1, 0.0, name) in speed:
            whole, first = times[(1, 0.0, name, n)], times[(1, 0.0, name, 1)]
            decode = (n - 1) / (min(whole) - min(first))
            print(
                f"  {name:<12} greedy decode {decode:6.1f} tokens/s x {bytes_per_token / 1e6:.0f}"
                f" MB = {decode * bytes_per_token / 1e9:5.1f} GB/s implied"
            )
    bandwidth = memory_bandwidth(pair.device)
    print(
        "  this machine, 512 MiB arrays, best of 5: "
        + ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in bandwidth.items())
        + f" (the last is the decode's kernel: {bandwidth['1-row product'] / bytes_per_token:.0f}"
        " tokens/s if a token cost nothing else)"
    )
    if args.profile:
        b = max(batch_sizes)
        print(f"profile: one greedy call, batch {b}, {args.new_tokens} new tokens")
        profile_decode(pair, prompts[:b], args.new_tokens, rows=args.profile_rows)


# -- 2. training steps ----------------------------------------------------------------------------


def add_adapters(pair: Pair, rank: int) -> None:
    """The same LoRA on both: rank r, alpha 2r, every projection of every block, no dropout."""
    from peft import LoraConfig, get_peft_model

    from training.ml.lora import LoraSettings, add_lora

    add_lora(pair.ours, LoraSettings(r=rank, alpha=2 * rank, target_modules=LORA_TARGETS), seed=0)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                        target_modules=LORA_TARGETS, bias="none")  # fmt: skip
    pair.theirs = get_peft_model(pair.theirs, config)


def bench_training(args, pair: Pair) -> None:
    from training.ml.optim import make_optimizer

    batches = pair.text_batches(args.steps + 1, args.batch_size, args.block_size)
    tokens = args.batch_size * args.block_size
    print(
        f"training: batch {args.batch_size} x {args.block_size} tokens of the demo's dialogues, "
        f"AdamW, {args.rounds} alternating rounds of {args.steps} step(s); tokens/s best (median)"
    )
    for mode in args.modes:  # full first: LoRA then wraps the same models
        if mode == "lora":
            add_adapters(pair, args.lora_rank)
        runs = {}
        for name, model, step_fn in (("ours", pair.ours, ours_step),
                                     ("transformers", pair.theirs, hf_step)):  # fmt: skip
            model.train()
            optimizer = make_optimizer(model, lr=1e-5)
            timed_round(step_fn, model, optimizer, batches[:1], pair.device)  # warm up
            runs[name] = (model, step_fn, optimizer, [])
        for _ in range(args.rounds):
            for model, step_fn, optimizer, times in runs.values():
                times.append(timed_round(step_fn, model, optimizer, batches[1:], pair.device))
        trained = sum(p.numel() for p in pair.ours.parameters() if p.requires_grad)
        label = f"LoRA r={args.lora_rank}" if mode == "lora" else "full"
        cells = []
        for name, (_, _, _, times) in runs.items():
            cells.append(
                f"{name} {tokens / min(times):7.0f} ({tokens / statistics.median(times):7.0f})"
                f" {min(times):5.2f} s/step"
            )
        best = min(runs["transformers"][3]) / min(runs["ours"][3])
        median = statistics.median(runs["transformers"][3]) / statistics.median(runs["ours"][3])
        print(
            f"  {label:<9} ({trained / 1e6:6.2f}M trained) {'   '.join(cells)}   ours/theirs "
            f"{best:.2f}x best, {median:.2f}x median"
        )
        del runs
        gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sampling", action="store_true")
    parser.add_argument("--training", action="store_true")
    parser.add_argument("--model", default="shipped", choices=("shipped", "random"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32, help="sampling: per row")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--profile", action="store_true", help="sampling: profile both")
    parser.add_argument("--sampling-dtype", default="float32", choices=("float32", "bfloat16"),
                        help="sampling: both models held in this precision (ours: the sampling "
                             "runs' SAMPLING_DTYPE)")  # fmt: skip
    parser.add_argument("--profile-rows", type=int, default=10)
    parser.add_argument("--modes", nargs="+", default=["full", "lora"], choices=("full", "lora"))
    parser.add_argument("--batch-size", type=int, default=4, help="training")
    parser.add_argument("--block-size", type=int, default=256, help="training")
    parser.add_argument("--steps", type=int, default=1, help="training: steps per round")
    parser.add_argument("--lora-rank", type=int, default=16)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures as they come, also into a file
    if not (args.sampling or args.training):
        args.sampling = args.training = True
    print(f"load average at start {load_average():.2f}")

    device = pick_device(args.device)
    start = time.perf_counter()
    pair = Pair(args.model, device)
    seconds = time.perf_counter() - start
    print(f"{describe(device, pair, args.model)}; both loaded in {seconds:.0f} s")
    if args.sampling:
        dtype = getattr(torch, args.sampling_dtype)
        pair.ours.to(dtype)
        pair.theirs.to(dtype)
        bench_sampling(args, pair)
        pair.ours.to(torch.float32)
        pair.theirs.to(torch.float32)  # (`.float()` is refused for a model from a GGUF)
    if args.training:
        bench_training(args, pair)


if __name__ == "__main__":
    main()
