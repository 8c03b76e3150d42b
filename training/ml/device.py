"""Where the model runs: CUDA with bf16 autocast when there is a GPU, the same code on CPU; and
in which precision a model that only samples is held."""

from contextlib import nullcontext

import torch


def pick_device(preference: str | None = None) -> torch.device:
    """The device to train or sample on: `preference` if given ("cpu", "cuda", "cuda:1"), else
    CUDA when available, else CPU. Asking for CUDA on a machine without it is an error rather than
    a silent fall back, so a GPU job never crawls along on the CPU unnoticed."""
    if preference in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available here")
    return device


def autocast(device: torch.device | str):
    """bf16 autocast on CUDA (matmuls in bf16, reductions and the loss in fp32: no grad scaler
    needed); a no-op on CPU, where bf16 matmuls are slower than fp32 on most machines."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


SAMPLING_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def sampling_dtype(device: torch.device | str, preference: str | None = None) -> torch.dtype:
    """The precision to sample in: `preference` ("float32", "bfloat16"), or by default bf16
    where the hardware multiplies it natively (CUDA with bf16; CPUs oneDNN runs bf16 on, such
    as AVX512-BF16 or AMX) and fp32 elsewhere. Decoding reads every weight per token, so half
    the bytes is up to twice the tokens/s: SmolLM2-135M at batch 8 on an AVX512-BF16 CPU went
    from ~40 to ~80-110 tokens/s. Training and PPO's own rollouts stay in fp32 (PPO compares
    log-probabilities with the model it trains)."""
    if preference not in (None, "", "auto"):
        if preference not in SAMPLING_DTYPES:
            raise ValueError(f"sampling dtype must be auto, {' or '.join(SAMPLING_DTYPES)}")
        return SAMPLING_DTYPES[preference]
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    try:
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported()  # oneDNN's own check
    except (AttributeError, RuntimeError):  # a build without oneDNN
        native = False
    return torch.bfloat16 if native else torch.float32
