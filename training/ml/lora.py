"""LoRA (Hu et al. 2021) through `peft`: low-rank adapters on a model's linear layers, so SFT, the
reward model and PPO train a few thousand numbers per layer instead of every weight.

`add_lora` injects peft's LoRA layers into the model in place (`peft.inject_adapter_in_model`:
the model stays our GPT / Llama class, only the chosen `nn.Linear`s become peft wrappers) and
freezes everything but the adapters, and the scalar head when the model has one (reward and
value models). A layer computes W x + (alpha / r) * B A dropout(x); B starts at zero, so an
adapted model starts equal to its base. `adapters_disabled` runs the frozen base (PPO's
reference, without a second copy of the weights); `merge_lora` folds B A into W and removes
the wrappers, leaving a plain model to save, export or train in full.

Layers are chosen by name (`target_modules`, matched as peft does: the full module name or its
last components, e.g. "c_attn" or "q_proj"); by default every `nn.Linear` inside the repeated
transformer blocks (a module name with a numeric index: `transformer.h.3.mlp.c_fc`,
`model.layers.3.self_attn.q_proj`), never the output head (tied to the token embeddings) nor
the scalar head.

Dropout > 0 is safe with our attention path: peft applies it to the adapter branch's input
only (B A dropout(x)), apart from SDPA's attention dropout, and as an `nn.Dropout` it follows
train() / eval(): PPO runs in eval mode, so its ratio-1 check holds, and merging is exact
(dropout only acts in training). It costs one more activation per adapted layer in training
(with 0, peft uses an identity).

    add_lora(model, LoraSettings(r=8, alpha=16))
    ...  # train: make_optimizer(model) picks up only the parameters that require grad
    merge_lora(model)  # a plain model again
"""

import copy
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

# Wrappers that must never be adapted: the LM head is tied to the token embeddings (merging
# into it would change them too) and the scalar head is trained in full.
HEADS = ("lm_head", "score_head")


@dataclass
class LoraSettings:
    r: int = 8  # rank of B A
    alpha: float = 16.0  # the update is scaled by alpha / r
    dropout: float = 0.0  # on the adapter branch's input, in training only
    target_modules: list[str] | None = None  # None: every Linear in the transformer blocks

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"LoRA rank r must be a positive int, got {self.r!r}")
        if self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_config(cls, config) -> "LoraSettings | None":
        """The settings of a training config (lora_rank, lora_alpha, lora_dropout,
        lora_target_modules), or None for full fine-tuning (lora_rank 0)."""
        if config.lora_rank < 0:
            raise ValueError(
                f"lora_rank must be 0 (full fine-tuning) or more, got {config.lora_rank}"
            )
        if config.lora_rank == 0:
            return None
        return cls(
            r=config.lora_rank,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            target_modules=config.lora_target_modules,
        )


def _tuner_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    # No peft layer can exist before peft is imported: checking first keeps the 2.5 s import
    # of peft (and of transformers, which it imports) off every path that never uses LoRA.
    if "peft" not in sys.modules:
        return []
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]


def has_lora(model: nn.Module) -> bool:
    """Whether `model` carries LoRA adapters (added by `add_lora`, not yet merged)."""
    return bool(_tuner_layers(model))


