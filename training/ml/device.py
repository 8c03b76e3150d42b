"""Where the model runs: CUDA with bf16 autocast when there is a GPU, the same code on CPU."""

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
