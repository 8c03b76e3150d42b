"""The model versions an inference worker holds in memory, least recently used unloaded first.

A chat with policy-3 and a suggestion from sft-1 may alternate all day: loading a checkpoint
takes seconds, so versions stay loaded within a memory budget (settings.INFERENCE_MEMORY_MB)
instead of being loaded per request. LoRA adapters are merged on load: a model that only
generates needs no adapters, and the merged one is faster.
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch

from training.ml.lora import merge_lora
from training.ml.model_files import load_model
from training.ml.tokenizer import ChatTokenizer
from training.models import ModelVersion


@dataclass
class Loaded:
    name: str
    model: torch.nn.Module
    tokenizer: ChatTokenizer
    megabytes: float


def model_megabytes(model: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20


class LoadedModels:
    def __init__(self, *, device: torch.device, dtype: torch.dtype, memory_mb: float):
        self.device, self.dtype, self.memory_mb = device, dtype, memory_mb
        self.models: OrderedDict[int, Loaded] = OrderedDict()  # version id -> loaded, LRU first

    def get(self, version: ModelVersion, *, in_use=frozenset()) -> Loaded:
        """The loaded version (loading it, and unloading the least recently used versions not
        in `in_use` until it fits). A ValueError when the checkpoint cannot be read."""
        if version.pk in self.models:
            self.models.move_to_end(version.pk)
            return self.models[version.pk]
        model, _ = load_model(version.checkpoint_dir, self.device)
        model = merge_lora(model).to(self.dtype).eval().requires_grad_(False)
        tokenizer = ChatTokenizer.load(version.tokenizer_path)
        loaded = Loaded(version.name, model, tokenizer, model_megabytes(model))
        for pk in list(self.models):
            if self.used_mb() + loaded.megabytes <= self.memory_mb:
                break
            if pk not in in_use:
                del self.models[pk]
        self.models[version.pk] = loaded
        return loaded

    def used_mb(self) -> float:
        return sum(m.megabytes for m in self.models.values())

    def names(self) -> list[str]:
        return [m.name for m in self.models.values()]