def target_names(model: nn.Module, target_modules: list[str] | None = None) -> list[str]:
    """Full names of the `nn.Linear` modules `target_modules` selects (see the module
    docstring). A name that selects nothing, or a head, is a ValueError."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if target_modules is None:
        return [
            n for n in linears
            if any(part.isdigit() for part in n.split(".")) and n.split(".")[-1] not in HEADS
        ]  # fmt: skip
    chosen = []
    for target in target_modules:
        found = [n for n in linears if n == target or n.endswith("." + target)]
        if not found:
            raise ValueError(
                f"LoRA target {target!r} names no nn.Linear of the model; its linear layers "
                f"include {', '.join(sorted({n.split('.')[-1] for n in linears}))}"
            )
        heads = [n for n in found if n.split(".")[-1] in HEADS]
        if heads:
            raise ValueError(f"LoRA cannot adapt the output or scalar head ({', '.join(heads)})")
        chosen += [n for n in found if n not in chosen]
    return chosen


def add_lora(model: nn.Module, settings: LoraSettings, *, seed: int | None = None) -> nn.Module:
    """Inject LoRA adapters into `model` in place and freeze all but them (and `score_head`,
    when the model has one); returns the model. With `seed`, A's random start comes from it and
    the global RNG is left as it was, so a run is reproducible whatever ran before it."""
    if has_lora(model):
        raise ValueError("the model already has LoRA adapters: merge_lora it first")
    from peft import LoraConfig, inject_adapter_in_model

    names = target_names(model, settings.target_modules)
    if not names:
        raise ValueError("the model has no nn.Linear inside numbered blocks to adapt")
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=names,  # full names: matched exactly, nothing else
        bias="none",
    )
    with torch.random.fork_rng(devices=[], enabled=seed is not None):  # peft inits on the CPU
        if seed is not None:
            torch.manual_seed(seed)
        inject_adapter_in_model(config, model)  # also freezes every non-adapter parameter
    if getattr(model, "score_head", None) is not None:
        model.score_head.requires_grad_(True)
    for p in model.parameters():
        if not p.requires_grad:
            p.grad = None  # a stale gradient of a now frozen weight would count in grad clipping
    return model


def lora_settings(model: nn.Module) -> LoraSettings | None:
    """The settings `model`'s adapters were added with (target_modules as full names), or None
    when it has none: what a checkpoint stores to rebuild the same model before loading."""
    if not has_lora(model):
        return None
    config = model.peft_config["default"]
    return LoraSettings(
        r=config.r,
        alpha=float(config.lora_alpha),
        dropout=float(config.lora_dropout),
        target_modules=sorted(config.target_modules),
    )


def settings_dict(model: nn.Module) -> dict | None:
    """`lora_settings(model)` as JSON, or None."""
    settings = lora_settings(model)
    return asdict(settings) if settings is not None else None


@contextmanager
def adapters_disabled(model: nn.Module):
    """Inside the block `model` computes its frozen base (peft's per-layer switch), e.g. PPO's
    reference from the policy itself. requires_grad flags are restored on exit (peft's switch
    turns the adapters' on)."""
    layers = [m for _, m in _tuner_layers(model)]
    if not layers:
        raise ValueError("the model has no LoRA adapters to disable")
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield model
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for p, flag in flags:
            p.requires_grad_(flag)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold each adapter into its layer's weight (peft's `merge`) and put the plain layer back,
    in place; returns `model`, now without adapters and with every parameter its own tensor
    (not shared with a model it was copied from by `frozen_base_copy`) requiring grad, as a
    freshly loaded model. A model without adapters is returned unchanged."""
    layers = _tuner_layers(model)
    if not layers:
        return model
    _own_tensors(model)  # peft merges in place: never into a tensor another model holds
    for name, layer in layers:
        layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.get_base_layer())
    del model.peft_config
    model.requires_grad_(True)
    return model


def _own_tensors(model: nn.Module) -> None:
    """Give `model` a copy of each parameter, keeping its ties (GPT's lm_head / wte) as ties."""
    fresh: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if id(p) not in fresh:
                fresh[id(p)] = nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
            setattr(module, name, fresh[id(p)])


def frozen_base_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` that holds `model`'s base parameters themselves (no memory) and copies
    of its adapters and scalar head, the parts LoRA trains. The modules are new, so adapters
    added to the copy are not in `model`. The shared base must stay frozen in both: PPO's value
    model shares the reward model's base this way, the EMA the policy's, and a LoRA reward
    ensemble's members their start's (`training.ml.ensemble_model`)."""
    memo = {id(p): p for n, p in model.named_parameters() if not lora_trained(n)}
    return copy.deepcopy(model, memo)


def lora_trained(name: str) -> bool:
    """Whether the parameter or state-dict entry `name` is one LoRA trains (an adapter or the
    scalar head), not part of the frozen base."""
    return name.startswith("score_head.") or ".lora_" in name
