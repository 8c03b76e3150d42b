"""The config a run of each kind takes: its fields, types, defaults and named presets.

Plain Python (no torch), so the web process can render and check a form without loading the ML
stack. The job code hands the cleaned dict to the matching `training.ml` config dataclass
(`SFTConfig(**config)`), so the field names are theirs. Defaults are the tiny CPU sizes (the whole
loop in minutes on a laptop); the `gpu` preset names sizes for a GPU worker.

    config = clean_config("sft", {"epochs": "3"}, preset="tiny")   # -> full dict, typed
"""

from dataclasses import dataclass

from training.errors import Invalid


@dataclass(frozen=True)
class Field:
    type: type  # int, float or bool
    default: object
    help: str = ""
    optional: bool = False  # None (an empty form field) is allowed
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    internal: bool = False  # set by the code that makes the run, not shown on a start form


def _f(type_, default, help="", **kw):
    return Field(type_, default, help, **kw)


POSITIVE = {"minimum": 1}
# LoRA (training.ml.lora): adapters on every Linear of the blocks; the base stays frozen, and
# PPO's reference is the policy with its adapters off (no second copy of the weights).
LORA = {
    "lora_rank": _f(int, 0, "LoRA rank (0: full fine-tuning)", minimum=0, maximum=1024),
    "lora_alpha": _f(float, 16.0, "LoRA scale: alpha / rank", minimum=0),
    "lora_dropout": _f(float, 0.0, "dropout on the adapters' input", minimum=0, maximum=0.9),
}
FIELDS: dict[str, dict[str, Field]] = {
    "pretrain": {
        "preset": Field(
            str,
            "tiny",
            "model size",
            choices=("tiny", "small", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"),
        ),
        # The defaults of training.ml.pretrain.PretrainConfig: on the demo's stdlib corpus a
        # 2048 vocabulary learns faster per second than 4096, and 800 steps is where the tiny
        # model starts to copy names from the prompt (what the demo's rule rewards).
        "vocab_size": _f(int, 2048, "tokenizer size", minimum=261, maximum=200_000),
        "steps": _f(int, 800, **POSITIVE),
        "batch_size": _f(int, 16, **POSITIVE),
        "lr": _f(float, 3e-3, "peak learning rate", minimum=0),
        "warmup_steps": _f(int, 50, minimum=0),
        "eval_every": _f(int, 100, **POSITIVE),
        "checkpoint_every": _f(int, 100, **POSITIVE),
        "seed": _f(int, 0),
    },
    "sft": {
        "epochs": _f(int, 3, **POSITIVE),
        "max_steps": _f(int, None, "overrides epochs", optional=True, minimum=1),
        "batch_size": _f(int, 8, **POSITIVE),
        "lr": _f(float, 3e-4, "peak learning rate", minimum=0),
        "warmup_steps": _f(int, 10, minimum=0),
        "val_fraction": _f(float, 0.1, "held-out share of prompts", minimum=0, maximum=0.9),
        "eval_every": _f(int, 50, "steps between validation losses (0: at the end)", minimum=0),
        "checkpoint_every": _f(int, 50, **POSITIVE),
        "seed": _f(int, 0),
        **LORA,
    },
    "reward": {
        # A round of a few hundred ranked prompts is ~30 steps an epoch: at 2 epochs and 1e-4
        # the tiny reward model stayed at chance even on its training pairs (loss ln 2); 4 and
        # 3e-4 learn the demo's rule (held-out accuracy 0.95-1.0).
        "epochs": _f(int, 4, **POSITIVE),
        "max_steps": _f(int, None, "overrides epochs", optional=True, minimum=1),
        "batch_size": _f(int, 8, "prompts per step, each with all its pairs", **POSITIVE),
        "lr": _f(float, 3e-4, minimum=0),
        "warmup_steps": _f(int, 5, minimum=0),
        "val_fraction": _f(float, 0.2, "held-out share of prompts", minimum=0, maximum=0.9),
        # The epochs are a ceiling: the held-out pairs pick when to stop and which weights to
        # keep (training.ml.reward, "Early stopping"); the tiny reward model's training loss
        # falls to ~0.1 on preferences whose held-out accuracy stays at the baseline.
        "eval_every": _f(int, 10, "steps between held-out evaluations (0: at the end)", minimum=0),
        "keep_best": _f(bool, True, "end on the weights of the best held-out accuracy"),
        "patience": _f(int, 3, "early stopping: evaluations without a better held-out accuracy "
                               "before training stops (0: never)", minimum=0),
        # Regularizers (measured in bench/bench_reward_generalization.py): AdamW's decoupled
        # weight decay, and reward centering (training.ml.reward, "Reward centering").
        "weight_decay": _f(float, 0.0, "AdamW weight decay", minimum=0),
        "center_coef": _f(float, 0.0, "reward centering: weight of mean(r^2) in the loss",
                          minimum=0),
        "checkpoint_every": _f(int, 50, **POSITIVE),
        "skip_invalid": _f(bool, True, "skip rankings that are not a full ordering"),
        "seed": _f(int, 0),
        **LORA,
    },
    "ppo": {
        "iterations": _f(int, 20, **POSITIVE),
        "prompts_per_iteration": _f(int, 16, **POSITIVE),
        "max_new_tokens": _f(int, 32, **POSITIVE),
        "temperature": _f(float, 1.0, minimum=0.01),
        "ppo_epochs": _f(int, 4, **POSITIVE),
        "minibatch_size": _f(int, 8, **POSITIVE),
        "lr": _f(float, 2e-5, minimum=0),
        "value_lr": _f(float, 2e-5, minimum=0),
        "kl_coef": _f(float, 0.05, "beta: per-token KL penalty to the SFT model", minimum=0),
        "adaptive_kl": _f(bool, False),
        "ptx_coef": _f(float, 0.0, "PPO-ptx: weight of the LM loss on demonstrations", minimum=0),
        # The held-out reward (training.ml.ppo_heldout): measured on the project's evaluation
        # prompts, which PPO never trains on; the policy's own score says nothing of them.
        "kl_budget": _f(float, None, "stop once the KL to the SFT model (nats per reply) "
                                     "exceeds this", optional=True, minimum=0),
        "eval_every": _f(int, 5, "iterations between held-out reward evaluations (0: after "
                                 "the last only)", minimum=0),
        "eval_prompts": _f(int, 64, "held-out prompts evaluated (the first ones)", **POSITIVE),
        "keep_best": _f(bool, False, "end on the weights of the best held-out reward, not the "
                                     "last ones"),
        "checkpoint_every": _f(int, 5, **POSITIVE),
        "seed": _f(int, 0),
        **LORA,
    },
    "sample": {
        "num_prompts": _f(
            int, 32, "prompts to sample for (those not yet sampled first)", **POSITIVE
        ),
        "max_new_tokens": _f(int, 48, **POSITIVE),
        "temperature": _f(float, 1.0, minimum=0),
        "top_k": _f(int, 0, "0: no cut", minimum=0),
        "top_p": _f(float, 0.95, minimum=0.01, maximum=1.0),
        "priority": _f(int, 0, "queue priority of the ranking tasks"),
        "seed": _f(int, 0),
        # A blind comparison's replies (`training.services.evaluation`): one reply per
        # evaluation prompt of that labeling.ComparisonBatch, not K per prompt for ranking.
        "comparison": _f(int, None, "comparison batch", optional=True, minimum=1,
                         internal=True),
    },
}

PRESETS: dict[str, dict[str, dict]] = {
    "tiny": {kind: {} for kind in FIELDS},
    # A real model (SmolLM2-135M and up) on a CPU or a small GPU: LoRA adapters, batches a
    # laptop holds, replies long enough for a real answer.
    "lora": {
        "pretrain": {},
        "sft": {"lora_rank": 16, "lora_alpha": 32.0, "lr": 2e-4, "epochs": 2, "batch_size": 4,
                "warmup_steps": 5, "eval_every": 0},
        "reward": {"lora_rank": 16, "lora_alpha": 32.0, "lr": 1e-4, "epochs": 2,
                   "batch_size": 4},
        "ppo": {"lora_rank": 16, "lora_alpha": 32.0, "lr": 5e-5, "value_lr": 5e-5,
                "iterations": 10, "prompts_per_iteration": 8, "minibatch_size": 4,
                "max_new_tokens": 64, "temperature": 0.8},
        "sample": {"num_prompts": 32, "max_new_tokens": 128, "temperature": 0.8},
    },
    "gpu": {
        "pretrain": {
            "preset": "gpt2",
            "vocab_size": 50257,
            "steps": 20_000,
            "batch_size": 32,
            "lr": 6e-4,
            "warmup_steps": 500,
            "eval_every": 500,
            "checkpoint_every": 1000,
        },
        "sft": {
            "epochs": 2,
            "batch_size": 16,
            "lr": 2e-5,
            "eval_every": 200,
            "checkpoint_every": 200,
        },
        "reward": {
            "epochs": 1,
            "batch_size": 16,
            "lr": 9e-6,
            "val_fraction": 0.1,
            "eval_every": 50,
            "checkpoint_every": 200,
        },
        "ppo": {
            "iterations": 200,
            "prompts_per_iteration": 64,
            "max_new_tokens": 128,
            "minibatch_size": 16,
            "lr": 1e-6,
            "value_lr": 5e-6,
            "kl_coef": 0.02,
        },
        "sample": {"num_prompts": 512, "max_new_tokens": 256},
    },
}


TITLES = {
    "tiny": "tiny (CPU, our models)",
    "lora": "LoRA (real models such as SmolLM2, CPU)",
    "gpu": "gpu",
}


def defaults(kind: str, preset: str = "tiny") -> dict:
    """The full config of a preset: the field defaults with the preset's values over them."""
    if kind not in FIELDS:
        raise Invalid(f"Unknown run kind {kind!r}.")
    if preset not in PRESETS:
        raise Invalid(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    return {**{name: f.default for name, f in FIELDS[kind].items()}, **PRESETS[preset][kind]}


def clean_config(kind: str, values: dict | None = None, *, preset: str = "tiny") -> dict:
    """The preset's config with `values` (typed, or strings from a form) over it; unknown
    fields and bad values are an `Invalid` naming the field."""
    config = defaults(kind, preset)
    fields = FIELDS[kind]
    for name, raw in (values or {}).items():
        if name not in fields:
            raise Invalid(f"{kind} runs have no setting {name!r}.")
        config[name] = _coerce(name, fields[name], raw)
    return config


def _coerce(name: str, field: Field, raw):
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if field.optional:
            return None
        raise Invalid(f"{name} is required.")
    try:
        if field.type is bool:
            value = (
                raw
                if isinstance(raw, bool)
                else str(raw).strip().lower() in {"1", "true", "on", "yes"}
            )
        elif field.type is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            value = int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        elif field.type is float:
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
        else:
            value = str(raw).strip()
    except (TypeError, ValueError):
        raise Invalid(
            f"{name} must be {'a whole number' if field.type is int else 'a number'}; "
            f"got {str(raw)[:40]!r}."
        ) from None
    if field.choices and value not in field.choices:
        raise Invalid(f"{name} must be one of {', '.join(field.choices)}; got {value!r}.")
    if field.minimum is not None and value < field.minimum:
        raise Invalid(f"{name} must be at least {field.minimum:g}; got {value}.")
    if field.maximum is not None and value > field.maximum:
        raise Invalid(f"{name} must be at most {field.maximum:g}; got {value}.")
    return value
