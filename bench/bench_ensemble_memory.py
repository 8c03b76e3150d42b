"""Parameter memory and size on disk of a LoRA reward-model ensemble: members sharing one frozen
base (what `train_reward_ensemble` makes with `lora_rank` > 0, `training.ml.ensemble_model`)
against the same members merged into whole models (what it made before bases were shared).

    python bench/bench_ensemble_memory.py                 # tiny GPT (vocab 4096) and SmolLM2
    python bench/bench_ensemble_memory.py --models tiny --members 4 --rank 16

The members are built as training builds them (`frozen_base_copy` of the reward model, LoRA
added with the member's seed) with random adapters, so merging changes every adapted weight.
"Memory" counts each parameter tensor once (`parameters()` yields a shared one once), in bytes
at the model's dtype; "disk" is the safetensors files `save_model` writes; "load" the seconds
`load_model` takes to read the directory back. The shared ensemble is checked to load scoring
exactly as it was saved.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.ml.architectures import with_scalar_head  # noqa: E402
from training.ml.ensemble_model import RewardEnsemble  # noqa: E402
from training.ml.gpt import GPT, GPTConfig  # noqa: E402
from training.ml.lora import LoraSettings, add_lora, frozen_base_copy, merge_lora  # noqa: E402
from training.ml.model_files import load_model, save_model  # noqa: E402


def reward_model(name: str):
    if name == "tiny":
        torch.manual_seed(0)
        return GPT.with_scalar_head(GPT(GPTConfig.preset("tiny", vocab_size=4096)))
    from training.ml.model_import import import_checkpoint
    from training.ml.shipped import shipped_model_path

    return with_scalar_head(import_checkpoint(shipped_model_path()).model)


def lora_members(model, n: int, rank: int) -> list:
    members = []
    for i in range(n):
        member = add_lora(frozen_base_copy(model), LoraSettings(r=rank), seed=i)
        generator = torch.Generator().manual_seed(i)
        with torch.no_grad():  # as if trained: B is no longer zero
            for p in member.parameters():
                if p.requires_grad:
                    p.normal_(0, 0.02, generator=generator)
        members.append(member)
    return members


def parameter_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def disk_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*.safetensors"))


def measure(name: str, ensemble: RewardEnsemble, tmp: Path, idx: torch.Tensor) -> dict:
    directory = save_model(tmp / name, ensemble, tokenizer_path=None)
    start = time.perf_counter()
    loaded, _ = load_model(directory)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        same = torch.equal(loaded.member_scores(idx), ensemble.member_scores(idx))
    return {"memory": parameter_bytes(loaded), "disk": disk_bytes(directory), "load": seconds,
            "same": same}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"],
                        choices=["tiny", "smollm2"])  # fmt: skip
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args()
    print(f"n = {args.members} LoRA members, r = {args.rank}; MB = 10^6 bytes")
    print(f"{'model':8} {'layout':7} {'memory MB':>10} {'disk MB':>9} {'load s':>7}  "
          "scores after load")  # fmt: skip
    for name in args.models:
        start = time.perf_counter()
        model = reward_model(name)
        built = time.perf_counter() - start
        members = lora_members(model, args.members, args.rank)
        layouts = {"shared": RewardEnsemble(members),
                   "merged": RewardEnsemble([merge_lora(frozen_base_copy(m)) for m in members])}
        idx = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator())
        with tempfile.TemporaryDirectory() as tmp:
            figures = {layout: measure(layout, ensemble, Path(tmp), idx)
                       for layout, ensemble in layouts.items()}  # fmt: skip
        for layout, f in figures.items():
            print(f"{name:8} {layout:7} {f['memory'] / 1e6:10.2f} {f['disk'] / 1e6:9.2f} "
                  f"{f['load']:7.2f}  {'exactly as saved' if f['same'] else 'changed'}")
        shared, merged = figures["shared"], figures["merged"]
        print(f"{name:8} merged / shared: memory {merged['memory'] / shared['memory']:.2f}x, "
              f"disk {merged['disk'] / shared['disk']:.2f}x (one model: "
              f"{parameter_bytes(model) / 1e6:.2f} MB; built in {built:.1f} s)")


if __name__ == "__main__":
    main()
