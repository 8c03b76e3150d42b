"""The config of each kind of run, every setting a person may set declared once (`setting`).

A field made with `setting(...)` is a run setting: its default, bounds and help are read by the
start form, the run page, `--set` and `training.presets` (which holds only the values a preset
changes). A plain field is the library's knob, set in code, never from a form.

Plain Python, no torch: the web process renders and checks a start form from these classes
without loading the ML stack; the train loops (`training.ml.sft`, `.reward`, `.ppo`,
`.pretrain`) import them from here.
"""

from dataclasses import dataclass, field

from training.ml.settings import setting

# The model sizes of `training.ml.gpt.PRESETS` (that module imports torch); a test keeps the two
# equal.
GPT_SIZES = ("tiny", "small", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


# LoRA (training.ml.lora): adapters on every Linear of the blocks; the base stays frozen, and
# PPO's reference is the policy with its adapters off (no second copy of the weights). One
# function per setting, so each config declares its own field with the same bounds.
def lora_rank():
    return setting(0, "LoRA rank (0: full fine-tuning)", minimum=0, maximum=1024)


def lora_alpha():
    return setting(16.0, "LoRA scale: alpha / rank", minimum=0)


def lora_dropout():
    return setting(0.0, "dropout on the adapters' input", minimum=0, maximum=0.9)


@dataclass
class SFTConfig:
    epochs: int = setting(2, minimum=1)
    max_steps: int | None = setting(None, "overrides epochs", minimum=1)
    batch_size: int = setting(8, minimum=1)
    lr: float = setting(1e-4, "peak learning rate", minimum=0)
    warmup_steps: int = setting(10, minimum=0)
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    val_fraction: float = setting(0.1, "held-out share of prompts", minimum=0, maximum=0.9)
    eval_every: int = setting(50, "steps between validation losses (0: at the end)", minimum=0)
    # a checkpoint is also written at the end and on stop
    checkpoint_every: int = setting(100, "steps between checkpoints", minimum=1)
    seed: int = setting(0)
    lora_rank: int = lora_rank()
    lora_alpha: float = lora_alpha()
    lora_dropout: float = lora_dropout()
    lora_target_modules: list[str] | None = None  # None: every Linear in the transformer blocks


@dataclass
class RewardConfig:
    epochs: int = setting(1, minimum=1)
    max_steps: int | None = setting(None, "overrides epochs", minimum=1)
    batch_size: int = setting(8, "prompts per step, each with all its pairs", minimum=1)
    lr: float = setting(1e-4, minimum=0)
    warmup_steps: int = setting(5, minimum=0)
    min_lr_ratio: float = 0.1
    # Regularizers: AdamW's decoupled weight decay, and reward centering (training.ml.reward,
    # "Reward centering"; measured in bench/bench_reward_generalization.py).
    weight_decay: float = setting(0.0, "AdamW weight decay", minimum=0)
    center_coef: float = setting(0.0, "reward centering: weight of mean(r^2) in the loss",
                                 minimum=0)  # fmt: skip
    grad_clip: float = 1.0
    val_fraction: float = setting(0.1, "held-out share of prompts", minimum=0, maximum=0.9)
    # The epochs are a ceiling when evaluating: the held-out pairs pick when to stop and which
    # weights to keep (training.ml.reward, "Early stopping").
    eval_every: int = setting(0, "steps between held-out evaluations (0: at the end)", minimum=0)
    keep_best: bool = setting(False, "end on the weights of the best held-out accuracy")
    patience: int = setting(0, "early stopping: evaluations without a better held-out accuracy "
                               "before training stops (0: never)", minimum=0)  # fmt: skip
    checkpoint_every: int = setting(100, "steps between checkpoints", minimum=1)
    # rankings that are not an ordering: skip and count, not raise
    skip_invalid: bool = setting(False, "skip rankings that are not a full ordering")
    seed: int = setting(0)
    # An ensemble (training.ml.reward_ensemble): n members, each on its own bootstrap of the
    # training prompts (or, few rankings, on all of them), saved as one version that scores with
    # their mean; their disagreement is reported, and PPO can penalize it
    # (PPOConfig.ensemble_penalty).
    ensemble: int = setting(1, "reward models trained and averaged; their disagreement is "
                               "reported", minimum=1, maximum=8)  # fmt: skip
    bootstrap: bool = setting(True, "ensemble members train on bootstrap resamples of the "
                                    "prompts (off: each on all, apart by seed)")  # fmt: skip
    lora_rank: int = lora_rank()
    lora_alpha: float = lora_alpha()
    lora_dropout: float = lora_dropout()
    lora_target_modules: list[str] | None = None  # None: every Linear in the transformer blocks


@dataclass
class PPOConfig:
    iterations: int = setting(20, minimum=1)
    prompts_per_iteration: int = setting(16, minimum=1)
    samples_per_prompt: int = 1
    max_new_tokens: int = setting(32, minimum=1)
    temperature: float = setting(1.0, minimum=0.01)
    ppo_epochs: int = setting(4, minimum=1)
    minibatch_size: int = setting(8, "responses per optimizer step", minimum=1)
    lr: float = setting(2e-5, minimum=0)
    value_lr: float = setting(2e-5, minimum=0)
    warmup_iterations: int = 0  # linear warmup, then constant
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    clip: float = 0.2  # the surrogate's ratio clip
    value_clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    # the initial value when adaptive
    kl_coef: float = setting(0.02, "beta: per-token KL penalty to the SFT model", minimum=0)
    adaptive_kl: bool = setting(False)
    target_kl: float = 6.0  # nats per response, for the adaptive controller
    kl_horizon: int = 10_000
    score_clip: float | None = 5.0
    unfinished_penalty: float | None = -1.0  # None: score cut-off responses like the others
    ratio_threshold: float = 10.0  # skip a minibatch whose mean ratio exceeds this
    kl_budget: float | None = setting(
        None, "stop once the KL to the SFT model (nats per reply) exceeds this", minimum=0
    )
    # The held-out reward (training.ml.ppo_heldout): measured on the project's evaluation
    # prompts, which PPO never trains on; the policy's own score says nothing of them.
    eval_every: int = setting(
        0, "iterations between held-out reward evaluations (0: after the last only)", minimum=0
    )
    eval_prompts: int = setting(64, "held-out prompts evaluated (the first ones)", minimum=1)
    keep_best: bool = setting(
        False, "end on the weights of the best validation reward (a slice of the run's prompts "
        "set aside), not the last ones"
    )
    val_prompts: int = setting(
        16, "with keep_best: the run's prompts set aside for the validation reward (at most a "
        "quarter of them)", minimum=1
    )
    # Against a reward-model ensemble: score = mean - ensemble_penalty * std of the members
    # (Coste et al. 2023's uncertainty-weighted optimization), so PPO's `score` and held-out
    # score are the penalized reward and `score_std` the spread; an error against one model.
    ensemble_penalty: float = setting(
        0.0, "reward-model ensemble: subtract this times the members' disagreement", minimum=0
    )
    ptx_coef: float = setting(0.0, "PPO-ptx: weight of the LM loss on demonstrations", minimum=0)
    ptx_batch_size: int = 8
    ema_decay: float | None = None  # e.g. 0.992: keep an EMA of the policy weights
    forward_batch_size: int = 32  # rows per no-grad forward in step 1
    checkpoint_every: int = setting(5, "iterations between checkpoints", minimum=1)
    seed: int = setting(0)
    lora_rank: int = lora_rank()
    lora_alpha: float = lora_alpha()
    lora_dropout: float = lora_dropout()
    lora_target_modules: list[str] | None = None  # None: every Linear in the transformer blocks

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError("PPO samples from the policy: temperature must be > 0")
        for name in (
            "iterations",
            "prompts_per_iteration",
            "samples_per_prompt",
            "max_new_tokens",
            "ppo_epochs",
            "minibatch_size",
            "forward_batch_size",
            "eval_prompts",
            "val_prompts",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"PPOConfig.{name} must be at least 1")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in (0, 1)")


@dataclass
class PretrainConfig:
    preset: str = setting("tiny", "model size", choices=GPT_SIZES)
    # On the demo's stdlib corpus a 2048 vocabulary (special tokens included) learns faster per
    # second than 4096, and 800 steps is where the tiny model starts to copy names from the
    # prompt (what the demo's rule rewards).
    vocab_size: int = setting(2048, "tokenizer size", minimum=261, maximum=200_000)
    steps: int = setting(800, minimum=1)
    batch_size: int = setting(16, minimum=1)
    block_size: int | None = None  # None: the preset's
    # tiny models take a high rate; GPT-2 sizes want ~6e-4
    lr: float = setting(3e-3, "peak learning rate", minimum=0)
    warmup_steps: int = setting(50, minimum=0)
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    dropout: float = 0.0
    grad_clip: float = 1.0
    text_paths: list[str] = field(default_factory=list)  # empty: the standard library's docs
    val_fraction: float = 0.02
    eval_every: int = setting(100, minimum=1)
    eval_batches: int = 8
    checkpoint_every: int = setting(100, minimum=1)
    seed: int = setting(0)
    device: str | None = None  # None: CUDA if available
    compile: bool = False  # torch.compile the model (worth it on a GPU)


@dataclass
class SampleRunConfig:
    """A sampling run: K replies (the project's k) per prompt for ranking, or with `comparison`
    one reply per evaluation prompt of that blind comparison (`training.services.evaluation`).
    The per-batch `training.ml.sampling.SampleConfig` is built from it."""

    num_prompts: int = setting(32, "prompts to sample for (those not yet sampled first)",
                               minimum=1)  # fmt: skip
    max_new_tokens: int = setting(48, minimum=1)
    temperature: float = setting(1.0, minimum=0)
    top_k: int = setting(0, "0: no cut", minimum=0)
    top_p: float = setting(0.95, minimum=0.01, maximum=1.0)
    priority: int = setting(0, "queue priority of the ranking tasks")
    seed: int = setting(0)
    # Replies of a second model in each ranking task (InstructGPT ranked replies of several
    # models; Llama 2 two model variants): what the run's model never writes, the labelers
    # cannot prefer, and a reward model cannot learn.
    mix_model: int | None = setting(
        None, "id of a second model (base, SFT or an earlier policy) that writes mix_replies of "
        "each task's replies", minimum=1
    )
    mix_replies: int = setting(1, "with mix_model: how many of each task's K it writes",
                               minimum=1)  # fmt: skip
    comparison: int | None = setting(None, "comparison batch", minimum=1, internal=True)


# DPO (training.ml.dpo): the losses as TRL computes them.
LOSS_TYPES = ("sigmoid", "robust", "ipo")


@dataclass
class DPOConfig:
    beta: float = setting(
        0.1,
        "Strength of the pull to the reference (the SFT model): higher stays closer to it. For "
        "IPO, the regularization tau.",
        minimum=0,
    )
    loss_type: str = setting(
        "sigmoid",
        "sigmoid: DPO (cDPO with label smoothing); robust: robust DPO, unbiased under noisy "
        "labels; ipo: IPO, a squared loss on per-token log-ratios that does not push the "
        "margins to infinity.",
        choices=LOSS_TYPES,
    )
    label_smoothing: float = setting(
        0.0,
        "The share of rankings you believe flipped (sigmoid and robust): 0 trusts every label.",
        minimum=0.0,
        maximum=0.5,
    )
    rpo_alpha: float = setting(
        0.0,
        "RPO: weight of the preferred replies' negative log-likelihood (per token) added to the "
        "loss. DPO alone can push both replies down and never learn to write a preferred reply "
        "its model would not sample (one another model wrote, say); 1.0 in the paper.",
        minimum=0,
    )
    # Read by the run's rows (training.jobs.dpo), not by train_dpo: which rankings it trains on.
    own_replies: bool = setting(
        False,
        "Train only on the tasks that rank the input model's own replies: each round of iterated "
        "DPO learns from its new rankings (Iterative RPO), not again from earlier rounds' pairs "
        "that its reference already learned.",
    )
    epochs: int = setting(1, "Passes over the training prompts.", minimum=1)
    max_steps: int | None = setting(None, "Steps to train; overrides epochs when set.", minimum=1)
    batch_size: int = setting(
        8, "Prompts per step, each with all its completions and pairs.", minimum=1
    )
    lr: float = setting(5e-5, "Peak learning rate (AdamW).", minimum=0)
    warmup_steps: int = setting(5, "Steps of linear warmup before the cosine decay.", minimum=0)
    min_lr_ratio: float = setting(
        0.1, "Learning rate at the end, as a share of the peak.", minimum=0, maximum=1
    )
    weight_decay: float = setting(0.0, "AdamW weight decay of the matrices.", minimum=0)
    grad_clip: float = setting(1.0, "Clip the gradient norm to this.", minimum=0)
    val_fraction: float = setting(
        0.1, "Share of the prompts held out for the preference accuracy.", minimum=0, maximum=0.9
    )
    eval_every: int = setting(0, "Evaluate held-out pairs every this many steps; 0: at the end.",
                              minimum=0)  # fmt: skip
    # As the reward model's: the epochs are a ceiling, the held-out pairs pick the weights
    # (training.ml.dpo, "Early stopping").
    keep_best: bool = setting(
        False, "End on the weights of the best held-out preference accuracy (then loss)."
    )
    patience: int = setting(
        0, "Early stopping: evaluations without a better held-out accuracy before training "
        "stops (0: never; implies keep_best).", minimum=0,
    )  # fmt: skip
    checkpoint_every: int = setting(
        100, "Save a checkpoint every this many steps (also at the end and on stop).", minimum=0
    )
    skip_invalid: bool = setting(
        False, "Skip and count rankings that are not an ordering instead of failing."
    )
    seed: int = setting(0, "Seed of the split, the batch order and the adapters' start.")
    lora_rank: int = lora_rank()
    lora_alpha: float = lora_alpha()
    lora_target_modules: list[str] | None = None  # None: every Linear in the transformer blocks
    # Not a setting: DPO trains without dropout (see the module docstring); LoraSettings reads it.
    lora_dropout: float = 0.0

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError(f"DPOConfig.beta must be > 0, got {self.beta}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(
                f"DPOConfig.loss_type must be one of {', '.join(LOSS_TYPES)}, "
                f"got {self.loss_type!r}"
            )
        if self.loss_type == "ipo" and self.label_smoothing:
            raise ValueError("label_smoothing applies to the sigmoid and robust losses, not ipo")
        if self.loss_type == "robust" and not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError("the robust loss needs label_smoothing in [0, 0.5)")
        if not 0.0 <= self.label_smoothing <= 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5], got {self.label_smoothing}")
