"""The model families behind one interface: each architecture is a config dataclass and a
module class with the same methods (`forward`, `hidden_states`, `scores`, `with_scalar_head`),
so sampling, SFT, the reward model and PPO never ask which family they hold.

Checkpoints name their architecture (`"arch"` in config.json); `build_model` makes an
untrained model of it and `arch_of` names the one a model is.
"""

from torch import nn

from training.ml.gpt import GPT, CausalLM, GPTConfig
from training.ml.llama import Llama, LlamaConfig

# What the training loops take: any registered family (the base class both share).
LanguageModel = CausalLM

ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "gpt2": (GPTConfig, GPT),
    "llama": (LlamaConfig, Llama),  # Llama, Qwen2, Mistral, SmolLM
}
DEFAULT_ARCH = "gpt2"  # checkpoints written before architectures had names


def arch_of(model: nn.Module) -> str:
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper
    for name, (_, cls) in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered architecture")


def build_model(arch: str, config: dict) -> nn.Module:
    """An untrained model of architecture `arch` from its config dict (unknown keys refused)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    config_cls, model_cls = ARCHITECTURES[arch]
    return model_cls(config_cls.from_dict(config))


def with_scalar_head(model: nn.Module) -> nn.Module:
    """A copy of `model` with a fresh zero scalar head: the reward model from the SFT model,
    the value model from the policy."""
    return type(model).with_scalar_head(model)
